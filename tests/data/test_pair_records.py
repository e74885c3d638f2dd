"""Records about several regions (SynthRef's ``videoref45k_pairs.json``): reading, writing, training items.

A training item built from a pair record must be the prompt ``ask`` builds for the same two regions, so
the test compares the dataset's ids with those of :func:`artemis.tasks.referring.prepare`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from artemis.data import read
from artemis.data.cache import build_cache
from artemis.data.collator import ArtemisCollator
from artemis.data.convert import convert
from artemis.data.entries import load_entries, read_track_records
from artemis.data.formats import videoref45k
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import PAIRS_FILE, generate_split, read_pair_records
from artemis.errors import AnnotationError
from artemis.model import build_tiny_model
from artemis.model.features import VisionFeatureExtractor
from artemis.model.processing import IGNORE_INDEX
from artemis.tasks.referring import prepare
from artemis.track import Track
from artemis.video import open_video

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("pairs"), 3, seed=5, split="train", config=CONFIG).split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    texts += [t for s in read("videoref45k", split / PAIRS_FILE) for t in (s.question, s.caption)]
    return build_tiny_model(texts, seed=0)


def _records(split: Path) -> list[dict]:
    return json.loads((split / PAIRS_FILE).read_text())


def _write(split: Path, records: list[dict], name: str) -> Path:
    path = split / name  # beside the videos, so frame_path resolves
    path.write_text(json.dumps(records))
    return path


# --- reading and writing -------------------------------------------------------------------------------


def test_pairs_read_as_two_regions_matching_the_evaluation_reader(split: Path) -> None:
    samples = videoref45k.read(split / PAIRS_FILE)
    expected = read_pair_records(split / PAIRS_FILE)  # the evaluation's own reader of the same file
    assert len(samples) == len(expected) > 0
    for sample, pair in zip(samples, expected, strict=True):
        assert sample.num_regions == 2
        assert sample.question == pair.question and sample.caption == pair.answer
        assert sample.metadata["kind"] == pair.kind and tuple(sample.metadata["objects"]) == pair.objects
        for index in range(2):
            region = sample.region(index)
            boxes, visible = region.boxes_array()
            np.testing.assert_array_equal(boxes[visible], pair.boxes[index][visible])
            assert np.isnan(pair.boxes[index][~visible]).all()
            assert region.key_frame_id == pair.key_frames[index]
    assert any(len(set(p.key_frames)) == 2 for p in expected), "the split should have regions on different frames"


def test_pairs_round_trip_through_the_writer(split: Path) -> None:
    samples = videoref45k.read(split / PAIRS_FILE)
    out = videoref45k.write(samples, split / "rewritten_pairs.json")
    written, original = json.loads(out.read_text()), _records(split)
    for mine, theirs in zip(written, original, strict=True):
        for name in ("track_list", "key_frame_box", "key_frame_id", "frame_id", "frame_path", "question", "kind"):
            assert mine[name] == theirs[name], name
    again = videoref45k.read(out)
    assert [s.other_regions for s in again] == [s.other_regions for s in samples]


def test_single_region_records_are_read_as_before(split: Path) -> None:
    samples = videoref45k.read(split / "videoref45k.json")
    records = json.loads((split / "videoref45k.json").read_text())
    assert all(s.num_regions == 1 and not s.other_regions for s in samples)
    for sample, record in zip(samples, records, strict=True):
        assert sample.key_frame_id == record["key_frame_id"]
        assert "kind" not in sample.metadata and "objects" not in sample.metadata


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(key_frame_id=r["key_frame_id"][:1]), "track_list"),
        (lambda r: r["track_list"][1].pop(), "track_list[1]"),
        (lambda r: r.update(question="Is <region> red?"), "question"),
        (lambda r: r.update(frame_id=[f"{i:05d}.jpg" for i in r["frame_id"]]), "frame_id"),
        (lambda r: r["key_frame_id"].__setitem__(1, 999), "key_frame_id[1]"),
        (lambda r: r["track_list"][1].__setitem__(0, [5, 5, 1, 9]), "boxes"),
    ],
)
def test_bad_pair_records_are_refused_by_name(split: Path, change, field: str) -> None:
    record = _records(split)[0]
    change(record)
    path = _write(split, [record], "bad_pairs.json")
    with pytest.raises(AnnotationError, match=rf"record 0.*field '{re.escape(field)}'") as error:
        videoref45k.read(path)
    if field == "boxes":
        assert "region2" in str(error.value)


# --- training items ------------------------------------------------------------------------------------


def test_training_prompt_equals_the_inference_prompt(split: Path, tiny) -> None:
    model, processor = tiny
    dataset = ReferringDataset.from_files([("videoref45k", split / PAIRS_FILE)], processor, model.config)
    pairs = read_pair_records(split / PAIRS_FILE)
    # one record on a shared key frame and one whose regions are given on different frames
    chosen = [next(i for i, p in enumerate(pairs) if len(set(p.key_frames)) == n) for n in (1, 2)]
    for index in chosen:
        pair = pairs[index]
        item = dataset[index]
        with open_video(pair.video) as source:
            tracks = [
                Track(boxes=b, visible=~np.isnan(b).any(axis=1), key_frame=k, num_frames=source.num_frames)
                for b, k in zip(pair.boxes, pair.key_frames, strict=True)
            ]
            key = pair.key_frames[0] if len(set(pair.key_frames)) == 1 else list(pair.key_frames)
            inference, _ = prepare(processor, source, tracks, pair.question, key)
        prompt = inference["input_ids"]
        assert torch.equal(item["input_ids"][: len(prompt)], prompt)
        assert (item["labels"][: len(prompt)] == IGNORE_INDEX).all()
        answer = processor.decode(item["labels"][item["labels"] != IGNORE_INDEX].tolist())
        assert answer.replace(" ", "") == pair.answer.replace(" ", "")
        assert item["region_boxes"].shape[0] == 2  # (R, K, 4)
        # the key slot (the shared frame) and the video frames are the inference ones; only the tracked
        # frames are jittered in training
        assert torch.equal(item["region_times"][0], inference["region_times"][0])
        torch.testing.assert_close(item["region_boxes"][:, 0], inference["region_boxes"][:, 0], equal_nan=True)
        torch.testing.assert_close(item["pixel_values"], inference["pixel_values"])


def test_collator_pads_one_and_two_region_items(split: Path, tiny) -> None:
    model, processor = tiny
    files = [("videoref45k", split / "videoref45k.json"), ("videoref45k", split / PAIRS_FILE)]
    dataset = ReferringDataset.from_files(files, processor, model.config)
    single = next(i for i in range(len(dataset)) if dataset.entry(i).sample.num_regions == 1)
    pair = next(i for i in range(len(dataset)) if dataset.entry(i).sample.num_regions == 2)
    batch = ArtemisCollator(processor, model.config)([dataset[single], dataset[pair]])
    k = model.config.num_track_boxes + 1
    assert batch["region_boxes"].shape == (2, 2, k, 4)
    assert torch.isnan(batch["region_boxes"][0, 1]).all() and not batch["region_visible"][0, 1].any()
    assert not torch.isnan(batch["region_boxes"][1, 1, 0]).any() and batch["region_visible"][1, :, 0].all()
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss)


@pytest.mark.parametrize("features", [False, True], ids=["frames", "features"])
def test_a_cache_serves_pair_records_as_the_videos_do(split: Path, tiny, tmp_path: Path, features: bool) -> None:
    """Pairs cached alone (no one-region record of the same videos to lend them frames) give the items
    and logits the videos give, every region's track and jittered frames included."""
    model, processor = tiny
    files = [("videoref45k", split / PAIRS_FILE)]
    entries, _ = load_entries(files)
    raw = ReferringDataset.from_files(files, processor, model.config, seed=4, key_frame_jitter=0.5)
    settings = raw.cache_settings()
    extractor = None
    if features:
        extractor = VisionFeatureExtractor(model)
        settings = settings.with_features(extractor.config, extractor.fingerprint)
    build_cache(entries, tmp_path / "cache", settings, extractor=extractor)
    cached = ReferringDataset.from_files(
        files, processor, model.config, seed=4, key_frame_jitter=0.5, cache_dir=tmp_path / "cache", model=model
    )
    collate = ArtemisCollator(processor, model.config)
    for index in range(len(raw)):
        x, y = raw[index], cached[index]
        for name in ("input_ids", "labels", "region_boxes", "region_visible", "region_times"):
            assert torch.equal(x[name].nan_to_num(-9.0), y[name].nan_to_num(-9.0)), (index, name)
        assert x["region_boxes"].shape[0] == 2
        with torch.no_grad():
            expected, actual = model(**collate([x])), model(**collate([y]))
        torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-5)


def test_one_region_consumers_refuse_pair_records(split: Path, tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"about 2 regions and elysium holds one.*write it as videoref45k"):
        convert("videoref45k", "elysium", split / PAIRS_FILE, tmp_path / "elysium.json")
    with pytest.raises(AnnotationError, match=r"field 'track_list'.*box output follows one target"):
        read_track_records("videoref45k", split / PAIRS_FILE)
    assert len(convert("videoref45k", "videoref45k", split / PAIRS_FILE, split / "copy_pairs.json")) > 0
