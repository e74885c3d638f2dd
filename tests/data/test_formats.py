"""Readers of the real reference annotations, and round trips between formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from artemis.data import convert, formats, validate
from artemis.data.records import RefSample
from artemis.data.synthref_writer import generate_split

pytestmark = pytest.mark.reference


def test_hcstvg_first_entry(reference_dir: Path) -> None:
    samples = formats.read("hcstvg", reference_dir / "hcstvg/hcstvg_v1_test_subset.json")
    assert len(samples) == 4
    first = samples[0]
    assert first.sample_id == "55_vfjywN5CN0Y.mp4"
    # bbox[0] = [194, 0, 240, 359] (0-based x, y, w, h) on 1-based st_frame 157 -> 0-based frame 156.
    assert first.frame_ids[0] == 156 and first.key_frame_id == 156
    assert first.boxes[0] == (194.0, 0.0, 434.0, 359.0)
    assert len(first.frame_ids) == 122 and first.frame_ids[-1] == 156 + 121
    assert (first.width, first.height) == (480, 360)
    assert first.caption.startswith("The man in brown clothes pours")
    assert first.metadata["st_time"] == pytest.approx(6.501935870542281)


def test_otb_crossing(reference_dir: Path) -> None:
    (sample,) = formats.read("otb", reference_dir / "otb_crossing")
    assert sample.sample_id == "otb_crossing" and len(sample.frame_ids) == 120
    assert (sample.width, sample.height) == (360, 240)
    # The file's first row is "205\t151\t17\t50" (1-based x, y, w, h).
    assert sample.boxes[0] == (204.0, 150.0, 221.0, 200.0)
    assert all(sample.visible) and sample.video == "img"
    # A ground-truth file path reads the same sequence.
    (same,) = formats.read("otb", reference_dir / "otb_crossing/groundtruth_rect.txt")
    assert same.boxes == sample.boxes


def test_lasot_toolkit_annotations(reference_dir: Path) -> None:
    samples = {s.sample_id: s for s in formats.read("lasot", reference_dir / "lasot")}
    assert set(samples) == {"airplane-1", "bear-5", "yoyo-15"}
    absent_counts = {name: sum(not v for v in s.visible) for name, s in samples.items()}
    assert absent_counts == {"airplane-1": 0, "bear-5": 134, "yoyo-15": 33}
    assert len(samples["airplane-1"].frame_ids) == 2788
    assert samples["airplane-1"].boxes[0] == (366.0, 100.0, 407.0, 116.0)  # "367,101,41,16"
    # Absent frames keep their non-zero boxes; only zero-size rows lose them.
    bear = samples["bear-5"]
    flagged = [i for i, v in enumerate(bear.visible) if not v]
    assert sum(bear.boxes[i] is not None for i in flagged) > 100
    assert samples["yoyo-15"].width is None  # no frames, so no frame size


def test_lasot_real_layout(tmp_path: Path) -> None:
    seq = tmp_path / "cat" / "cat-1"
    (seq / "img").mkdir(parents=True)
    import cv2

    for i in range(1, 4):
        cv2.imwrite(str(seq / "img" / f"{i:08d}.jpg"), np.zeros((40, 60, 3), np.uint8))
    (seq / "groundtruth.txt").write_text("1,1,10,10\n5,5,10,10\n55,35,10,10\n")
    (seq / "full_occlusion.txt").write_text("0,1,0")
    (seq / "out_of_view.txt").write_text("0,0,0")
    (seq / "nlp.txt").write_text("white cat lying on the floor\n")
    (sample,) = formats.read("lasot", tmp_path)
    assert (sample.width, sample.height) == (60, 40)
    assert sample.boxes[0] == (0.0, 0.0, 10.0, 10.0)
    assert sample.visible == [True, False, True]
    assert sample.boxes[2] == (54.0, 34.0, 60.0, 40.0)  # clipped to the 60x40 frame
    assert sample.caption == "white cat lying on the floor"


def _visible_only(sample: RefSample) -> list:
    return [b if v else None for b, v in zip(sample.boxes, sample.visible, strict=True)]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("synth"), 4, seed=9, split="test").split_dir


def test_videoref45k_elysium_round_trip_is_exact(synth: Path, tmp_path: Path) -> None:
    original = formats.read("videoref45k", synth / "videoref45k.json")
    convert("videoref45k", "elysium", synth / "videoref45k.json", tmp_path / "e.json")
    convert("elysium", "videoref45k", tmp_path / "e.json", tmp_path / "v.json")
    back = formats.read("videoref45k", tmp_path / "v.json")
    assert [_visible_only(s) for s in back] == [_visible_only(s) for s in original]
    assert [(s.key_frame_id, s.caption, s.question) for s in back] == [
        (s.key_frame_id, s.caption, s.question) for s in original
    ]
    # Written next to the source, the file is byte-identical.
    convert("elysium", "videoref45k", tmp_path / "e.json", synth / "again.json")
    assert (synth / "again.json").read_bytes() == (synth / "videoref45k.json").read_bytes()


def test_elysium_keeps_non_integer_boxes_to_1e_4_pixel(tmp_path: Path) -> None:
    sample = RefSample(
        sample_id="a",
        video="v.mp4",
        frame_ids=[0, 1],
        boxes=[(10.25, 3.3333, 50.5, 40.125), (1.0 / 3.0, 2.0, 30.0, 70.0)],
        visible=[True, True],
        width=641,
        height=359,
        caption="x",
        base_dir=tmp_path,
    )
    formats.write("elysium", [sample], tmp_path / "e.json")
    (back,) = formats.read("elysium", tmp_path / "e.json")
    assert back.boxes[0] == sample.boxes[0]
    np.testing.assert_allclose(back.boxes[1], sample.boxes[1], atol=5e-5)


@pytest.mark.parametrize("target", ["lasot", "otb", "hcstvg", "videoref45k", "elysium"])
def test_hcstvg_to_box_formats_and_back(reference_dir: Path, tmp_path: Path, target: str) -> None:
    source = formats.read("hcstvg", reference_dir / "hcstvg/hcstvg_v1_test_subset.json")
    out = tmp_path / ("out" if target in ("lasot", "otb") else "out.json")
    if target in ("lasot", "otb"):
        convert("hcstvg", target, reference_dir / "hcstvg/hcstvg_v1_test_subset.json", out)
        back = sorted(formats.read(target, out), key=lambda s: s.sample_id)
        for src, dst in zip(sorted(source, key=lambda s: s.sample_id), back, strict=True):
            present = {f: b for f, b in zip(dst.frame_ids, dst.boxes, strict=True) if b is not None}
            assert present == dict(zip(src.frame_ids, src.boxes, strict=True))
        return
    convert("hcstvg", target, reference_dir / "hcstvg/hcstvg_v1_test_subset.json", out)
    back = formats.read(target, out)
    assert [(s.frame_ids, s.boxes, s.caption) for s in back] == [(s.frame_ids, s.boxes, s.caption) for s in source]


def test_otb_lasot_round_trip(reference_dir: Path, tmp_path: Path) -> None:
    (source,) = formats.read("otb", reference_dir / "otb_crossing")
    convert("otb", "lasot", reference_dir / "otb_crossing", tmp_path / "lasot")
    convert("lasot", "otb", tmp_path / "lasot", tmp_path / "otb")
    (back,) = formats.read("otb", tmp_path / "otb")
    assert back.boxes == source.boxes
    text = (tmp_path / "otb/otb_crossing/groundtruth_rect.txt").read_text().splitlines()
    assert text[0] == "205\t151\t17\t50"


def test_llava_round_trip_and_validate_files(synth: Path, tmp_path: Path) -> None:
    convert("llava", "llava", synth / "llava_stage2.json", tmp_path / "l.json")
    assert json.loads((tmp_path / "l.json").read_text())[0]["video"].endswith("videos/test_00000.mp4")
    samples = validate("llava", synth / "llava_stage2.json", check_files=True)
    assert samples[0].conversations[1]["from"] == "gpt"
    assert len(validate("videoref45k", synth / "videoref45k.json", check_files=True)) > 0
