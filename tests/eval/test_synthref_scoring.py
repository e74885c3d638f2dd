"""SynthRef scoring: the parser on every sentence the generator can emit, paraphrases, negatives, controls."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from artemis import prompts as templates
from artemis.data import synthref_text
from artemis.data.synthref import MOTIONS, PALETTE, SHAPES, SIZES, SceneObject
from artemis.eval.synthref import (
    ParsedDescription,
    SynthRefTarget,
    Vocabulary,
    choose_blind_box,
    choose_swap,
    parse_description,
    sample_rng,
    synthref_metrics,
)


def _object(colour: str, shape: str, size: str, motion: str) -> SceneObject:
    return SceneObject(colour, shape, size, motion, radius=5, start=(0.0, 0.0), velocity=(0.0, 0.0))


def _generator_sentences(obj: SceneObject) -> list[str]:
    """Every sentence the generator can say about ``obj``, built with its own text functions."""
    templates_ = templates.SYNTHREF_STILL_CAPTIONS if obj.motion == "still" else templates.SYNTHREF_MOVING_CAPTIONS
    sentences = []
    # describe_object picks a template with rng.integers(len(templates)); a stub rng walks all of them.
    for choice in range(len(templates_)):
        stub = type("Rng", (), {"integers": staticmethod(lambda n, c=choice: c)})()
        sentences.append(synthref_text.describe_object(obj, stub))
    assert len(set(sentences)) == len(templates_)
    # The motion answer ("It moves up.") with the object named, and its stage-1 scene phrase.
    sentences.append(synthref_text.motion_answer(obj).replace("It", f"The {obj.colour} {obj.shape}", 1))
    sentences.append(f"a {obj.size} {obj.colour} {obj.shape} that {synthref_text.MOTION_PHRASES[obj.motion][2]}")
    return sentences


ALL_OBJECTS = [_object(*combo) for combo in itertools.product(PALETTE, SHAPES, SIZES, MOTIONS)]


def test_parser_reads_every_generated_sentence() -> None:
    wrong = []
    for obj in ALL_OBJECTS:
        for sentence in _generator_sentences(obj):
            parsed = parse_description(sentence)
            if (parsed.colour, parsed.shape, parsed.motion) != (obj.colour, obj.shape, obj.motion):
                wrong.append((sentence, parsed))
    assert not wrong, wrong[:5]


def test_vocabulary_from_manifest_matches_the_generator() -> None:
    manifest = {"attributes": {"colour": list(PALETTE), "shape": list(SHAPES), "size": list(SIZES),
                               "motion": list(MOTIONS)}}  # fmt: skip
    assert Vocabulary.from_manifest(manifest) == Vocabulary.default()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the red circle moves rightwards", ("red", "circle", "right")),
        ("The red circle is moving to the right.", ("red", "circle", "right")),
        ("a red circle moves from left to right", ("red", "circle", "right")),
        ("the blue square heads leftward", ("blue", "square", "left")),
        ("A green triangle doesn't move.", ("green", "triangle", "still")),
        ("the green triangle is stationary", ("green", "triangle", "still")),
        ("The yellow diamond stays in the same place throughout the video", ("yellow", "diamond", "still")),
        ("the white cross moves diagonally up and to the left", ("white", "cross", "up-left")),
        ("the white cross moves up-left", ("white", "cross", "up-left")),
        ("the cyan circle drifts towards the lower right corner", ("cyan", "circle", "down-right")),
        ("the orange square goes from the bottom left of the frame to the top right", ("orange", "square", "up-right")),
        ("the purple diamond on the left side moves down", ("purple", "diamond", "down")),
        ("The orange circle in the top left corner remains stationary", ("orange", "circle", "still")),
        ("the gray rhombus rises", (None, "diamond", "up")),  # grey is not a SynthRef colour
        ("the red circle is still moving left", ("red", "circle", "left")),
        ("the violet disc falls", ("purple", "circle", "down")),
    ],
)
def test_paraphrases(text: str, expected: tuple) -> None:
    parsed = parse_description(text)
    assert (parsed.colour, parsed.shape, parsed.motion) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (None, None, None)),
        ("I cannot tell.", (None, None, None)),
        ("a red circle and a blue square", (None, None, None)),  # two objects: ambiguous
        ("the red circle moves left and then right", ("red", "circle", None)),  # opposite directions
        ("the red circle stays still and moves up", ("red", "circle", None)),  # stillness and a direction
        ("the circle moves", (None, "circle", None)),  # no direction
        ("the red red red circle circle", ("red", "circle", None)),  # repetition is not ambiguity
        ("the circle ends up on the right", (None, "circle", None)),  # a place, not a motion
    ],
)
def test_negatives(text: str, expected: tuple) -> None:
    parsed = parse_description(text)
    assert (parsed.colour, parsed.shape, parsed.motion) == expected


def test_motion_only_from_vocabulary() -> None:
    four = Vocabulary(("red",), ("circle",), ("still", "left", "right", "up", "down"))
    assert parse_description("the red circle moves up and to the left", four).motion is None
    assert parse_description("the red circle moves up", four).motion == "up"


def _target(objects: list[tuple[dict, int, tuple]], index: int = 0, size: int = 64) -> SynthRefTarget:
    labels, key, boxes = objects[index]
    return SynthRefTarget(
        sample_id=f"test_00000_obj{index}", video=None, video_name="test_00000", object_index=index,  # type: ignore[arg-type]
        labels=labels, key_frame_id=key, boxes=boxes, objects=tuple(objects), width=size, height=size,
    )  # fmt: skip


LABELS = [{"colour": c, "shape": "circle", "size": "small", "motion": "still"} for c in ("red", "blue", "green")]


def test_swap_picks_another_object_deterministically() -> None:
    boxes_a = ((0.0, 0.0, 10.0, 10.0), (1.0, 1.0, 11.0, 11.0))
    boxes_b = (None, (30.0, 30.0, 40.0, 40.0))
    boxes_c = ((40.0, 0.0, 50.0, 10.0), (40.0, 0.0, 50.0, 10.0))
    objects = [(LABELS[0], 0, boxes_a), (LABELS[1], 1, boxes_b), (LABELS[2], 0, boxes_c)]
    target = _target(objects)
    picks = {choose_swap(target, sample_rng(seed, target.sample_id)) for seed in range(20)}
    # b has no box on the target's key frame 0, so c (visible there) is always chosen, on frame 0.
    assert picks == {(2, 0)}
    assert choose_swap(target, sample_rng(3, target.sample_id)) == choose_swap(target, sample_rng(3, target.sample_id))
    only_b = _target([objects[0], objects[1]])
    assert choose_swap(only_b, sample_rng(0, only_b.sample_id)) == (1, 1)  # b's own key frame
    assert choose_swap(_target([objects[0]]), sample_rng(0, "x")) is None


def test_blind_box_is_valid_far_and_seeded() -> None:
    rng = np.random.default_rng(0)
    for trial in range(30):
        objects = []
        for k in range(3):
            x, y = rng.integers(0, 50, size=2)
            r = int(rng.integers(4, 10))
            box = (float(x), float(y), float(min(x + 2 * r, 64)), float(min(y + 2 * r, 64)))
            objects.append((LABELS[k], 0, (box, box)))
        target = _target(objects)
        first = choose_blind_box(target, sample_rng(trial, target.sample_id))
        assert first == choose_blind_box(target, sample_rng(trial, target.sample_id))
        x1, y1, x2, y2 = first
        key = target.boxes[0]
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
        assert (x2 - x1, y2 - y1) == (key[2] - key[0], key[3] - key[1])
        for _, _, boxes in objects:
            b = boxes[0]
            inter = max(0, min(x2, b[2]) - max(x1, b[0])) * max(0, min(y2, b[3]) - max(y1, b[1]))
            union = (x2 - x1) * (y2 - y1) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            assert inter / union <= 0.1


def test_metrics_from_records() -> None:
    labels = {"colour": "red", "shape": "circle", "size": "small", "motion": "left"}
    other = {"colour": "blue", "shape": "square", "size": "large", "motion": "still"}
    records = [
        {"labels": labels, "description": "The red circle moves to the left.",
         "swap": {"labels": other, "description": "A blue square does not move."},
         "blind": {"description": "The red circle moves to the left."}},
        {"labels": labels, "description": "The red square moves up.", "swap": None,
         "blind": {"description": "nothing"}},
    ]  # fmt: skip
    metrics = synthref_metrics(records)
    assert metrics["joint_accuracy"] == 0.5 and metrics["color_accuracy"] == 1.0
    assert metrics["shape_accuracy"] == 0.5 and metrics["motion_accuracy"] == 0.5
    assert metrics["swap_joint_accuracy"] == 1.0 and metrics["num_swap"] == 1
    assert metrics["blind_joint_accuracy"] == 0.5 and metrics["num_blind"] == 2
    assert ParsedDescription("red", "circle", "left").matches(labels)["joint"]
