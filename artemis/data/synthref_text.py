"""The words of SynthRef: object descriptions, scene captions, question-answer pairs, referring expressions.

Every sentence is built from an object's attribute labels with the templates in
:mod:`artemis.templates`, so each answer is exactly correct for its scene. A question is only asked when
its wording names exactly one object (e.g. "the square that moves up" when there is one such square).
A referring expression (:func:`referring_expression`) is the shortest phrase that names its object alone.
"""

from __future__ import annotations

import itertools

import numpy as np

from artemis import prompts as T
from artemis.data.synthref import Scene, SceneObject

# (from_to, toward, verb phrase) per motion.
MOTION_PHRASES: dict[str, tuple[str, str, str]] = {
    "left": ("from right to left", "to the left", "moves to the left"),
    "right": ("from left to right", "to the right", "moves to the right"),
    "up": ("from bottom to top", "upwards", "moves up"),
    "down": ("from top to bottom", "downwards", "moves down"),
    "up-left": ("from the bottom right to the top left", "up and to the left", "moves up and to the left"),
    "up-right": ("from the bottom left to the top right", "up and to the right", "moves up and to the right"),
    "down-left": ("from the top right to the bottom left", "down and to the left", "moves down and to the left"),
    "down-right": ("from the top left to the bottom right", "down and to the right", "moves down and to the right"),
    "still": ("", "", "stays still"),
}
# How a referring expression says an object's motion, after the shape ("the circle moving left").
MOTION_QUALIFIERS: dict[str, str] = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "up-left": "moving up and to the left",
    "up-right": "moving up and to the right",
    "down-left": "moving down and to the left",
    "down-right": "moving down and to the right",
    "still": "standing still",
}
QUALIFIERS = ("colour", "size", "motion")
"""The attributes a referring expression may add to the shape it always names."""
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")


def number_word(count: int) -> str:
    """``3`` -> ``"three"`` (digits beyond the table)."""
    return _NUMBERS[count] if 0 <= count < len(_NUMBERS) else str(count)


def _fields(obj: SceneObject) -> dict[str, str]:
    from_to, toward, verb = MOTION_PHRASES[obj.motion]
    return {
        "colour": obj.colour,
        "shape": obj.shape,
        "size": obj.size,
        "from_to": from_to,
        "toward": toward,
        "motion": verb,
    }


def describe_object(obj: SceneObject, rng: np.random.Generator) -> str:
    """One sentence stating the object's colour, shape and motion (and sometimes its size)."""
    choices = T.SYNTHREF_STILL_CAPTIONS if obj.motion == "still" else T.SYNTHREF_MOVING_CAPTIONS
    return choices[int(rng.integers(len(choices)))].format(**_fields(obj))


def motion_answer(obj: SceneObject) -> str:
    """Answer to "In which direction does ... move?"."""
    if obj.motion == "still":
        return "It does not move."
    return f"It {MOTION_PHRASES[obj.motion][2]}."


def attribute_questions(obj: SceneObject, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """``[(kind, question, answer)]`` about the boxed object's colour, shape and motion, one each."""
    answers = {
        "colour": T.SYNTHREF_COLOUR_ANSWER.format(colour=obj.colour),
        "shape": T.SYNTHREF_SHAPE_ANSWER.format(shape=obj.shape),
        "motion": motion_answer(obj),
    }
    rows = []
    for kind, answer in answers.items():
        paraphrases = T.SYNTHREF_REGION_QUESTIONS[kind]
        rows.append((kind, paraphrases[int(rng.integers(len(paraphrases)))], answer))
    return rows


def scene_caption(scene: Scene) -> str:
    """Stage-1 caption listing every object with all four attributes, in draw order."""
    phrases = [f"a {o.size} {o.colour} {o.shape} that {MOTION_PHRASES[o.motion][2]}" for o in scene.objects]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return T.SYNTHREF_SCENE_CAPTION.format(count=number_word(len(scene.objects)), objects=listed)


def _colour_count_answer(colour: str, count: int) -> str:
    if count == 0:
        return f"There are no {colour} objects."
    if count == 1:
        return f"There is one {colour} object."
    return f"There are {number_word(count)} {colour} objects."


def scene_questions(scene: Scene, rng: np.random.Generator, max_questions: int = 4) -> list[tuple[str, str, str]]:
    """Question-answer pairs about the scene, each exactly answerable.

    Returns:
        ``[(kind, question, answer), ...]``: the object count first, then up to ``max_questions - 1``
        others drawn from the unambiguous candidates. ``kind`` is ``count``, ``colour``, ``shape``,
        ``motion``, ``size`` or ``colour_count``.
    """
    objects = scene.objects
    count = number_word(len(objects))
    pairs = [("count", T.SYNTHREF_COUNT_QUESTION, T.SYNTHREF_COUNT_ANSWER.format(count=count))]
    candidates: list[tuple[str, str, str]] = []
    for obj in objects:
        f = _fields(obj)
        if sum(o.shape == obj.shape and o.motion == obj.motion for o in objects) == 1:
            candidates.append(("colour", T.SYNTHREF_COLOUR_QUESTION.format(**f), T.SYNTHREF_COLOUR_ANSWER.format(**f)))
        if sum(o.colour == obj.colour and o.motion == obj.motion for o in objects) == 1:
            candidates.append(("shape", T.SYNTHREF_SHAPE_QUESTION.format(**f), T.SYNTHREF_SHAPE_ANSWER.format(**f)))
        # (colour, shape) pairs are unique within a scene by construction.
        candidates.append(("motion", T.SYNTHREF_MOTION_QUESTION.format(**f), motion_answer(obj)))
        candidates.append(("size", T.SYNTHREF_SIZE_QUESTION.format(**f), T.SYNTHREF_SIZE_ANSWER.format(**f)))
    colour = sorted({o.colour for o in objects})[int(rng.integers(len({o.colour for o in objects})))]
    candidates.append(
        (
            "colour_count",
            T.SYNTHREF_COLOUR_COUNT_QUESTION.format(colour=colour),
            _colour_count_answer(colour, sum(o.colour == colour for o in objects)),
        )
    )
    picked = rng.choice(len(candidates), size=min(max_questions - 1, len(candidates)), replace=False)
    pairs.extend(candidates[int(i)] for i in sorted(picked))
    return pairs


def expression_text(obj: SceneObject, qualifiers: tuple[str, ...]) -> str:
    """``"the small red circle moving left"``: the shape with the given qualifiers (size, colour before it,
    motion after it)."""
    words = ["the"]
    if "size" in qualifiers:
        words.append(obj.size)
    if "colour" in qualifiers:
        words.append(obj.colour)
    words.append(obj.shape)
    if "motion" in qualifiers:
        words.append(MOTION_QUALIFIERS[obj.motion])
    return " ".join(words)


def referring_expression(
    objects: list[SceneObject], index: int, order: tuple[str, ...] = QUALIFIERS
) -> tuple[str, tuple[str, ...]]:
    """The shortest phrase that names ``objects[index]`` and no other object of its scene.

    The phrase always names the shape (its head noun). Qualifier sets are tried fewest first: none ("the
    circle"), then one, then two, then all three; among sets of the same size, in the order ``order``
    gives (e.g. ``("motion", "colour", "size")`` tries "the circle moving left" before "the red circle").
    The first set whose phrase fits the object alone wins; it is true of the object because it is built
    from the object's own labels.

    Returns:
        ``(phrase, qualifiers used)``.

    Raises:
        ValueError: ``order`` is not a permutation of :data:`QUALIFIERS`, or no phrase is unique (two
            objects with the same four labels, which the generator never makes).
    """
    if sorted(order) != sorted(QUALIFIERS):
        raise ValueError(f"order={order!r}; expected a permutation of {QUALIFIERS}")
    target = objects[index]
    others = [o for k, o in enumerate(objects) if k != index]
    for count in range(len(order) + 1):
        for chosen in itertools.combinations(order, count):
            labels = ("shape", *chosen)
            if not any(all(getattr(o, a) == getattr(target, a) for a in labels) for o in others):
                return expression_text(target, chosen), chosen
    raise ValueError(f"object {index} ({target.colour} {target.shape}) has a twin in its scene; no phrase is unique")


# --- questions about two objects ----------------------------------------------------------------------
# Templates of the pair questions (``videoref45k_pairs.json``). Each names the two regions with <region> in
# order; the prompt calls them region1 and region2, which is how the "which one" answers name them.
PAIR_QUESTIONS: dict[str, tuple[str, ...]] = {
    "same_colour": (
        "Do <region> and <region> have the same colour?",
        "Are <region> and <region> the same colour?",
    ),
    "same_shape": (
        "Do <region> and <region> have the same shape?",
        "Are <region> and <region> the same shape?",
    ),
    "left": (
        "Which is further left at the end of the video, <region> or <region>?",
        "At the end, which one is more to the left: <region> or <region>?",
    ),
    "up": (
        "Which is higher up at the end of the video, <region> or <region>?",
        "At the end, which one is nearer the top: <region> or <region>?",
    ),
    "faster": (
        "Which moves faster, <region> or <region>?",
        "Of <region> and <region>, which one is quicker?",
    ),
    "same_direction": (
        "Do <region> and <region> move in the same direction?",
        "Are <region> and <region> moving the same way?",
    ),
}
PAIR_KINDS = tuple(PAIR_QUESTIONS)
WHICH_KINDS = ("left", "up", "faster")
"""Pair questions answered by naming one region: exchanging the two regions exchanges the answer."""
_WHICH_ANSWERS = {"left": "{name} is further left.", "up": "{name} is higher up.", "faster": "{name} moves faster."}
# A "which" question is asked only when the difference is clear: positions at least the smaller object's
# half-extent apart, speeds differing by at least a quarter of the faster one.
_SPEED_MARGIN = 0.25


def _yes_no(value: bool) -> str:
    return "Yes." if value else "No."


def _which(kind: str, first: bool) -> str:
    return _WHICH_ANSWERS[kind].format(name="region1" if first else "region2")


def pair_questions(
    a: SceneObject, b: SceneObject, last_visible: tuple[bool, bool], num_frames: int, rng: np.random.Generator
) -> list[tuple[str, str, str]]:
    """``[(kind, question, answer)]`` about objects ``a`` (region1) and ``b`` (region2), exact from their labels.

    Positions are the generator's centres on the last frame (asked only when both are visible there);
    speeds its pixels per frame; directions its motion labels (asked only when both move).
    """
    rows: list[tuple[str, str]] = [
        ("same_colour", _yes_no(a.colour == b.colour)),
        ("same_shape", _yes_no(a.shape == b.shape)),
    ]
    if all(last_visible):
        (ax, ay), (bx, by) = a.centre(num_frames - 1), b.centre(num_frames - 1)
        margin = min(a.radius, b.radius)
        if abs(ax - bx) >= margin:
            rows.append(("left", _which("left", ax < bx)))
        if abs(ay - by) >= margin:
            rows.append(("up", _which("up", ay < by)))
    faster = max(a.speed, b.speed)
    if faster > 0 and abs(a.speed - b.speed) >= _SPEED_MARGIN * faster:
        rows.append(("faster", _which("faster", a.speed > b.speed)))
    if a.motion != "still" and b.motion != "still":
        rows.append(("same_direction", _yes_no(a.motion == b.motion)))
    out = []
    for kind, answer in rows:
        paraphrases = PAIR_QUESTIONS[kind]
        out.append((kind, paraphrases[int(rng.integers(len(paraphrases)))], answer))
    return out


def swapped_pair_answer(kind: str, answer: str) -> str:
    """The answer once the two regions are exchanged: a "which" answer names the other region."""
    if kind not in WHICH_KINDS:
        return answer
    return answer.replace("region1", "\0").replace("region2", "region1").replace("\0", "region2")
