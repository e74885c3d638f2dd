"""``ReferringDataset`` on real SynthRef files: items, labels, jitter, sample kinds, bad records, mixing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from artemis.data import read
from artemis.data.referring_dataset import EpochCallback, ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import AnnotationError, ConfigError
from artemis.model import build_tiny_model
from artemis.model.processing import IGNORE_INDEX
from artemis.prompts import DESCRIBE_QUESTIONS

# 64x48 (not square, so box mapping matters), 12 frames: more frames than the tiny model's 8 video frames.
CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five SynthRef videos plus an image record and a text-only record in LLaVA format."""
    root = tmp_path_factory.mktemp("synthref")
    split_dir = generate_split(root, 5, seed=3, split="train", config=CONFIG).split_dir
    image = np.zeros((40, 56, 3), dtype=np.uint8)
    image[10:30, 20:40] = (255, 0, 0)
    cv2.imwrite(str(split_dir / "red.png"), image)
    records = [
        {
            "id": "img0",
            "image": "red.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is the square?"},
                {"from": "gpt", "value": "It is red."},
            ],
        },
        {
            "id": "txt0",
            "conversations": [
                {"from": "human", "value": "How many objects are there in the video?"},
                {"from": "gpt", "value": "There are three objects."},
            ],
        },
    ]
    (split_dir / "llava_misc.json").write_text(json.dumps(records))
    return split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    for name in ("llava_stage2.json", "llava_misc.json"):
        texts += [turn["value"] for s in read("llava", split / name) for turn in s.conversations]
    return build_tiny_model(texts, seed=0)


def _referring(split: Path, tiny, **options) -> ReferringDataset:
    model, processor = tiny
    return ReferringDataset.from_files(
        [("videoref45k", split / "videoref45k.json")], processor, model.config, **options
    )


def test_referring_item_shapes_boxes_and_labels(split: Path, tiny) -> None:
    model, processor = tiny
    config = model.config
    dataset = _referring(split, tiny)
    sample = dataset.entries[0].sample
    item = dataset[0]
    K = config.num_region_frames
    assert item["pixel_values"].shape == (8, 3, 32, 32) and item["frame_mask"].all()
    assert item["region_pixel_values"].shape == (K, 3, 32, 32)
    assert item["region_boxes"].shape == (1, K, 4) and item["region_visible"].shape == (1, K)
    assert item["region_times"].shape == (K,)
    # The key frame's box comes first, mapped onto the padded square exactly as inference maps it.
    expected = processor.video_processor.transform_for(64, 48).boxes_to_model(np.asarray([sample.key_box]))
    torch.testing.assert_close(item["region_boxes"][0, 0], torch.tensor(expected[0], dtype=torch.float32))
    assert item["region_times"][0] == pytest.approx(sample.key_frame_id / 11)
    assert bool(item["region_visible"][0, 0]) and torch.isfinite(item["region_boxes"]).all()

    ids, labels = item["input_ids"], item["labels"]
    assert ids.shape == labels.shape and ids.dtype == torch.long
    assert int((ids == config.video_token_id).sum()) == config.num_video_tokens
    assert int((ids == config.region_token_id).sum()) == config.num_region_tokens
    # Labels are exactly the caption's ids and </s>, at the end of the sequence.
    answer = processor.tokenizer(sample.caption, add_special_tokens=False)["input_ids"] + [
        processor.tokenizer.eos_token_id
    ]
    trained = labels != IGNORE_INDEX
    assert labels[trained].tolist() == answer
    assert trained[-len(answer) :].all() and not trained[: -len(answer)].any()
    assert ids[-len(answer) :].tolist() == answer


def test_jitter_is_reproducible_per_seed_epoch_index_and_changes_across_epochs(split: Path, tiny) -> None:
    first, second = _referring(split, tiny, seed=7), _referring(split, tiny, seed=7)
    times_by_epoch = []
    for epoch in range(4):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        a, b = first[2], second[2]
        for name in a:
            assert torch.equal(a[name], b[name]), name
        times_by_epoch.append(tuple(a["region_times"].tolist()))
    assert len(set(times_by_epoch)) > 1, "the tracked frames never changed across 4 epochs"
    # Jittered frames are still frames where the target is visible.
    assert first[2]["region_visible"].all()
    # The EpochCallback is how the Trainer tells the dataset the epoch.
    callback = EpochCallback(first)
    state = type("State", (), {"epoch": 2.0})()
    callback.on_epoch_begin(None, state, None)
    assert first.epoch == 2


def test_key_frame_jitter_gives_the_box_on_other_visible_frames(split: Path, tiny) -> None:
    _, processor = tiny
    transform = processor.video_processor.transform_for(64, 48)
    plain = _referring(split, tiny, seed=5)
    moved = _referring(split, tiny, seed=5, key_frame_jitter=1.0)
    again = _referring(split, tiny, seed=5, key_frame_jitter=1.0)
    key_frames = set()
    for epoch in range(3):
        for dataset in (plain, moved, again):
            dataset.set_epoch(epoch)
        for index in range(len(moved)):
            sample = moved.entry(index).sample
            boxes, visible = sample.boxes_array()
            frame_ids = list(sample.frame_ids)
            item = moved[index]
            # Reproducible per seed, epoch and index.
            assert all(torch.equal(item[name], again[index][name]) for name in item)
            # Jitter 0 keeps the record's key frame.
            assert plain[index]["region_times"][0] == pytest.approx(sample.key_frame_id / 11)
            # Jitter 1 puts the box on another frame where the target is visible, with that frame's box.
            frame = round(float(item["region_times"][0]) * 11)
            if visible.sum() > 1:
                assert frame != sample.key_frame_id
            row = frame_ids.index(frame)
            assert visible[row]
            expected = transform.boxes_to_model(boxes[row : row + 1])[0]
            torch.testing.assert_close(item["region_boxes"][0, 0], torch.tensor(expected, dtype=torch.float32))
            # The record's own key frame may now be one of the tracked frames.
            assert item["region_visible"].all()
            key_frames.add((index, frame))
    assert len({frame for _, frame in key_frames}) > 2, "the jittered key frames never varied"


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_key_frame_jitter_outside_zero_to_one_is_refused(split: Path, tiny, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"key_frame_jitter={value}: it is a probability"):
        _referring(split, tiny, key_frame_jitter=value)


def test_question_defaults_to_a_seeded_paraphrase(split: Path, tiny, tmp_path: Path) -> None:
    records = json.loads((split / "videoref45k.json").read_text())
    for record in records:
        record.pop("question")
        record["frame_path"] = str(split / record["frame_path"])
    path = tmp_path / "no_question.json"
    path.write_text(json.dumps(records))
    model, processor = tiny
    dataset = ReferringDataset.from_files([("videoref45k", path)], processor, model.config, seed=1)
    asked = [asked_question(processor, dataset[i]) for i in range(len(dataset))]
    assert None not in asked and len(set(asked)) > 1
    assert asked == [asked_question(processor, dataset[i]) for i in range(len(dataset))]


def asked_question(processor, item: dict[str, torch.Tensor]) -> int | None:
    """Which of DESCRIBE_QUESTIONS the prompt of ``item`` asks (its ids appear in the prompt)."""
    prompt = item["input_ids"][item["labels"] == IGNORE_INDEX].tolist()
    for number, question in enumerate(DESCRIBE_QUESTIONS):
        # The question names the target with the region's key-frame placeholder id.
        before, after = question.split("<region>")
        tokenize = processor.tokenizer
        region_id = tokenize.convert_tokens_to_ids("<region>")
        ids = [
            *tokenize(before, add_special_tokens=False)["input_ids"],
            region_id,
            *tokenize(after, add_special_tokens=False)["input_ids"],
        ]
        if any(prompt[i : i + len(ids)] == ids for i in range(len(prompt))):
            return number
    return None


def test_video_image_and_text_conversations(split: Path, tiny) -> None:
    model, processor = tiny
    config = model.config
    files = [("llava", split / "llava_stage2.json"), ("llava", split / "llava_misc.json")]
    dataset = ReferringDataset.from_files(files, processor, config)
    kinds = [entry.kind for entry in dataset.entries]
    assert kinds == ["video"] * 5 + ["image", "text"]
    video, image, text = dataset[0], dataset[5], dataset[6]
    assert video["pixel_values"].shape == (8, 3, 32, 32) and "region_boxes" not in video
    assert image["pixel_values"].shape == (1, 3, 32, 32) and image["frame_mask"].tolist() == [True]
    for item in (video, image):  # <image> is fed as a one-frame <video>
        assert int((item["input_ids"] == config.video_token_id).sum()) == config.num_video_tokens
    assert set(text) == {"input_ids", "labels"}
    assert not (text["input_ids"] == config.video_token_id).any()
    # A multi-turn conversation trains on every answer.
    turns = dataset.entries[0].sample.conversations
    answers = [processor.tokenizer(t["value"], add_special_tokens=False)["input_ids"] for t in turns[1::2]]
    expected = [i for a in answers for i in [*a, processor.tokenizer.eos_token_id]]
    assert video["labels"][video["labels"] != IGNORE_INDEX].tolist() == expected


def _broken_file(split: Path, tmp_path: Path) -> Path:
    records = json.loads((split / "videoref45k.json").read_text())
    for record in records:
        record["frame_path"] = str(split / record["frame_path"])
    records[2]["track_list"][3] = [10, 20, 30]  # three numbers
    records[4]["frame_path"] = str(split / "videos/missing.mp4")
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(records))
    return path


def test_malformed_record_names_file_record_and_field(split: Path, tiny, tmp_path: Path) -> None:
    model, processor = tiny
    path = _broken_file(split, tmp_path)
    with pytest.raises(AnnotationError, match=r"broken\.json: record 2: field 'track_list'"):
        ReferringDataset.from_files([("videoref45k", path)], processor, model.config)
    records = json.loads(path.read_text())
    records[2] = json.loads((split / "videoref45k.json").read_text())[2]
    records[2]["frame_path"] = str(split / records[2]["frame_path"])
    path.write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match=r"record 4: field 'frame_path': .*missing\.mp4 does not exist"):
        ReferringDataset.from_files([("videoref45k", path)], processor, model.config)


def test_skip_mode_counts_bad_records(split: Path, tiny, tmp_path: Path, caplog) -> None:
    model, processor = tiny
    path = _broken_file(split, tmp_path)
    total = len(json.loads(path.read_text()))
    dataset = ReferringDataset.from_files([("videoref45k", path)], processor, model.config, bad_records="skip")
    assert len(dataset.skipped) == 2 and len(dataset) == total - 2
    assert "record 2" in str(dataset.skipped[0]) and "record 4" in str(dataset.skipped[1])
    assert "skipped 2 bad records" in caplog.text
    assert [e.index for e in dataset.entries] == [i for i in range(total) if i not in (2, 4)]


def test_error_while_reading_an_item_names_the_record(split: Path, tiny, tmp_path: Path) -> None:
    records = json.loads((split / "videoref45k.json").read_text())[:2]
    for record in records:
        record["frame_path"] = str(split / record["frame_path"])
    records[1]["frame_id"] = [f + 20 for f in records[1]["frame_id"]]  # past the 12-frame video
    records[1]["key_frame_id"] += 20
    path = tmp_path / "late.json"
    path.write_text(json.dumps(records))
    model, processor = tiny
    dataset = ReferringDataset.from_files([("videoref45k", path)], processor, model.config)
    dataset[0]
    with pytest.raises(AnnotationError, match=r"late\.json: record 1: field 'frame_id': .*12 frames"):
        dataset[1]


def test_mixing_weights_and_split(split: Path, tiny) -> None:
    model, processor = tiny
    files = [("videoref45k", split / "videoref45k.json"), ("llava", split / "llava_stage2.json")]
    dataset = ReferringDataset.from_files(files, processor, model.config, weights=[2.0, 0.6])
    refs = sum(e.kind == "referring" for e in dataset.entries)
    assert len(dataset) == 2 * refs + 3
    kinds = [dataset.entry(i).kind for i in range(len(dataset))]
    assert kinds.count("referring") == 2 * refs and kinds.count("video") == 3
    subsets = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        subsets.add(tuple(dataset.entry(i).index for i in range(2 * refs, len(dataset))))
    assert len(subsets) > 1, "the down-weighted file gave the same subset every epoch"

    train = ReferringDataset.from_files(files, processor, model.config, split="train", val_fraction=0.4)
    val = ReferringDataset.from_files(files, processor, model.config, split="val", val_fraction=0.4)
    assert len(train) + len(val) == len(dataset.entries) and len(val) > 0
    assert not {e.media for e in train.entries} & {e.media for e in val.entries}


def test_split_does_not_depend_on_where_the_data_lives(split: Path, tiny, tmp_path: Path) -> None:
    """The train/val split hashes the video's folder and name, not its absolute path."""
    import shutil

    model, processor = tiny
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(split, moved)

    def val_videos(root: Path) -> list[str]:
        files = [("videoref45k", root / "videoref45k.json"), ("llava", root / "llava_stage2.json")]
        val = ReferringDataset.from_files(files, processor, model.config, split="val", val_fraction=0.5)
        return sorted(e.split_key for e in val.entries)

    here, there = val_videos(split), val_videos(moved)
    assert here == there and here
