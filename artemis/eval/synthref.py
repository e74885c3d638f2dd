"""SynthRef attribute scoring: parse a generated description into (colour, shape, motion) and score it.

SynthRef (:mod:`artemis.data.synthref`) knows every object's labels exactly, so a description can be
scored by reading those attributes back out of the text. The parser is a small rule set over the
manifest's ``attributes`` vocabulary, not a list of the generator's sentences, so it also reads a model
that paraphrases ("moves rightwards", "goes from the bottom left to the top right", "is stationary").
A description from which an attribute cannot be read unambiguously gives ``None`` for it, which counts
as wrong.

Two controls tell whether a model looks at the box at all:

* **box-swap** — the box (and track) of *another* object of the same video; the description must now
  match that object's labels.
* **box-blind** — a random box of the target's size that overlaps no object; scored against the
  original target's labels, it should be near chance for a model that uses its box.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artemis.errors import AnnotationError

__all__ = [
    "ParsedDescription",
    "SynthRefTarget",
    "Vocabulary",
    "choose_blind_box",
    "choose_swap",
    "load_targets",
    "parse_description",
    "sample_rng",
    "synthref_metrics",
]

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


# --- targets and controls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthRefTarget:
    """One object of one SynthRef video, with what the controls need about its neighbours.

    Attributes:
        sample_id: ``"<video>_obj<k>"``, as in the split's ``videoref45k.json``.
        video: path of the video file (or frame folder).
        video_name: the manifest's video name.
        object_index: ``k``.
        labels: ``{"colour", "shape", "size", "motion"}``.
        key_frame_id: the frame with the most unoccluded pixels.
        boxes: pixel ``xyxy`` per frame, ``None`` where the object is outside the frame.
        objects: every object of the video as ``(labels, key_frame_id, boxes)``, index ``k`` included.
        width: frame width.
        height: frame height.
    """

    sample_id: str
    video: Path
    video_name: str
    object_index: int
    labels: dict[str, str]
    key_frame_id: int
    boxes: tuple[tuple[float, float, float, float] | None, ...]
    objects: tuple[tuple[dict[str, str], int, tuple[tuple[float, float, float, float] | None, ...]], ...]
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return len(self.boxes)


def _boxes(entries: Sequence[Sequence[float]]) -> tuple[tuple[float, float, float, float] | None, ...]:
    return tuple(tuple(float(v) for v in b) if len(b) == 4 else None for b in entries)  # type: ignore[misc]


def load_targets(split_dir: str | Path) -> tuple[list[SynthRefTarget], Vocabulary]:
    """Every object of a SynthRef split folder (one with ``manifest.json``), in manifest order.

    Raises:
        FileNotFoundError: if the folder or its manifest is missing.
        AnnotationError: if the manifest lacks a field the evaluation needs.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"SynthRef split folder not found: {split_dir}")
    manifest_path = split_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{split_dir} has no manifest.json; expected a SynthRef split folder such as OUT/test "
            f"written by 'artemis data synthref'"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        vocabulary = Vocabulary.from_manifest(manifest)
        width, height = int(manifest["config"]["width"]), int(manifest["config"]["height"])
        targets = []
        for video in manifest["videos"]:
            objects = tuple(
                (
                    {key: str(obj[key]) for key in ("colour", "shape", "size", "motion")},
                    int(obj["key_frame_id"]),
                    _boxes(obj["boxes"]),
                )
                for obj in video["objects"]
            )
            for k, (labels, key_frame, boxes) in enumerate(objects):
                targets.append(
                    SynthRefTarget(
                        sample_id=f"{video['name']}_obj{k}",
                        video=split_dir / video["video"],
                        video_name=str(video["name"]),
                        object_index=k,
                        labels=labels,
                        key_frame_id=key_frame,
                        boxes=boxes,
                        objects=objects,
                        width=width,
                        height=height,
                    )
                )
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{manifest_path}: not a SynthRef manifest ({error!r})") from None
    return targets, vocabulary


def sample_rng(seed: int, sample_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the sample, not on the order or ``--limit``."""
    return np.random.default_rng([int(seed), zlib.crc32(sample_id.encode("utf-8"))])


def choose_swap(target: SynthRefTarget, rng: np.random.Generator) -> tuple[int, int] | None:
    """Pick another object of the same video for the box-swap control.

    Objects with a box on the target's key frame are preferred, so the swap changes only the box (same
    video, same key frame); otherwise the other object's own key frame is used.

    Returns:
        ``(object index, key frame)``, or ``None`` for a video with one object.
    """
    others = [j for j in range(len(target.objects)) if j != target.object_index]
    if not others:
        return None
    on_key = [j for j in others if target.objects[j][2][target.key_frame_id] is not None]
    pool = on_key or others
    j = pool[int(rng.integers(len(pool)))]
    frame = target.key_frame_id if on_key else target.objects[j][1]
    return j, frame


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def choose_blind_box(
    target: SynthRefTarget, rng: np.random.Generator, *, max_iou: float = 0.1, tries: int = 200
) -> tuple[float, float, float, float]:
    """A random box for the box-blind control, on the target's key frame.

    It has the target's size (so only its place differs), lies inside the frame, and overlaps no object
    by IoU > ``max_iou`` — neither any object's box on the key frame nor any object's own key-frame box.
    When no such place is found in ``tries`` draws, the draw with the smallest overlap is used.
    """
    x1, y1, x2, y2 = target.boxes[target.key_frame_id]  # type: ignore[misc]
    w, h = min(x2 - x1, target.width - 1.0), min(y2 - y1, target.height - 1.0)
    avoid = [b for _, _, boxes in target.objects for b in (boxes[target.key_frame_id],) if b is not None]
    avoid += [boxes[key] for _, key, boxes in target.objects if boxes[key] is not None]
    best, best_overlap = None, math.inf
    for _ in range(tries):
        x = float(rng.integers(0, int(target.width - w) + 1))
        y = float(rng.integers(0, int(target.height - h) + 1))
        box = (x, y, x + w, y + h)
        overlap = max((_iou(box, b) for b in avoid), default=0.0)
        if overlap < best_overlap:
            best, best_overlap = box, overlap
        if overlap <= max_iou:
            break
    assert best is not None
    return best


# --- metrics ---------------------------------------------------------------------------------------------


def _accuracy(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def synthref_metrics(records: Iterable[Mapping[str, Any]], vocabulary: Vocabulary | None = None) -> dict[str, Any]:
    """Accuracies from prediction records (the lines of ``predictions.jsonl``).

    Descriptions are parsed again here, so a rescored run uses the current parser. A record has
    ``labels`` and ``description``; ``swap`` (``labels``, ``description``) and ``blind`` (``description``)
    are optional. ``blind`` is scored against the record's own ``labels``.

    Returns:
        ``joint_accuracy``, ``color_accuracy``, ``shape_accuracy``, ``motion_accuracy``,
        ``swap_joint_accuracy``, ``blind_joint_accuracy`` (NaN with no samples) and the counts
        ``num_samples``, ``num_swap``, ``num_blind``, ``num_unparsed`` (descriptions with no attribute
        read at all).
    """
    vocabulary = vocabulary or Vocabulary.default()
    hits = dict.fromkeys(("colour", "shape", "motion", "joint", "swap", "blind"), 0)
    counts = dict.fromkeys(("samples", "swap", "blind", "unparsed"), 0)
    for record in records:
        parsed = parse_description(record["description"], vocabulary)
        right = parsed.matches(record["labels"])
        counts["samples"] += 1
        counts["unparsed"] += parsed == ParsedDescription(None, None, None)
        for key in ("colour", "shape", "motion", "joint"):
            hits[key] += right[key]
        for control, labels_key in (("swap", "swap"), ("blind", None)):
            entry = record.get(control)
            if not entry:
                continue
            labels = entry["labels"] if labels_key else record["labels"]
            counts[control] += 1
            hits[control] += parse_description(entry["description"], vocabulary).matches(labels)["joint"]
    n = counts["samples"]
    return {
        "joint_accuracy": _accuracy(hits["joint"], n),
        "color_accuracy": _accuracy(hits["colour"], n),
        "shape_accuracy": _accuracy(hits["shape"], n),
        "motion_accuracy": _accuracy(hits["motion"], n),
        "swap_joint_accuracy": _accuracy(hits["swap"], counts["swap"]),
        "blind_joint_accuracy": _accuracy(hits["blind"], counts["blind"]),
        "num_samples": n,
        "num_swap": counts["swap"],
        "num_blind": counts["blind"],
        "num_unparsed": counts["unparsed"],
    }


def chance_joint_accuracy(vocabulary: Vocabulary) -> float:
    """Joint accuracy of a uniform random guess: ``1 / (colours * shapes * motions)``."""
    return 1.0 / (len(vocabulary.colours) * len(vocabulary.shapes) * len(vocabulary.motions))


# --- the predictor ---------------------------------------------------------------------------------------


@dataclass
class SynthRefPredictor:
    """Describe a target, its box-swap and its box-blind control with an :class:`~artemis.api.ArtemisModel`.

    By default the exact boxes are the track (``Track.from_boxes``), so the tracker is not what is
    measured; ``use_tracker=True`` runs the model's tracker from the key-frame box instead. The blind
    box is held still over the video (there is no object to follow); with ``use_tracker`` it is tracked.

    Attributes:
        model: the model.
        seed: seed of the controls' choices (with each sample id).
        use_tracker: run the model's tracker instead of giving the exact boxes.
        controls: also run the swap and blind controls.
        generation: keyword arguments for ``generate`` (``max_new_tokens``, ...).
    """

    model: Any
    seed: int = 0
    use_tracker: bool = False
    controls: bool = True
    generation: dict[str, Any] = field(default_factory=dict)

    def _describe(self, reader: Any, boxes: Sequence[Any], frame: int) -> str:
        from artemis.track import Track

        box = boxes[frame]
        track = None if self.use_tracker else Track.from_boxes(list(boxes), key_frame=frame)
        return self.model.describe(reader, box, frame, track=track, **self.generation).text

    def __call__(self, target: SynthRefTarget) -> dict[str, Any]:
        """One prediction record (a line of ``predictions.jsonl``)."""
        from artemis.video import VideoReader

        rng = sample_rng(self.seed, target.sample_id)
        with VideoReader(target.video, backend=self.model.video_backend) as reader:
            record: dict[str, Any] = {
                "id": target.sample_id,
                "video": target.video_name,
                "object": target.object_index,
                "key_frame": target.key_frame_id,
                "box": list(target.boxes[target.key_frame_id] or ()),
                "labels": target.labels,
                "description": self._describe(reader, target.boxes, target.key_frame_id),
                "swap": None,
                "blind": None,
            }
            if not self.controls:
                return record
            swap = choose_swap(target, rng)
            if swap is not None:
                j, frame = swap
                labels, _, boxes = target.objects[j]
                record["swap"] = {
                    "object": j,
                    "key_frame": frame,
                    "box": list(boxes[frame] or ()),
                    "labels": labels,
                    "description": self._describe(reader, boxes, frame),
                }
            blind = choose_blind_box(target, rng)
            blind_boxes = [blind] * target.num_frames
            record["blind"] = {
                "key_frame": target.key_frame_id,
                "box": list(blind),
                "description": self._describe(reader, blind_boxes, target.key_frame_id),
            }
        return record
