"""Read (colour, shape, motion) back out of a description of a SynthRef object.

The parser is a small rule set over the manifest's ``attributes`` vocabulary (:class:`Vocabulary`), not
a list of the generator's sentences, so it also reads a model that paraphrases ("moves rightwards", "goes
from the bottom left to the top right", "is stationary"). A description from which an attribute cannot
be read unambiguously gives ``None`` for it. :mod:`artemis.eval.synthref` scores the parsed attributes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from artemis.errors import AnnotationError

__all__ = ["ParsedDescription", "Vocabulary", "parse_description"]

# --- vocabulary ---------------------------------------------------------------------------------------

# Unit vectors of the four direction words that SynthRef motion names are made of (y grows downwards).
_AXES: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
STILL = "still"

# Words outside the manifest vocabulary that mean one of its values; used only when that value exists.
_COLOUR_ALIASES = {"gray": "grey", "violet": "purple", "turquoise": "cyan"}
_SHAPE_ALIASES = {"rhombus": "diamond", "lozenge": "diamond", "disc": "circle", "disk": "circle"}


@dataclass(frozen=True)
class Vocabulary:
    """The attribute values a description is read against (the manifest's ``attributes``).

    Attributes:
        colours: colour names, e.g. ``("red", "green", ...)``.
        shapes: shape names, e.g. ``("circle", "square", ...)``.
        motions: motion names: ``"still"`` and directions made of ``left/right/up/down`` joined by ``-``.
    """

    colours: tuple[str, ...]
    shapes: tuple[str, ...]
    motions: tuple[str, ...]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Vocabulary:
        """Read ``manifest["attributes"]`` (``colour``, ``shape``, ``motion`` lists)."""
        try:
            attributes = manifest["attributes"]
            return cls(tuple(attributes["colour"]), tuple(attributes["shape"]), tuple(attributes["motion"]))
        except (KeyError, TypeError) as error:
            raise AnnotationError(
                f"SynthRef manifest has no attributes.colour/shape/motion lists ({error!r}); "
                f"regenerate it with 'artemis data synthref'"
            ) from None

    @classmethod
    def default(cls) -> Vocabulary:
        """The generator's own vocabulary (:mod:`artemis.data.synthref`)."""
        from artemis.data.synthref import MOTIONS, PALETTE, SHAPES

        return cls(tuple(PALETTE), tuple(SHAPES), tuple(MOTIONS))

    def motion_for(self, vector: tuple[int, int]) -> str | None:
        """The motion name whose direction has the signs of ``vector`` (``(0, 0)`` is ``still``)."""
        for name in self.motions:
            if name == STILL:
                if vector == (0, 0):
                    return name
                continue
            parts = name.split("-")
            if all(p in _AXES for p in parts):
                x = sum(_AXES[p][0] for p in parts)
                y = sum(_AXES[p][1] for p in parts)
                if (x, y) == vector:
                    return name
        return None


@dataclass(frozen=True)
class ParsedDescription:
    """What a description says about its target; ``None`` where it says nothing unambiguous."""

    colour: str | None
    shape: str | None
    motion: str | None

    def matches(self, labels: Mapping[str, str]) -> dict[str, bool]:
        """``{"colour", "shape", "motion", "joint"}`` correctness against ``labels``."""
        right = {key: getattr(self, key) is not None and getattr(self, key) == labels[key] for key in _SCORED}
        right["joint"] = all(right.values())
        return right


_SCORED = ("colour", "shape", "motion")

# --- the parser ---------------------------------------------------------------------------------------

# Stillness: "stays still", "does not move", "remains in place", "is stationary", ... . "still" followed
# by a motion verb is the adverb ("is still moving left"), not stillness.
_STILL_RE = re.compile(
    r"\b(?:(?:stay|stays|staying|stayed|remain|remains|remaining|remained|stand|stands|standing|stood|sit|sits|"
    r"sitting|keep|keeps|keeping|is|are|was|hold|holds|holding) (?:completely |perfectly |totally |entirely )?"
    r"(?:still(?! (?:moving|going|travel\w*|heading|drifting|sliding))|stationary|motionless|static|immobile|put|"
    r"in place|in (?:the |one )?same (?:place|position|spot)|in one (?:place|spot))"
    r"|(?:does|do|did|is|are|was|were) not (?:move|moving|change position|changing position)"
    r"|not moving|never moves|no (?:motion|movement)|without moving|motionless|stationary|immobile)\b"
)
_MOTION_VERB_RE = re.compile(
    r"\b(?:move|moves|moved|moving|go|goes|going|went|travel\w*|drift\w*|slide|slides|sliding|slid|head|heads|"
    r"heading|headed|shift\w*|glide\w*|gliding|float\w*|run|runs|running|ran|fly|flies|flying|flew|rise|rises|"
    r"rising|rose|fall|falls|falling|fell|descend\w*|ascend\w*|sink\w*|drop\w*|climb\w*|crosses|crossing|crossed|"
    r"pass\w*|proceed\w*|advanc\w*|make|makes|making)\b"
)
_WORD_RE = re.compile(r"[a-z]+")

# Direction words (a motion) and place words (a position: "from the top left", "on the right side").
_DIRECTION_WORDS: dict[str, tuple[int, int]] = {
    **{w: (-1, 0) for w in ("left", "leftward", "leftwards", "west", "westward", "westwards")},
    **{w: (1, 0) for w in ("right", "rightward", "rightwards", "east", "eastward", "eastwards")},
    **{w: (0, -1) for w in ("up", "upward", "upwards", "top", "upper", "north", "northward", "northwards")},
    **{w: (0, 1) for w in ("down", "downward", "downwards", "bottom", "lower", "south", "southward", "southwards")},
    **{w: (0, -1) for w in ("rise", "rises", "rising", "rose", "ascend", "ascends", "ascending", "climbs")},
    **{w: (0, 1) for w in ("fall", "falls", "falling", "fell", "descend", "descends", "descending", "sinks")},
}
_PLACE_WORDS = {"left", "right", "top", "bottom", "upper", "lower", "up", "down", "middle", "center", "centre"}
# Words that may sit inside a place phrase without changing it.
_PLACE_FILLERS = {
    "the", "a", "far", "very", "hand", "side", "corner", "edge", "part", "half", "end", "border", "area",
    "region", "portion", "of", "frame", "video", "screen", "image", "scene", "picture", "and",
}  # fmt: skip
_LOCATION_PREPOSITIONS = {"on", "in", "at", "near", "along", "by", "inside", "within"}
_FROM_TO_LINKS = {"to", "toward", "towards", "into", "onto"}
# "up" as a particle, not a direction: "ends up", "speeds up", "shows up".
_UP_PARTICLE_VERBS = {
    "end", "ends", "ended", "ending", "speed", "speeds", "speeding", "sped", "show", "shows", "showing",
    "pick", "picks", "line", "lines", "turn", "turns", "turned", "light", "lights",
}  # fmt: skip


def _normalise(text: str) -> list[str]:
    # "doesn't" -> "does not", "up-left" -> "up left": one word list for every rule below.
    return _WORD_RE.findall(text.lower().replace("n't", " not").replace("n’t", " not"))


def _single(found: Iterable[str]) -> str | None:
    """The one value mentioned, or ``None`` for none or several different ones (ambiguous)."""
    values = set(found)
    return values.pop() if len(values) == 1 else None


def _place_vector(words: Sequence[str]) -> tuple[int, int] | None:
    x = sum(_DIRECTION_WORDS[w][0] for w in words if w in _DIRECTION_WORDS)
    y = sum(_DIRECTION_WORDS[w][1] for w in words if w in _DIRECTION_WORDS)
    known = [w for w in words if w in _PLACE_WORDS]
    return (x, y) if known else None


def _read_place(words: list[str], start: int) -> tuple[list[str], int]:
    """Place words from ``start`` over fillers; returns them and the index after the phrase."""
    place: list[str] = []
    index = start
    while index < len(words) and (words[index] in _PLACE_WORDS or words[index] in _PLACE_FILLERS):
        if words[index] == "and" and not place:
            break
        if words[index] in _PLACE_WORDS:
            place.append(words[index])
        index += 1
    # A trailing "and" belongs to the next clause ("from left to right and back").
    while index > start and words[index - 1] in {"and", "of", "the", "a"}:
        index -= 1
    return place, index


def _direction(words: list[str]) -> tuple[set[int], set[int]] | None:
    """The signs of horizontal and vertical motion the words state, or ``None`` when they state none."""
    xs: set[int] = set()
    ys: set[int] = set()
    used = [False] * len(words)

    def add(vector: tuple[int, int]) -> None:
        if vector[0]:
            xs.add(int(math.copysign(1, vector[0])))
        if vector[1]:
            ys.add(int(math.copysign(1, vector[1])))

    # "from A to B": the motion is B - A ("from the bottom right to the top left" is up-left).
    for index, word in enumerate(words):
        if word != "from" or used[index]:
            continue
        source, after = _read_place(words, index + 1)
        if not source or after >= len(words) or words[after] not in _FROM_TO_LINKS:
            continue
        target, end = _read_place(words, after + 1)
        a, b = _place_vector(source), _place_vector(target)
        if a is None or b is None:
            continue
        add((b[0] - a[0], b[1] - a[1]))
        for k in range(index, end):
            used[k] = True

    # "in the left direction" names a direction; "on the left side" a position, which says nothing about
    # the motion and is skipped.
    for index, word in enumerate(words):
        if used[index] or word not in _LOCATION_PREPOSITIONS:
            continue
        place, end = _read_place(words, index + 1)
        if place and not (end < len(words) and words[end] in {"direction", "directions"}):
            for k in range(index, end):
                used[k] = True

    for index, word in enumerate(words):
        if used[index] or word not in _DIRECTION_WORDS:
            continue
        if word == "up" and index > 0 and words[index - 1] in _UP_PARTICLE_VERBS:
            continue
        add(_DIRECTION_WORDS[word])
    return (xs, ys) if xs or ys else None


def _motion(words: list[str], vocabulary: Vocabulary) -> str | None:
    text = " ".join(words)
    still = _STILL_RE.search(text) is not None
    # Read directions from the first motion verb on, so adjectives before it ("the left circle") and the
    # subject are not taken for a motion; without a verb the whole text is read.
    verb = _MOTION_VERB_RE.search(text)
    segment = text[verb.start() :].split() if verb else words
    direction = _direction(segment)
    if still:
        # "stays still" with a direction too is self-contradictory: unparseable, not half right.
        return vocabulary.motion_for((0, 0)) if direction is None else None
    if direction is None:
        return None
    xs, ys = direction
    if len(xs) > 1 or len(ys) > 1:  # "moves left and right", "up then down": no single direction
        return None
    return vocabulary.motion_for((xs.pop() if xs else 0, ys.pop() if ys else 0))


def parse_description(text: str, vocabulary: Vocabulary | None = None) -> ParsedDescription:
    """Read the colour, shape and motion a description states about its target.

    Rules (see ``docs/evaluation.md``): colour and shape are the vocabulary words (and a few aliases such
    as "gray" or "rhombus") the text contains; several different ones make the attribute ambiguous
    (``None``). Motion is ``still`` for phrases such as "stays still", "does not move", "is stationary";
    otherwise the direction words after the first motion verb ("to the left", "rightwards",
    "up and to the right", "from the top left to the bottom right", "down-left"), with place phrases
    ("on the left side") ignored. Opposite directions on one axis, or stillness together with a
    direction, give ``None``.

    Args:
        text: the generated description.
        vocabulary: the attribute values; default the generator's own.

    Returns:
        The parsed attributes, each ``None`` when it cannot be read.
    """
    vocabulary = vocabulary or Vocabulary.default()
    words = _normalise(text)
    colours = {c for c in vocabulary.colours}
    shapes = {s for s in vocabulary.shapes}
    colour = _single(
        w if w in colours else _COLOUR_ALIASES[w] for w in words if w in colours or _COLOUR_ALIASES.get(w) in colours
    )
    shape = _single(
        w if w in shapes else _SHAPE_ALIASES[w] for w in words if w in shapes or _SHAPE_ALIASES.get(w) in shapes
    )
    return ParsedDescription(colour=colour, shape=shape, motion=_motion(words, vocabulary))
