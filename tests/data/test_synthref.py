"""SynthRef: determinism, exact boxes, disjoint splits, text that matches the scene."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from artemis.data import formats
from artemis.data.synthref import (
    MOTIONS,
    PALETTE,
    SynthRefConfig,
    compute_tracks,
    draw_mask,
    generate_scene,
    render_frames,
)
from artemis.data.synthref_text import MOTION_PHRASES, scene_questions
from artemis.data.synthref_writer import generate_split

ANNOTATIONS = (
    "manifest.json",
    "videoref45k.json",
    "videoref45k_attributes.json",
    "elysium.json",
    "llava_stage1.json",
    "llava_stage2.json",
)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("synthref"), 6, seed=3, split="train").split_dir


def test_same_arguments_give_identical_annotation_bytes_and_frames(tmp_path: Path, split_dir: Path) -> None:
    again = generate_split(tmp_path, 6, seed=3, split="train").split_dir
    for name in ANNOTATIONS:
        assert (split_dir / name).read_bytes() == (again / name).read_bytes(), name
    from artemis.video import VideoReader

    first, second = VideoReader(split_dir / "videos/train_00002.mp4"), VideoReader(again / "videos/train_00002.mp4")
    indices = list(range(first.num_frames))
    np.testing.assert_array_equal(first.get_frames(indices), second.get_frames(indices))


def test_other_seed_changes_the_data(tmp_path: Path, split_dir: Path) -> None:
    other = generate_split(tmp_path, 6, seed=4, split="train").split_dir
    assert (split_dir / "manifest.json").read_bytes() != (other / "manifest.json").read_bytes()


def test_each_box_is_tight_to_its_mask_rendered_alone() -> None:
    config = SynthRefConfig(width=96, height=80, num_frames=16)
    for index in range(12):
        scene = generate_scene(7, "train", index, config)
        for obj, track in zip(scene.objects, compute_tracks(scene), strict=True):
            for t, box in enumerate(track.boxes):
                mask = draw_mask(obj, t, scene.width, scene.height)
                if box is None:
                    assert not mask.any() and not track.visible[t]
                    continue
                x1, y1, x2, y2 = (int(v) for v in box)
                assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height
                inside = np.zeros_like(mask)
                inside[y1:y2, x1:x2] = True
                assert not (mask & ~inside).any(), "mask pixels outside the box"
                # Touches all four edges: the first/last row and column of the box hold mask pixels.
                assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()
                assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()


def test_rendered_frames_show_each_visible_object_in_its_colour() -> None:
    scene = generate_scene(11, "val", 0)
    frames = render_frames(scene)  # (T, H, W, 3)
    tracks = compute_tracks(scene)
    for k, (obj, track) in enumerate(zip(scene.objects, tracks, strict=True)):
        t = track.key_frame_id
        mask = draw_mask(obj, t, scene.width, scene.height)
        for above in scene.objects[k + 1 :]:
            mask &= ~draw_mask(above, t, scene.width, scene.height)
        assert mask.any()
        assert (frames[t][mask] == PALETTE[obj.colour]).all()


def test_occlusion_and_entering_follow_the_documented_rules() -> None:
    hidden = entering = 0
    for index in range(60):
        scene = generate_scene(0, "train", index)
        tracks = compute_tracks(scene)
        for k, track in enumerate(tracks):
            assert any(track.visible), "every object is visible somewhere"
            assert track.visible[track.key_frame_id]
            for t, (box, seen) in enumerate(zip(track.boxes, track.visible, strict=True)):
                if box is not None and not seen:
                    hidden += 1
                    # Fully covered by objects drawn later; the box is still the full extent.
                    mask = draw_mask(scene.objects[k], t, scene.width, scene.height)
                    cover = np.zeros_like(mask)
                    for above in scene.objects[k + 1 :]:
                        cover |= draw_mask(above, t, scene.width, scene.height)
                    assert not (mask & ~cover).any()
            entering += track.enters
    assert hidden > 0 and entering > 0


def test_splits_are_disjoint(tmp_path: Path) -> None:
    digests = {}
    for split in ("train", "val", "test"):
        out = generate_split(tmp_path, 4, seed=0, split=split).split_dir
        manifest = json.loads((out / "manifest.json").read_text())
        assert all(v["name"].startswith(split + "_") for v in manifest["videos"])
        for index in range(4):
            frames = render_frames(generate_scene(0, split, index))
            digests[(split, index)] = hashlib.sha256(frames.tobytes()).hexdigest()
    assert len(set(digests.values())) == len(digests)


def test_annotation_files_parse_and_agree_with_the_manifest(split_dir: Path) -> None:
    manifest = json.loads((split_dir / "manifest.json").read_text())
    objects = [o for v in manifest["videos"] for o in v["objects"]]
    refs = formats.read("videoref45k", split_dir / "videoref45k.json")
    tracks = formats.read("elysium", split_dir / "elysium.json")
    assert len(refs) == len(tracks) == len(objects)
    for ref, track, obj in zip(refs, tracks, objects, strict=True):
        assert ref.caption == track.caption == obj["caption"]
        assert obj["colour"] in ref.caption and obj["shape"] in ref.caption
        assert ref.key_frame_id == obj["key_frame_id"]
        assert "<region>" in ref.question
        visible_boxes = [b if v else [] for b, v in zip(obj["boxes"], obj["visible"], strict=True)]
        assert [list(b) if b else [] for b in ref.boxes] == [
            b if ref.visible[i] else [] for i, b in enumerate(visible_boxes)
        ]
        assert ref.boxes == track.boxes
    stage1 = formats.read("llava", split_dir / "llava_stage1.json")
    stage2 = formats.read("llava", split_dir / "llava_stage2.json")
    assert len(stage1) == len(stage2) == len(manifest["videos"])
    assert stage1[0].conversations[0]["value"].startswith("<video>\n")


def test_attribute_questions_name_the_boxed_objects_attributes(split_dir: Path) -> None:
    """videoref45k_attributes.json: per object, one colour, one shape and one motion question on its track."""
    manifest = json.loads((split_dir / "manifest.json").read_text())
    objects = [o for v in manifest["videos"] for o in v["objects"]]
    refs = formats.read("videoref45k", split_dir / "videoref45k.json")
    attributes = formats.read("videoref45k", split_dir / "videoref45k_attributes.json")
    assert len(attributes) == 3 * len(objects)
    for position, (ref, obj) in enumerate(zip(refs, objects, strict=True)):
        colour, shape, motion = attributes[3 * position : 3 * position + 3]
        for record in (colour, shape, motion):
            assert record.boxes == ref.boxes and record.key_frame_id == ref.key_frame_id and record.video == ref.video
            assert "<region>" in record.question
        assert "colour" in colour.question and colour.caption == f"It is {obj['colour']}."
        assert "shape" in shape.question and shape.caption == f"It is a {obj['shape']}."
        still = obj["motion"] == "still"
        assert motion.caption == ("It does not move." if still else f"It {MOTION_PHRASES[obj['motion']][2]}.")


def test_question_answers_are_exact() -> None:
    for index in range(30):
        scene = generate_scene(5, "test", index)
        rng = np.random.default_rng(index)
        for kind, question, answer in scene_questions(scene, rng, max_questions=20):
            if kind == "colour":
                matches = [
                    o
                    for o in scene.objects
                    if question == f"What colour is the {o.shape} that {MOTION_PHRASES[o.motion][2]}?"
                ]
                assert len(matches) == 1 and answer == f"It is {matches[0].colour}."
            elif kind == "count":
                number = ("two", "three", "four")[len(scene.objects) - 2]
                assert answer == f"There are {number} objects."
            elif kind == "motion":
                obj = next(o for o in scene.objects if f"the {o.colour} {o.shape} " in question)
                assert (obj.motion == "still") == (answer == "It does not move.")
    assert set(MOTION_PHRASES) == set(MOTIONS)


@pytest.mark.slow
def test_two_hundred_videos_in_under_a_minute(tmp_path: Path) -> None:
    started = time.perf_counter()
    summary = generate_split(tmp_path, 200, seed=0)
    elapsed = time.perf_counter() - started
    assert summary.num_videos == 200 and len(list((summary.split_dir / "videos").glob("*.mp4"))) == 200
    assert elapsed < 60, f"200 videos took {elapsed:.1f} s"


def test_frame_folders_hold_the_exact_pixels(tmp_path: Path) -> None:
    out = generate_split(tmp_path, 1, seed=2, split="val", config=SynthRefConfig(frame_folders=True)).split_dir
    from artemis.video import VideoReader

    reader = VideoReader(out / "frames/val_00000")
    expected = render_frames(generate_scene(2, "val", 0))
    np.testing.assert_array_equal(reader.get_frames(list(range(reader.num_frames))), expected)
    ref = formats.read("videoref45k", out / "videoref45k.json")[0]
    assert ref.video == "frames/val_00000"
