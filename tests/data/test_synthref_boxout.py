"""SynthRef's SOT / RSOT records (``elysium_track.json``) and the box-output dataset's training options.

Boxes and visibility are checked against masks drawn from the scene (the generator's labels), not
against the code that wrote the file; each referring expression is read back word by word and checked
to fit its target, no other object of its video, and no shorter phrase.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from artemis.boxes import parse_elysium_box
from artemis.data import SynthRefConfig, generate_split, read
from artemis.data.box_output_dataset import BoxOutDataset, read_record_frames
from artemis.data.synthref import MOTIONS, draw_mask, generate_scene
from artemis.data.synthref_text import MOTION_QUALIFIERS
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.processing import IGNORE_INDEX

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)
SEED, SPLIT, VIDEOS = 7, "val", 30


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("sr-boxout"), VIDEOS, seed=SEED, split=SPLIT, config=CONFIG).split_dir


@pytest.fixture(scope="module")
def records(split_dir: Path) -> list[dict]:
    return json.loads((split_dir / "elysium_track.json").read_text())


def _read_expression(text: str) -> dict[str, str]:
    """``"the small red circle moving left"`` -> the attributes it states (checked to be well formed)."""
    words = text.split()
    assert words[0] == "the", text
    stated: dict[str, str] = {}
    rest = " ".join(words[1:])
    for motion, phrase in MOTION_QUALIFIERS.items():
        if rest.endswith(" " + phrase):
            stated["motion"] = motion
            rest = rest[: -len(phrase) - 1]
    head = rest.split()
    stated["shape"] = head[-1]
    for word in head[:-1]:
        stated["size" if word in ("small", "large") else "colour"] = word
    return stated


def _visible_masks(scene, t: int) -> list[np.ndarray]:
    """Each object's pixels not covered by objects drawn after it, on frame ``t``."""
    masks = [draw_mask(obj, t, scene.width, scene.height) for obj in scene.objects]
    out = []
    for k, mask in enumerate(masks):
        covered = np.zeros_like(mask)
        for later in masks[k + 1 :]:
            covered |= later
        out.append(mask & ~covered)
    return out


def test_one_record_per_target_with_exact_boxes_and_empty_where_not_visible(records: list[dict]) -> None:
    by_id = {r["id"]: r for r in records}
    absent_frames = 0
    for index in range(VIDEOS):
        scene = generate_scene(SEED, SPLIT, index, CONFIG)
        for k, obj in enumerate(scene.objects):
            record = by_id.pop(f"{scene.name}_obj{k}")
            assert record["frame_size"] == [CONFIG.width, CONFIG.height]
            assert record["frames"] == [f"videos/{scene.name}.mp4#{t}" for t in range(CONFIG.num_frames)]
            assert record["object_class"] == obj.shape
            for t in range(CONFIG.num_frames):
                full = draw_mask(obj, t, scene.width, scene.height)
                seen = _visible_masks(scene, t)[k].any()
                if not seen:
                    assert record["box"][t] == [], (record["id"], t)
                    absent_frames += 1
                    continue
                ys, xs = np.nonzero(full)  # the whole object's box, occluded part included
                tight = [xs.min() / scene.width, ys.min() / scene.height]
                tight += [(xs.max() + 1) / scene.width, (ys.max() + 1) / scene.height]
                assert record["box"][t] == pytest.approx(tight, abs=1e-12), (record["id"], t)
    assert not by_id, f"records of no generated object: {sorted(by_id)}"
    assert absent_frames > 0  # the split does exercise absent frames


def test_every_expression_is_true_unique_and_shortest(records: list[dict]) -> None:
    used: set[str] = set()
    for index in range(VIDEOS):
        scene = generate_scene(SEED, SPLIT, index, CONFIG)
        texts = [r["object_description"] for r in records if r["vid"] == scene.name]
        assert len(texts) == len(scene.objects) and len(set(texts)) == len(texts)
        for k, (obj, text) in enumerate(zip(scene.objects, texts, strict=True)):
            stated = _read_expression(text)
            labels = {"colour": obj.colour, "shape": obj.shape, "size": obj.size, "motion": obj.motion}
            assert all(labels[name] == value for name, value in stated.items()), (text, labels)
            others = [o for j, o in enumerate(scene.objects) if j != k]
            assert not any(all(getattr(o, n) == v for n, v in stated.items()) for o in others), text
            # No phrase naming the shape with fewer qualifiers would be unique.
            for count in range(len(stated) - 1):
                for fewer in itertools.combinations(("colour", "size", "motion"), count):
                    fits = [o for o in others if all(getattr(o, n) == getattr(obj, n) for n in ("shape", *fewer))]
                    assert fits, f"{text!r} is longer than needed: {fewer} already single it out"
            used.update(name for name in stated if name != "shape")
    assert used == {"colour", "size", "motion"}  # every qualifier occurs in a split this size


def test_records_read_back_and_the_referring_files_keep_their_captions(split_dir: Path) -> None:
    tracks = read("elysium", split_dir / "elysium_track.json")
    described = read("elysium", split_dir / "elysium.json")
    assert [t.boxes for t in tracks] == [d.boxes for d in described]
    assert all(t.caption != d.caption for t, d in zip(tracks, described, strict=True))
    assert all(m in MOTION_QUALIFIERS for m in MOTIONS)


@pytest.fixture(scope="module")
def tiny(records: list[dict]):
    texts = [r["object_description"] for r in records]
    return build_tiny_model(texts, seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"])


def _prompt_box(processor, item) -> np.ndarray:
    ids = [t for t, label in zip(item["input_ids"].tolist(), item["labels"].tolist(), strict=True) if label == -100]
    text = processor.decode(ids)
    return parse_elysium_box(text[text.rindex("[") : text.rindex("]") + 1])


def test_sot_box_jitter_moves_the_prompt_box_only(split_dir: Path, tiny) -> None:
    model, processor = tiny
    path = split_dir / "elysium_track.json"
    exact = BoxOutDataset.from_files([path], processor, model.config, tasks=("sot",))
    jittered = BoxOutDataset.from_files([path], processor, model.config, tasks=("sot",), sot_box_jitter=0.2, seed=1)
    moved = 0
    for index in range(0, len(exact), 7):
        a, b = exact[index], jittered[index]
        answer = [t for t in a["labels"].tolist() if t != IGNORE_INDEX]
        assert answer == [t for t in b["labels"].tolist() if t != IGNORE_INDEX]  # the answer stays exact
        clip = exact.clips[index]
        sample = exact.samples[clip.record]
        square = processor.video_processor.transform_for(sample.width, sample.height)
        truth = square.boxes_to_model(np.asarray(sample.boxes[clip.positions[0]], dtype=np.float64))
        np.testing.assert_allclose(_prompt_box(processor, a), np.round(truth * 100) / 100, atol=1e-9)
        shift = np.abs(_prompt_box(processor, b) - truth)
        size = np.repeat(truth[2:] - truth[:2], 2)[[0, 2, 1, 3]]  # (w, h, w, h)
        assert np.all(shift <= 0.2 * size + 0.005 + 1e-9)
        moved += bool(np.any(shift > 0.006))
    assert moved > 0
    before = [_prompt_box(processor, jittered[i]) for i in range(0, len(jittered), 7)]
    jittered.set_epoch(1)  # another epoch draws other moves
    after = [_prompt_box(processor, jittered[i]) for i in range(0, len(jittered), 7)]
    assert any(not np.array_equal(x, y) for x, y in zip(before, after, strict=True))
    with pytest.raises(ConfigError, match="sot_box_jitter"):
        BoxOutDataset.from_files([path], processor, model.config, sot_box_jitter=0.9)


def test_sot_query_exact_gives_the_selector_the_true_box_and_the_prompt_the_jittered_one(split_dir: Path, tiny) -> None:
    model, processor = tiny
    path = split_dir / "elysium_track.json"
    options = {"tasks": ("sot",), "sot_box_jitter": 0.2, "seed": 1}
    jittered = BoxOutDataset.from_files([path], processor, model.config, **options)
    exact = BoxOutDataset.from_files([path], processor, model.config, sot_query_exact=True, **options)
    moved = 0
    for index in range(0, len(exact), 7):
        a, b = jittered[index], exact[index]
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])  # same prompt
        clip = exact.clips[index]
        sample = exact.samples[clip.record]
        square = processor.video_processor.transform_for(sample.width, sample.height)
        truth = square.boxes_to_model(np.asarray(sample.boxes[clip.positions[0]], dtype=np.float64))
        np.testing.assert_allclose(b["query_boxes"].numpy(), np.clip(truth, 0, 1), atol=1e-6)
        # Without the option the query reads the jittered box the prompt spells (to its written hundredths).
        np.testing.assert_allclose(a["query_boxes"].numpy(), _prompt_box(processor, a), atol=0.005 + 1e-6)
        moved += bool(np.abs(a["query_boxes"].numpy() - b["query_boxes"].numpy()).max() > 0.006)
    assert moved > 0
    with pytest.raises(ConfigError, match="sot_query_exact='yes'; expected true or false"):
        BoxOutDataset.from_files([path], processor, model.config, sot_query_exact="yes")


def test_sot_box_shift_moves_the_prompt_box_and_keeps_its_size(split_dir: Path, tiny) -> None:
    model, processor = tiny
    path = split_dir / "elysium_track.json"
    exact = BoxOutDataset.from_files([path], processor, model.config, tasks=("sot",))
    shifted = BoxOutDataset.from_files([path], processor, model.config, tasks=("sot",), sot_box_shift=0.5, seed=3)
    moved = kept = 0
    for index in range(0, len(exact), 5):
        a, b = exact[index], shifted[index]
        assert [t for t in a["labels"].tolist() if t != IGNORE_INDEX] == [
            t for t in b["labels"].tolist() if t != IGNORE_INDEX
        ]  # the answer stays exact
        clip = exact.clips[index]
        sample = exact.samples[clip.record]
        square = processor.video_processor.transform_for(sample.width, sample.height)
        truth = square.boxes_to_model(np.asarray(sample.boxes[clip.positions[0]], dtype=np.float64))
        given = _prompt_box(processor, b)
        size, given_size = truth[2:] - truth[:2], given[2:] - given[:2]
        centre_move = np.abs((given[:2] + given[2:]) / 2 - (truth[:2] + truth[2:]) / 2)
        frame = square.boxes_to_model(np.array([0.0, 0.0, sample.width, sample.height]))
        inside = np.all(given[:2] > frame[:2] + 0.01) and np.all(given[2:] < frame[2:] - 0.01)  # not clipped
        if inside:
            np.testing.assert_allclose(given_size, size, atol=0.0101)  # the size is kept (to the written units)
            kept += 1
        assert np.all(centre_move <= 0.5 * size + 0.0101)
        moved += bool(np.any(centre_move > 0.011))
    assert moved > len(range(0, len(exact), 5)) // 2 and kept > len(range(0, len(exact), 5)) // 4
    with pytest.raises(ConfigError, match="sot_box_shift"):
        BoxOutDataset.from_files([path], processor, model.config, sot_box_shift=1.5)


def _answer_boxes(processor, item, key: str) -> np.ndarray:
    """(n, 4) the boxes the answer spells in ``item[key]`` (input ids or labels), in 0..100 units."""
    ids = [t for t, label in zip(item[key].tolist(), item["labels"].tolist(), strict=True) if label != -100]
    text = processor.decode(ids)
    return np.array(re.findall(r"\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]", text), dtype=int)


def test_box_history_noise_moves_the_boxes_read_back_not_the_labels(split_dir: Path, tiny) -> None:
    model, processor = tiny
    path = split_dir / "elysium_track.json"
    exact = BoxOutDataset.from_files([path], processor, model.config)
    noisy = BoxOutDataset.from_files([path], processor, model.config, box_history_noise=3, seed=2)
    moves = []
    for index in range(0, len(exact), 5):
        a, b = exact[index], noisy[index]
        assert a["labels"].tolist() == b["labels"].tolist()  # what is learnt stays exact
        truth = _answer_boxes(processor, a, "labels")
        np.testing.assert_array_equal(_answer_boxes(processor, a, "input_ids"), truth)  # off: reads the truth
        read = _answer_boxes(processor, b, "input_ids")
        assert read.shape == truth.shape
        absent = (truth == 0).all(1)
        np.testing.assert_array_equal(read[absent], truth[absent])  # an absent frame stays [0,0,0,0]
        move = read[~absent] - truth[~absent]  # (m, 4)
        assert np.abs(move).max(initial=0) <= 3
        inside = ((truth[~absent] >= 3) & (truth[~absent] <= 97)).all(1)  # not clipped at the frame's edge
        np.testing.assert_array_equal(move[inside][:, :2], move[inside][:, 2:])  # the box moves, its size stays
        moves += move[inside][:, :2].tolist()
        prompt = [t for t, label in zip(b["input_ids"].tolist(), b["labels"].tolist(), strict=True) if label == -100]
        assert prompt == [
            t for t, label in zip(a["input_ids"].tolist(), a["labels"].tolist(), strict=True) if label == -100
        ]
    assert {dx for dx, _ in moves} == set(range(-3, 4))  # every move of the range is drawn
    before = [noisy[i]["input_ids"].tolist() for i in range(0, len(noisy), 5)]
    noisy.set_epoch(1)
    assert before != [noisy[i]["input_ids"].tolist() for i in range(0, len(noisy), 5)]
    for bad in (-1, 2.5, True, 21):
        with pytest.raises(ConfigError, match="box_history_noise"):
            BoxOutDataset.from_files([path], processor, model.config, box_history_noise=bad)


def test_decoded_video_cache_gives_the_frames_a_direct_read_gives(split_dir: Path, tiny) -> None:
    model, processor = tiny
    dataset = BoxOutDataset.from_files([split_dir / "elysium_track.json"], processor, model.config, tasks=("sot",))
    for clip in dataset.clips[:6]:
        sample = dataset.samples[clip.record]
        direct = read_record_frames(sample, clip.positions)
        cached = read_record_frames(sample, clip.positions, dataset.video_cache)
        np.testing.assert_array_equal(direct, cached)
    assert dataset.video_cache.hits > 0
    off = BoxOutDataset.from_files(
        [split_dir / "elysium_track.json"], processor, model.config, tasks=("sot",), video_cache_mb=0
    )
    clip = off.clips[0]
    read_record_frames(off.samples[clip.record], clip.positions, off.video_cache)
    read_record_frames(off.samples[clip.record], clip.positions, off.video_cache)
    assert off.video_cache.hits == 0
