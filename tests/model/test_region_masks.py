"""Mask prompts inside the model: ``region_key_mask`` encodes a region's key frame from the features inside
its mask only, and a mask reaches the model from ``ask`` and from training data (``data.mask_prompts``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from region_helpers import changed_right_half, left_half_masks, levels_and_boxes

from artemis import ArtemisModel
from artemis.data import read
from artemis.data.formats import videoref45k
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig, draw_mask, generate_scene
from artemis.data.synthref_writer import generate_split
from artemis.errors import AnnotationError, ConfigError
from artemis.model import build_tiny_model
from artemis.model.video_processing import VideoProcessor
from artemis.regions import Region, load_mask, mask_to_rle

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("masks"), 3, seed=7, split="train", config=CONFIG).split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    return build_tiny_model(texts, seed=0, region_key_mask=True)


def test_a_full_mask_is_the_box_and_a_mask_changes_only_its_own_key_token(tiny) -> None:
    model, _ = tiny
    model.eval()
    levels, boxes, times = levels_and_boxes(model)
    size = model.config.vision_config.image_size
    encoder = model.region_encoder
    with torch.no_grad():
        plain = encoder(levels, boxes, times)  # (B, R, K, D)
        masks = torch.full((2, 2, size, size), float("nan"))
        masks[1, 0] = 1.0  # a mask covering the whole frame: nothing is hidden
        torch.testing.assert_close(encoder(levels, boxes, times, masks), plain, rtol=0, atol=1e-6)
        masks[1, 0] = 0.0
        masks[1, 0, :, : size // 2] = 1.0  # the left half only
        masked = encoder(levels, boxes, times, masks)
    changed = (masked - plain).abs().amax(-1) > 1e-6  # (B, R, K)
    expected = torch.zeros_like(changed)
    expected[1, 0, 0] = True  # sample 1, region 0, key frame
    assert torch.equal(changed, expected)


def test_features_outside_the_mask_do_not_reach_the_masked_token(tiny) -> None:
    """What lies outside the mask (another object inside the box) cannot change the masked key token."""
    model, _ = tiny
    model.eval()
    levels, boxes, times = levels_and_boxes(model, batch=1, regions=1, seed=1)
    size = model.config.vision_config.image_size
    boxes[0, 0, 0] = torch.tensor([0.1, 0.1, 0.9, 0.9])  # the box covers both halves
    masks = torch.zeros(1, 1, size, size)
    masks[0, 0, :, : size // 2] = 1.0  # the target is the left half
    changed_levels = changed_right_half(levels)  # key frame (row 0): everything right of the mask
    encoder = model.region_encoder
    with torch.no_grad():
        masked_before = encoder(levels, boxes, times, masks)[0, 0, 0]
        masked_after = encoder(changed_levels, boxes, times, masks)[0, 0, 0]
        box_before = encoder(levels, boxes, times)[0, 0, 0]
        box_after = encoder(changed_levels, boxes, times)[0, 0, 0]
    torch.testing.assert_close(masked_after, masked_before, rtol=0, atol=1e-5)
    assert (box_after - box_before).abs().max() > 1e-2  # the box prompt does see it


def test_a_mask_carried_onto_every_region_frame_changes_every_token_of_its_region(tiny) -> None:
    model, _ = tiny
    model.eval()
    levels, boxes, times = levels_and_boxes(model)
    size = model.config.vision_config.image_size
    encoder = model.region_encoder
    masks = left_half_masks(2, 2, size)  # sample 1, region 0: the left half only
    encoder.mask_frames = "all"
    try:
        with torch.no_grad():
            plain = encoder(levels, boxes, times)
            carried = encoder(levels, boxes, times, masks)
    finally:
        encoder.mask_frames = "key"
    changed = (carried - plain).abs().amax(-1) > 1e-6  # (B, R, K)
    expected = torch.zeros_like(changed)
    expected[1, 0] = True  # sample 1, region 0, every region frame
    assert torch.equal(changed, expected)


def test_carried_masks_follow_the_box() -> None:
    from artemis.model.region import _carry_masks

    size = 16
    mask = torch.zeros(1, size, size)
    mask[0, 4:8, 2:4] = 1.0  # rows 4-7, columns 2-3: the left half of its box
    key = torch.tensor([2, 4, 6, 8]) / size
    moved = key + torch.tensor([8, 4, 8, 4]) / size  # the same box, 8 right and 4 down
    doubled = torch.tensor([0, 0, 8, 8]) / size  # twice the size at the corner
    carried = _carry_masks(mask, torch.stack([key, moved, doubled])[None])  # (3, S, S)
    torch.testing.assert_close(carried[0], mask[0])
    torch.testing.assert_close(carried[1], torch.roll(mask[0], shifts=(4, 8), dims=(0, 1)))
    expected = torch.zeros(size, size)
    expected[0:8, 0:4] = 1.0  # the left half of the doubled box (edges interpolated)
    torch.testing.assert_close((carried[2] > 0.5).float(), expected)
    with pytest.raises(ConfigError, match="region_mask_frames"):
        build_tiny_model(["a red circle ."], seed=0, region_mask_frames="every")


def test_a_model_without_region_key_mask_ignores_masks(split: Path) -> None:
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    model, _ = build_tiny_model(texts, seed=0)
    model.eval()
    levels, boxes, times = levels_and_boxes(model)
    size = model.config.vision_config.image_size
    masks = torch.zeros(2, 2, size, size)
    with torch.no_grad():
        torch.testing.assert_close(
            model.region_encoder(levels, boxes, times, masks), model.region_encoder(levels, boxes, times)
        )


def test_the_mask_is_padded_and_resized_as_the_frame_is() -> None:
    processor = VideoProcessor(image_size=32)
    mask = np.zeros((48, 64), dtype=bool)  # a wide frame: padded by 8 rows above and below
    mask[10:20, 16:48] = True
    square = processor.mask(mask).numpy()  # (32, 32), scale 0.5
    box = processor.transform_for(64, 48).boxes_to_model(np.array([[16, 10, 48, 20]]))[0] * 32
    x1, y1, x2, y2 = box.round().astype(int)
    assert (x1, y1, x2, y2) == (8, 9, 24, 14)
    assert np.allclose(square[y1:y2, x1:x2], 1.0) and square.sum() == pytest.approx((x2 - x1) * (y2 - y1))


def test_synthref_masks_are_the_visible_pixels_and_round_trip(split: Path, tmp_path: Path) -> None:
    samples = read("videoref45k", split / "videoref45k.json")
    scene = generate_scene(7, "train", 0, CONFIG)
    for k, sample in enumerate(s for s in samples if s.metadata["video_name"] == f"{scene.name}.mp4"):
        mask = load_mask(sample.metadata["key_frame_mask"])
        own = draw_mask(scene.objects[k], sample.key_frame_id, CONFIG.width, CONFIG.height)
        above = np.zeros_like(own)
        for obj in scene.objects[k + 1 :]:
            above |= draw_mask(obj, sample.key_frame_id, CONFIG.width, CONFIG.height)
        np.testing.assert_array_equal(mask, own & ~above)
    out = videoref45k.write(samples, tmp_path / "again.json")
    assert [s.metadata["key_frame_mask"] for s in read("videoref45k", out)] == [
        s.metadata["key_frame_mask"] for s in samples
    ]


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ("abc", "expected a COCO RLE dict"),
        ({"size": [48, 64], "counts": [3072]}, "the mask is empty"),
        ({"size": [10, 10], "counts": [50, 50]}, r"size \[10, 10\] \(HxW\) is not the frame's \[48, 64\]"),
        ({"size": [48, 64], "counts": [1, 2]}, "counts sum to 3 for a 48x64 mask"),
    ],
)
def test_bad_key_frame_masks_are_refused_by_name(split: Path, tmp_path: Path, mask, message: str) -> None:
    record = json.loads((split / "videoref45k.json").read_text())[0]
    record["key_frame_mask"] = mask
    path = split / "bad_masks.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(AnnotationError, match=rf"field 'key_frame_mask'.*{message}"):
        read("videoref45k", path)


def test_mask_to_rle_round_trips_and_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    coco = pytest.importorskip("pycocotools.mask")
    for shape in ((1, 1), (5, 7), (30, 20)):
        for share in (0.0, 0.3, 1.0):
            mask = rng.random(shape) < share
            rle = mask_to_rle(mask)
            np.testing.assert_array_equal(load_mask(rle), mask)
            decoded = coco.decode(coco.frPyObjects(rle, *rle["size"])).astype(bool)
            np.testing.assert_array_equal(decoded, mask)
            compressed = coco.encode(np.asfortranarray(mask.astype(np.uint8)))  # counts: bytes
            np.testing.assert_array_equal(load_mask(compressed), mask)
            np.testing.assert_array_equal(load_mask({**compressed, "counts": compressed["counts"].decode()}), mask)


def test_mask_prompts_give_masks_on_kept_key_frames_only(split: Path, tiny) -> None:
    model, processor = tiny
    files = [("videoref45k", split / "videoref45k.json")]
    plain = ReferringDataset.from_files(files, processor, model.config, seed=2, key_frame_jitter=0.5)
    masked = ReferringDataset.from_files(files, processor, model.config, seed=2, key_frame_jitter=0.5, mask_prompts=1.0)
    with_mask = 0
    for index in range(len(plain)):
        x, y = plain[index], masked[index]
        assert "region_masks" not in x
        torch.testing.assert_close(x["region_boxes"], y["region_boxes"], equal_nan=True)  # same draws otherwise
        sample = masked.entry(index).sample
        key_frame = round(float(x["region_times"][0]) * (CONFIG.num_frames - 1))  # the key slot's frame
        assert ("region_masks" in y) == (key_frame == sample.key_frame_id), index
        if "region_masks" in y:
            with_mask += 1
            square = processor.video_processor.mask(load_mask(sample.metadata["key_frame_mask"]))
            torch.testing.assert_close(y["region_masks"][0], square)
    assert 0 < with_mask < len(plain)
    with pytest.raises(ConfigError, match=r"mask_prompts=1\.5: it is a probability"):
        ReferringDataset.from_files(files, processor, model.config, mask_prompts=1.5)


@contextmanager
def region_masks_seen(model) -> Iterator[list[torch.Tensor | None]]:
    """The ``region_masks`` of every forward call of ``model`` while the block runs (None: no masks)."""
    seen: list[torch.Tensor | None] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("region_masks")), with_kwargs=True
    )
    try:
        yield seen
    finally:
        hook.remove()


def test_ask_with_a_mask_gives_the_model_the_mask(split: Path, tiny, tmp_path: Path) -> None:
    model, processor = tiny
    pipeline = ArtemisModel(model, processor)
    sample = read("videoref45k", split / "videoref45k.json")[0]
    mask = load_mask(sample.metadata["key_frame_mask"])
    video, frame = sample.resolve(sample.video), sample.key_frame_id
    with region_masks_seen(model) as seen:
        by_mask = pipeline.ask(
            video, regions=[Region(mask=mask, frame=frame)], question="What is it?", max_new_tokens=3
        )
    size = model.config.vision_config.image_size
    assert seen[0] is not None and seen[0].shape == (1, 1, size, size)
    torch.testing.assert_close(seen[0][0, 0], processor.video_processor.mask(mask))
    assert by_mask.tracks[0].key_frame == frame
    ys, xs = np.nonzero(mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    with region_masks_seen(model) as seen:
        pipeline.ask(video, regions=[Region(box=box, frame=frame)], question="What is it?", max_new_tokens=3)
    assert seen[0] is None  # the box prompt sends no mask


def test_ask_with_a_mask_carried_onto_the_track_changes_the_tracked_tokens(split: Path, tiny) -> None:
    model, processor = tiny
    pipeline = ArtemisModel(model, processor)
    sample = read("videoref45k", split / "videoref45k.json")[0]
    mask = load_mask(sample.metadata["key_frame_mask"])
    video, frame = sample.resolve(sample.video), sample.key_frame_id
    tokens: list[torch.Tensor] = []
    handle = model.region_encoder.register_forward_hook(lambda module, args, out: tokens.append(out.detach()))
    try:
        for frames in ("key", "all"):
            model.region_encoder.mask_frames = frames
            answer = pipeline.ask(video, regions=[Region(mask=mask, frame=frame)], question="What is it?",
                                  max_new_tokens=3)  # fmt: skip
            assert isinstance(answer.text, str)
    finally:
        handle.remove()
        model.region_encoder.mask_frames = "key"
    key_only, carried = tokens  # (1, 1, K, D) each
    torch.testing.assert_close(carried[0, 0, 0], key_only[0, 0, 0])  # the key token: the same mask either way
    assert (carried[0, 0, 1:] - key_only[0, 0, 1:]).abs().amax() > 1e-4  # the tracked tokens now see the mask


def test_chat_with_a_mask_gives_the_model_the_mask(split: Path, tiny) -> None:
    model, processor = tiny
    pipeline = ArtemisModel(model, processor)
    sample = read("videoref45k", split / "videoref45k.json")[1]
    mask = load_mask(sample.metadata["key_frame_mask"])
    regions = [Region(mask=mask, frame=sample.key_frame_id)]
    messages = [{"role": "user", "content": "What is <region> doing?"}]
    with region_masks_seen(model) as seen:
        pipeline.chat(sample.resolve(sample.video), regions, messages, max_new_tokens=2)
    torch.testing.assert_close(seen[0][0, 0], processor.video_processor.mask(mask))
