"""chat reuses the KV cache of the previous turn: the language model prefills only the new turn, and greedy
answers are those of the conversation encoded from scratch.

The prefill is measured with a forward hook on the language model: the first call of each ``generate`` is
the prefill, and its ``inputs_embeds`` hold exactly the tokens it encodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import DynamicCache

from artemis import ArtemisModel
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.model import build_tiny_model
from artemis.regions import Region
from artemis.track import Track

SMALL = SynthRefConfig(width=64, height=48, num_frames=12, min_objects=2, max_objects=2)
QUESTION = "What is the <region> doing in this video?"
FOLLOW_UPS = ("What colour is it?", "Which shape does it have?")


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("chat"), 1, seed=3, split="test", config=SMALL).split_dir


def _targets(split: Path) -> tuple[Path, list[tuple[Region, Track]]]:
    """The video and, per object, its region on its key frame and its exact track (no tracker run)."""
    video = json.loads((split / "manifest.json").read_text())["videos"][0]
    targets = []
    for obj in video["objects"]:
        boxes = np.array([b if b else [np.nan] * 4 for b in obj["boxes"]], dtype=np.float64)
        key = obj["key_frame_id"]
        track = Track(boxes=boxes, visible=np.array(obj["visible"]), key_frame=key, num_frames=len(boxes))
        targets.append((Region(box=tuple(obj["boxes"][key]), frame=key), track))
    return split / video["video"], targets


class Prefills:
    """Counts what the language model and the vision tower receive."""

    def __init__(self, model) -> None:
        self.lengths: list[int] = []  # tokens per language-model forward
        self.vision_calls = 0
        model.language_model.register_forward_pre_hook(self._language, with_kwargs=True)
        model.vision_tower.register_forward_pre_hook(self._vision)

    def _language(self, module, args, kwargs) -> None:
        self.lengths.append(int(kwargs["inputs_embeds"].shape[1]))

    def _vision(self, module, args) -> None:
        self.vision_calls += 1

    def reset(self) -> None:
        self.lengths.clear()
        self.vision_calls = 0

    @property
    def prefill(self) -> int:
        return self.lengths[0]


def _conversation(pipeline: ArtemisModel, video: Path, region: Region, track: Track, reuse: bool, steps: int = 3):
    """Ask QUESTION, then the follow-ups, feeding each answer back; the texts and each call's prefill."""
    counter = pipeline.counter
    messages: list[dict[str, str]] = []
    texts, prefills, reused = [], [], []
    for question in (QUESTION, *FOLLOW_UPS)[:steps]:
        if not reuse:
            pipeline.chat_cache.clear()
        counter.reset()
        messages = [*messages, {"role": "user", "content": question}]
        reply = pipeline.chat(video, [region], messages, tracks=[track], max_new_tokens=6)
        messages = reply.messages
        texts.append(reply.text)
        prefills.append(counter.prefill)
        reused.append(pipeline.chat_cache.reused_tokens)
    return texts, prefills, reused, messages


@pytest.fixture(scope="module")
def tiny(small_split: Path) -> ArtemisModel:
    texts = [s for s in json.loads((small_split / "videoref45k.json").read_text()) for s in (s["caption"],)]
    model, processor = build_tiny_model([*texts, *FOLLOW_UPS, "It is red ."], seed=1)
    pipeline = ArtemisModel(model, processor)
    pipeline.counter = Prefills(model)
    return pipeline


def _turns(messages: list[dict[str, str]]) -> list[tuple[str, str | None]]:
    contents = [m["content"] for m in messages] + [None]
    return list(zip(contents[::2], contents[1::2], strict=True))


def _prompt_length(pipeline: ArtemisModel, turns: list[tuple[str, str | None]]) -> int:
    return len(pipeline.processor.referring_conversation_text(turns, 1).input_ids)


def test_the_second_turn_prefills_only_its_new_tokens(tiny: ArtemisModel, small_split: Path) -> None:
    video, targets = _targets(small_split)
    region, track = targets[0]
    texts, prefills, reused, messages = _conversation(tiny, video, region, track, reuse=True, steps=2)
    first_prompt = _prompt_length(tiny, [(QUESTION, None)])
    whole = _prompt_length(tiny, [(QUESTION, texts[0]), (FOLLOW_UPS[0], None)])
    assert prefills[0] == first_prompt and reused[0] == 0  # the first call encodes everything
    # The second call reuses at least the whole first prompt (video and region tokens included) and
    # prefills only what follows: at most the first answer's ids, its end and the new user turn.
    turn_and_answer = whole - first_prompt
    assert reused[1] >= first_prompt
    assert prefills[1] == whole - reused[1] <= turn_and_answer
    new_turn = _prompt_length(tiny, [(QUESTION, texts[0])])
    # the new turn, plus what the cache lacks of the answer: its last generated id (never fed back) and, when
    # generation stopped at max_new_tokens, the end-of-turn id the template adds
    assert prefills[1] <= whole - new_turn + 2
    assert tiny.counter.vision_calls == 0  # the second call never ran the vision tower
    # Without the cache the same call prefills the whole conversation.
    tiny.chat_cache.clear()
    tiny.counter.reset()
    again = tiny.chat(video, [region], messages[:-1], tracks=[track], max_new_tokens=6)
    assert tiny.counter.prefill == whole and tiny.chat_cache.reused_tokens == 0
    assert again.text == texts[1]
    print(f"\nprefill of turn 2: {prefills[1]} tokens with the cache, {whole} without")


def test_greedy_answers_with_reuse_equal_answers_from_scratch(tiny: ArtemisModel, small_split: Path) -> None:
    video, targets = _targets(small_split)
    region, track = targets[1]
    cached, prefills, reused, _ = _conversation(tiny, video, region, track, reuse=True)
    fresh, full, none, _ = _conversation(tiny, video, region, track, reuse=False)
    assert cached == fresh
    assert none == [0, 0, 0] and all(r > 0 for r in reused[1:])
    assert all(p < f for p, f in zip(prefills[1:], full[1:], strict=True))


def test_another_region_or_an_edited_answer_is_not_taken_from_the_cache(tiny: ArtemisModel, small_split: Path) -> None:
    video, targets = _targets(small_split)
    (region, track), (other, other_track) = targets
    tiny.chat_cache.clear()
    _, _, _, messages = _conversation(tiny, video, region, track, reuse=True, steps=1)
    follow = [*messages, {"role": "user", "content": FOLLOW_UPS[0]}]
    # the same turns about another object: other region tokens, so nothing is reused
    tiny.chat(video, [other], follow, tracks=[other_track], max_new_tokens=6)
    assert tiny.chat_cache.reused_tokens == 0 and len(tiny.chat_cache) == 1
    # back to the first object: one conversation is kept, and it is now the other object's
    tiny.chat(video, [region], follow, tracks=[track], max_new_tokens=6)
    assert tiny.chat_cache.reused_tokens == 0

    # An edited earlier answer: the cache is cropped to the shared prompt and the answer is the fresh one.
    edited = [messages[0], {"role": "assistant", "content": "It is red ."}, follow[-1]]
    tiny.chat_cache.clear()
    tiny.chat(video, [region], messages[:1], tracks=[track], max_new_tokens=6)
    cropped = tiny.chat(video, [region], edited, tracks=[track], max_new_tokens=6)
    assert tiny.chat_cache.reused_tokens == _prompt_length(tiny, [(QUESTION, None)])
    # the same conversation asked again reuses all of it but the last id, which must be prefilled
    again = tiny.chat(video, [region], edited, tracks=[track], max_new_tokens=6)
    assert tiny.chat_cache.reused_tokens == _prompt_length(tiny, edited_turns := _turns(edited)) - 1
    tiny.chat_cache.clear()
    fresh = tiny.chat(video, [region], edited, tracks=[track], max_new_tokens=6)
    assert fresh.text == cropped.text == again.text
    assert tiny.chat_cache.reused_tokens == 0 and len(edited_turns) == 2


def test_a_cache_that_cannot_be_cropped_falls_back_to_full_encoding(
    tiny: ArtemisModel, small_split: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video, targets = _targets(small_split)
    region, track = targets[0]
    tiny.chat_cache.clear()
    first = tiny.chat(video, [region], [{"role": "user", "content": QUESTION}], tracks=[track], max_new_tokens=6)
    monkeypatch.setattr(DynamicCache, "is_croppable", property(lambda self: False))
    edited = [first.messages[0], {"role": "assistant", "content": "It is red ."}, {"role": "user", "content": "Why?"}]
    tiny.counter.reset()
    reply = tiny.chat(video, [region], edited, tracks=[track], max_new_tokens=6)
    assert tiny.chat_cache.reused_tokens == 0
    assert tiny.counter.prefill == _prompt_length(tiny, [(QUESTION, "It is red ."), ("Why?", None)])
    monkeypatch.undo()
    tiny.chat_cache.clear()
    assert tiny.chat(video, [region], edited, tracks=[track], max_new_tokens=6).text == reply.text


def test_the_bundled_model_answers_the_same_with_and_without_the_cache(tmp_path: Path) -> None:
    split = generate_split(tmp_path, 1, seed=11, split="test").split_dir  # the size synthref-tiny was trained on
    video, targets = _targets(split)
    region, track = targets[0]
    pipeline = ArtemisModel.from_pretrained("synthref-tiny")
    pipeline.counter = Prefills(pipeline.model)
    cached, prefills, reused, _ = _conversation(pipeline, video, region, track, reuse=True)
    fresh, full, _, _ = _conversation(pipeline, video, region, track, reuse=False)
    assert cached == fresh
    assert all(r > 0 for r in reused[1:]) and all(p < f for p, f in zip(prefills[1:], full[1:], strict=True))
    print(f"\nsynthref-tiny prefills with the cache {prefills}, without {full}; answers {cached}")
