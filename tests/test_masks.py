"""Mask prompts: a boolean array, a PNG or COCO RLE, each turned into its tight box; bad masks refused."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from artemis import ArtemisModel
from artemis.cli import main
from artemis.errors import BoxError
from artemis.regions import Region, load_mask, mask_box

H, W = 272, 640  # bikes.mp4


def _blob(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def test_a_mask_in_all_three_forms_gives_its_tight_box(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools import mask as coco_mask

    mask = _blob(280, 100, 360, 170)
    mask[100:110, 280:290] = False  # not a rectangle: the tight box still spans it
    png = tmp_path / "mask.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(png)
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    for given in (mask, png, str(png), rle):
        box = Region(mask=given, frame=3).resolve(W, H)
        np.testing.assert_array_equal(box, [280, 100, 360, 170])  # pixel edges: x2 = last column + 1
    uncompressed = {"size": [2, 3], "counts": [1, 2, 3]}  # column-major runs: 0, then 2 set, then 3 unset
    np.testing.assert_array_equal(load_mask(uncompressed), [[False, True, False], [True, False, False]])


def test_bad_masks_get_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(BoxError, match="the mask is empty"):
        mask_box(np.zeros((H, W), bool), W, H)
    with pytest.raises(BoxError, match=r"the mask is 320x136 \(WxH\) but the video is 640x272"):
        mask_box(np.ones((136, 320), bool), W, H)
    apart = _blob(10, 10, 60, 60) | _blob(500, 200, 560, 260)
    with pytest.raises(BoxError, match=r"2 separate parts far apart.*one region per object"):
        mask_box(apart, W, H)
    # A small speck, or two sizeable parts close together, is one object: the tight box of all of it.
    speck = _blob(100, 100, 160, 160) | _blob(400, 20, 402, 22)
    np.testing.assert_array_equal(mask_box(speck, W, H), [100, 20, 402, 160])
    near = _blob(100, 100, 160, 160) | _blob(165, 100, 200, 160)
    np.testing.assert_array_equal(mask_box(near, W, H), [100, 100, 200, 160])
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        load_mask(tmp_path / "missing.png")
    with pytest.raises(BoxError, match=r"\(H, W\) array"):
        load_mask(np.zeros((2, 3, 4)))
    not_png = tmp_path / "mask.png"
    not_png.write_text("not an image")
    with pytest.raises(BoxError, match=r"mask\.png' is not an image PIL can read"):
        load_mask(not_png)
    # COCO RLE is read without pycocotools, run by run: runs that do not cover the mask are refused (pycocotools
    # itself would return uninitialised memory for them).
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(BoxError, match=r"counts sum to 3 for a 2x2 mask"):
        load_mask({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(BoxError, match="counts string is malformed"):
        load_mask({"size": [2, 2], "counts": "\x7f"})
    with pytest.raises(BoxError, match="not \\[height, width\\]"):
        load_mask({"size": [2], "counts": [4]})
    with pytest.raises(BoxError, match="exactly one"):
        Region(box=(1, 2, 3, 4), mask=apart)


@pytest.fixture
def bikes(reference_dir):
    path = reference_dir / "videos" / "bikes.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the mask tests on a real video need bikes.mp4")
    return path


def test_ask_with_a_mask_and_a_box_tracks_from_the_mask_box(tiny_model_dir, bikes, tmp_path, capsys):
    model = ArtemisModel.from_pretrained(tiny_model_dir, log_card=False)
    mask = _blob(280, 100, 360, 170)
    regions = [Region(mask=mask, frame=10), Region(box=(20, 20, 120, 120), frame=200)]
    result = model.ask(bikes, regions=regions, question="Is <region> left of <region>?", max_new_tokens=3)
    np.testing.assert_allclose(result.tracks[0].boxes[10], [280, 100, 360, 170])
    assert result.tracks[0].visible.sum() > 1  # tracked from the mask's box
    with pytest.raises(BoxError, match="the mask is empty"):
        model.ask(bikes, regions=[Region(mask=np.zeros((H, W), bool), frame=0)], question="what is it?")
    png = tmp_path / "bike.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(png)
    code = main(
        ["ask", str(bikes), "--mask", f"{png}@10", "--box", "20,20,120,120@200", "--question", "<region> or <region>?",
         "--model", str(tiny_model_dir), "--max-new-tokens", "3", "--json"]
    )  # fmt: skip
    assert code == 0
    bad = main(["ask", str(bikes), "--mask", f"{png}@x", "--question", "what?", "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert bad == 2 and err[-1].startswith("artemis ask: error: mask") and "after '@' is not a frame index" in err[-1]
