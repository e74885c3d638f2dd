"""SynthRef's conversations (``videoref45k_chat.json``): exact follow-up answers, the reader, training items.

A training item built from a conversation must be the prompt ``chat`` builds for the same turns, so the
test captures the ids ``chat`` hands the model and compares the dataset's ids with them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import artemis.data.synthref_writer as writer
from artemis.data import read
from artemis.data.cache import build_cache
from artemis.data.entries import load_entries
from artemis.data.formats import videoref45k
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_chat import CHAT_FILE
from artemis.data.synthref_text import MOTION_PHRASES
from artemis.data.synthref_writer import generate_split
from artemis.errors import AnnotationError
from artemis.model import build_tiny_model
from artemis.model.processing import IGNORE_INDEX
from artemis.tasks.referring import chat
from artemis.track import Track
from artemis.video import open_video

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("chat"), 3, seed=5, split="val", config=CONFIG).split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [t for s in read("videoref45k", split / CHAT_FILE) for turn in s.conversations for t in [turn["value"]]]
    return build_tiny_model(texts, seed=0)


def _records(split: Path) -> list[dict]:
    return json.loads((split / CHAT_FILE).read_text())


def _expected_answer(question: str, obj: dict) -> str:
    """The follow-up's answer from the manifest's labels."""
    if "colour" in question:
        return f"It is {obj['colour']}."
    if "shape" in question:
        return f"It is a {obj['shape']}."
    assert "direction" in question or "go" in question, question
    return "It does not move." if obj["motion"] == "still" else f"It {MOTION_PHRASES[obj['motion']][2]}."


def test_each_object_has_a_description_then_an_exact_follow_up(split: Path) -> None:
    manifest = json.loads((split / "manifest.json").read_text())
    objects = [obj for video in manifest["videos"] for obj in video["objects"]]
    single = json.loads((split / "videoref45k.json").read_text())
    records = _records(split)
    assert len(records) == len(objects) == len(single)
    names, asked = set(), set()
    for record, described, obj in zip(records, single, objects, strict=True):
        human1, gpt1, human2, gpt2 = (turn["value"] for turn in record["conversations"])
        assert [turn["from"] for turn in record["conversations"]] == ["human", "gpt", "human", "gpt"]
        # the first turn is the object's one-turn record, on the same track
        assert (
            (human1, gpt1) == (described["question"], described["caption"]) == (record["question"], record["caption"])
        )
        assert record["track_list"] == described["track_list"] and record["key_frame_id"] == described["key_frame_id"]
        assert "<region>" not in human2 and "<video>" not in human2
        assert gpt2 == _expected_answer(human2, obj)
        names.add("the region" if "the region" in human2 else "it")
        asked.add(next(word for word in ("colour", "shape", "direction", "go") if word in human2))
    assert names == {"it", "the region"} and len(asked) >= 3


def test_the_chat_file_leaves_every_other_file_byte_identical(
    split: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "chat_records", lambda *args: [])
    without = generate_split(tmp_path, 3, seed=5, split="val", config=CONFIG).split_dir

    def digest(folder: Path) -> dict[str, str]:
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != CHAT_FILE
        }

    assert digest(split) == digest(without)
    assert json.loads((without / CHAT_FILE).read_text()) == []


def test_conversations_round_trip_through_the_writer(split: Path) -> None:
    samples = videoref45k.read(split / CHAT_FILE)
    assert all(len(s.conversations) == 4 and s.num_regions == 1 for s in samples)
    out = videoref45k.write(samples, split / "rewritten_chat.json")
    assert json.loads(out.read_text()) == _records(split)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["conversations"].pop(), "conversations"),
        (lambda r: r["conversations"][2].update({"from": "gpt"}), "conversations[2]"),
        (lambda r: r["conversations"][3].update({"value": 7}), "conversations[3]"),
        (lambda r: r["conversations"][2].update({"value": "And the <region>?"}), "conversations[2]"),
        (lambda r: r.update(caption="something else"), "conversations"),
    ],
)
def test_bad_conversations_are_refused_by_name(split: Path, change, field: str) -> None:
    record = _records(split)[0]
    change(record)
    path = split / "bad_chat.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(AnnotationError, match=rf"record 0.*field '{re.escape(field)}'"):
        videoref45k.read(path)


def _chat_prompt(model, processor, source, track: Track, messages: list[dict[str, str]]) -> torch.Tensor:
    """The input ids ``chat`` hands the model for ``messages`` (captured at the prefill)."""
    seen: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda m, a, k: seen.append(k["input_ids"][0].clone()), with_kwargs=True)
    try:
        chat(model, processor, source, [track], messages, track.key_frame, max_new_tokens=1)
    finally:
        hook.remove()
    return seen[0]


def test_a_training_item_is_the_prompt_chat_builds_with_a_loss_on_every_answer(split: Path, tiny) -> None:
    model, processor = tiny
    dataset = ReferringDataset.from_files([("videoref45k", split / CHAT_FILE)], processor, model.config, seed=2)
    records = _records(split)
    for index in (0, len(records) - 1):
        record, item = records[index], dataset[index]
        first, answer1, follow_up, answer2 = (turn["value"] for turn in record["conversations"])
        boxes = np.array([b if b else [np.nan] * 4 for b in record["track_list"]], dtype=np.float64)
        with open_video(split / record["frame_path"]) as source:
            track = Track(
                boxes=boxes,
                visible=~np.isnan(boxes).any(axis=1),
                key_frame=record["key_frame_id"],
                num_frames=source.num_frames,
            )
            messages = [
                {"role": "user", "content": first},
                {"role": "assistant", "content": answer1},
                {"role": "user", "content": follow_up},
            ]
            prompt = _chat_prompt(model, processor, source, track, messages)
            opening = _chat_prompt(model, processor, source, track, messages[:1])
        ids, labels = item["input_ids"], item["labels"]
        assert torch.equal(ids[: len(prompt)], prompt)  # the whole conversation so far, as chat asks it
        # a loss on both answers (and their end ids), none on the prompts
        assert (labels[: len(opening)] == IGNORE_INDEX).all()
        trained = [processor.decode(labels[a:b].tolist()) for a, b in _spans(labels)]
        assert [t.replace(" ", "") for t in trained] == [a.replace(" ", "") for a in (answer1, answer2)]
        assert _spans(labels)[1][0] == len(prompt)  # the second answer follows the chat prompt


def _spans(labels: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each run of trained positions."""
    trained = [*(labels != IGNORE_INDEX).tolist(), False]
    spans, start = [], None
    for position, on in enumerate(trained):
        if on and start is None:
            start = position
        elif not on and start is not None:
            spans.append((start, position))
            start = None
    return spans


def test_a_cache_serves_conversations_as_the_videos_do(split: Path, tiny, tmp_path: Path) -> None:
    model, processor = tiny
    files = [("videoref45k", split / CHAT_FILE)]
    raw = ReferringDataset.from_files(files, processor, model.config, seed=4, key_frame_jitter=0.5)
    build_cache(load_entries(files)[0], tmp_path / "cache", raw.cache_settings())
    cached = ReferringDataset.from_files(
        files, processor, model.config, seed=4, key_frame_jitter=0.5, cache_dir=tmp_path / "cache"
    )
    for index in range(len(raw)):
        x, y = raw[index], cached[index]
        for name in ("input_ids", "labels", "pixel_values", "region_boxes", "region_times"):
            assert torch.equal(x[name].nan_to_num(-9.0), y[name].nan_to_num(-9.0)), (index, name)
