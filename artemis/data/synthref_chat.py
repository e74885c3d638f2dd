"""SynthRef conversations: a description of one object, then a follow-up question about one of its attributes.

Each object of a scene gets one two-turn record in ``videoref45k_chat.json``: the first turn is the object's
record of ``videoref45k.json`` (the same describe question, naming it with ``<region>``, and the same
description); the second asks for its colour, shape or direction of motion and names the object in words,
"it" or "the region" (a one-region prompt calls its target "the region" in its tracking note, never region1),
answered exactly from the generator's labels (:func:`artemis.data.synthref_text.attribute_questions`).

Every choice comes from the scene's sixth seed stream, which nothing else reads, so writing these records
leaves every other file of a split byte-identical.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from artemis.data.records import RefSample
from artemis.data.synthref import Scene, seed_sequence
from artemis.data.synthref_text import attribute_questions
from artemis.prompts import REGION_TOKEN

__all__ = ["CHAT_FILE", "FOLLOW_UP_NAMES", "chat_records", "follow_up_question"]

CHAT_FILE = "videoref45k_chat.json"
"""A split's multi-turn referring records (VideoRef45K with ``conversations``; ``docs/regions.md``)."""
FOLLOW_UP_NAMES = ("it", "the region")
"""How a follow-up question names the one region of its record."""
_NAMED = f"the {REGION_TOKEN}"


def follow_up_question(question: str, name: str) -> str:
    """A one-region question about ``the <region>`` asked later in a conversation: the region named in words.

    >>> follow_up_question("What colour is the <region>?", "it")
    'What colour is it?'
    """
    if question.count(_NAMED) != 1 or question.count(REGION_TOKEN) != 1:
        raise ValueError(f"question {question!r} should name its target once as {_NAMED!r}")
    return question.replace(_NAMED, name)


def chat_records(scene: Scene, refs: list[RefSample], seed: int, split: str, index: int) -> list[RefSample]:
    """The conversations of one scene: per object, its description, then one attribute question.

    Args:
        scene: the scene, for the objects' labels.
        refs: the scene's ``videoref45k.json`` records, one per object in order (the first turn and the track).
        seed / split / index: the scene's seed stream (its sixth child is drawn from here).

    Returns:
        One record per object: ``question`` / ``caption`` are the first turn (what a one-turn reader trains
        on) and ``conversations`` the whole exchange, LLaVA-style ``[{"from": "human" | "gpt", "value": ...}]``.
    """
    if len(refs) != len(scene.objects):
        raise ValueError(f"got {len(refs)} records for the {len(scene.objects)} objects of {scene.name}")
    rng = np.random.default_rng(seed_sequence(seed, split, index).spawn(6)[5])
    records = []
    for k, (obj, ref) in enumerate(zip(scene.objects, refs, strict=True)):
        questions = attribute_questions(obj, rng)  # [(kind, question, answer)]: colour, shape, motion
        kind, question, answer = questions[int(rng.integers(len(questions)))]
        follow_up = follow_up_question(question, FOLLOW_UP_NAMES[int(rng.integers(len(FOLLOW_UP_NAMES)))])
        conversation = [
            {"from": "human", "value": ref.question},
            {"from": "gpt", "value": ref.caption},
            {"from": "human", "value": follow_up},
            {"from": "gpt", "value": answer},
        ]
        records.append(replace(ref, sample_id=f"{scene.name}_obj{k}_chat_{kind}", conversations=conversation))
    return records
