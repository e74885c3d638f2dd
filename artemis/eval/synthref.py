"""SynthRef attribute scoring: parse a generated description into (colour, shape, motion) and score it.

SynthRef (:mod:`artemis.data.synthref`) knows every object's labels exactly, so a description can be
scored by reading those attributes back out of the text. The parser (:mod:`artemis.eval.synthref_parse`,
re-exported here) is a small rule set over the manifest's ``attributes`` vocabulary, not a list of the
generator's sentences, so it also reads a model that paraphrases ("moves rightwards", "goes from the
bottom left to the top right", "is stationary"). A description from which an attribute cannot be read
unambiguously gives ``None`` for it, which counts as wrong.

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

from artemis.data.synthref import (
    Scene,
    SynthRefConfig,
    draw_mask,
    generate_scene,
    mask_box,
    most_overlapped_frame,
    visible_mask,
)
from artemis.data.synthref_text import WHICH_KINDS as _WHICH_KINDS
from artemis.data.synthref_text import swapped_pair_answer
from artemis.data.synthref_writer import PairRecord, read_pair_records
from artemis.errors import AnnotationError, BoxError
from artemis.eval.synthref_parse import ParsedDescription, Vocabulary, parse_description
from artemis.tasks.pipeline import VideoPipeline

__all__ = [
    "PAIR_KEYS",
    "PairPredictor",
    "ParsedDescription",
    "SynthRefTarget",
    "Vocabulary",
    "choose_blind_box",
    "choose_swap",
    "load_targets",
    "pair_answer",
    "pair_metrics",
    "parse_description",
    "read_pair_records",
    "run_pairs",
    "sample_rng",
    "synthref_metrics",
]

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
        overlap: the largest share of another object's visible pixels inside the key-frame box (the
            manifest's ``key_frame_overlap``; None for a split written before it existed).
        scene: the generator's scene of the video (rebuilt from the manifest's seed, split and settings,
            and checked against its boxes), which gives masks and overlaps on any frame; None when it
            cannot be rebuilt (a split written by another generator version).
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
    overlap: float | None = None
    scene: Scene | None = field(default=None, repr=False, compare=False)

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
        for video_index, video in enumerate(manifest["videos"]):
            objects = tuple(
                (
                    {key: str(obj[key]) for key in ("colour", "shape", "size", "motion")},
                    int(obj["key_frame_id"]),
                    _boxes(obj["boxes"]),
                )
                for obj in video["objects"]
            )
            scene = _scene(manifest, video_index, objects)
            for k, (labels, key_frame, boxes) in enumerate(objects):
                overlap = video["objects"][k].get("key_frame_overlap")
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
                        overlap=None if overlap is None else float(overlap),
                        scene=scene,
                    )
                )
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{manifest_path}: not a SynthRef manifest ({error!r})") from None
    return targets, vocabulary


def _scene(manifest: Mapping[str, Any], index: int, objects: Sequence[Any]) -> Scene | None:
    """Video ``index``'s scene, rebuilt by the generator from the manifest; None unless its objects' key-frame
    boxes are the manifest's (another generator version, or settings the manifest does not record)."""
    try:
        config = SynthRefConfig(**manifest["config"])
        scene = generate_scene(int(manifest["seed"]), str(manifest["split"]), index, config)
    except (KeyError, TypeError, ValueError):
        return None
    if len(scene.objects) != len(objects):
        return None
    for k, (_, key_frame, boxes) in enumerate(objects):
        box = mask_box(draw_mask(scene.objects[k], key_frame, scene.width, scene.height))
        if box != boxes[key_frame]:
            return None
    return scene


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


OVERLAP_SHARE = 0.3
"""A target "overlaps" when more than this share of another object's visible pixels lies inside its key-frame
box: there a box prompt also covers another object, and a mask prompt should help (issue 16)."""


def synthref_metrics(records: Iterable[Mapping[str, Any]], vocabulary: Vocabulary | None = None) -> dict[str, Any]:
    """Accuracies from prediction records (the lines of ``predictions.jsonl``).

    Descriptions are parsed again here, so a rescored run uses the current parser. A record has
    ``labels`` and ``description``; ``swap`` (``labels``, ``description``) and ``blind`` (``description``)
    are optional. ``blind`` is scored against the record's own ``labels``.

    Returns:
        ``joint_accuracy``, ``color_accuracy``, ``shape_accuracy``, ``motion_accuracy``,
        ``swap_joint_accuracy``, ``blind_joint_accuracy`` (NaN with no samples) and the counts
        ``num_samples``, ``num_swap``, ``num_blind``, ``num_unparsed`` (descriptions with no attribute
        read at all), ``num_errors`` (samples whose prompt was refused, e.g. a mask cut into parts far apart;
        scored as wrong). When the records carry ``overlap`` (splits with ``key_frame_overlap``), also
        ``overlap_joint_accuracy`` / ``overlap_color_accuracy`` / ``num_overlap`` over the targets whose box
        holds more than :data:`OVERLAP_SHARE` of another object, and ``rest_joint_accuracy`` /
        ``rest_color_accuracy`` / ``num_rest`` over the others.
    """
    vocabulary = vocabulary or Vocabulary.default()
    records = list(records)
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
        "num_errors": sum(1 for record in records if record.get("error")),
        **_overlap_metrics(records, vocabulary),
    }


def _overlap_metrics(records: Sequence[Mapping[str, Any]], vocabulary: Vocabulary) -> dict[str, Any]:
    """Joint and colour accuracy of the overlapping targets and of the rest (empty without ``overlap``)."""
    known = [r for r in records if r.get("overlap") is not None]
    if not known:
        return {}
    out: dict[str, Any] = {}
    for name, subset in (
        ("overlap", [r for r in known if r["overlap"] > OVERLAP_SHARE]),
        ("rest", [r for r in known if r["overlap"] <= OVERLAP_SHARE]),
    ):
        right = [parse_description(r["description"], vocabulary).matches(r["labels"]) for r in subset]
        out[f"{name}_joint_accuracy"] = _accuracy(sum(m["joint"] for m in right), len(right))
        out[f"{name}_color_accuracy"] = _accuracy(sum(m["colour"] for m in right), len(right))
        out[f"num_{name}"] = len(right)
    return out


def chance_joint_accuracy(vocabulary: Vocabulary) -> float:
    """Joint accuracy of a uniform random guess: ``1 / (colours * shapes * motions)``."""
    return 1.0 / (len(vocabulary.colours) * len(vocabulary.shapes) * len(vocabulary.motions))


# --- the predictor ---------------------------------------------------------------------------------------


@dataclass
class SynthRefPredictor:
    """Describe a target, its box-swap and its box-blind control with a :class:`~artemis.tasks.VideoPipeline`.

    By default the exact boxes are the track (``Track.from_boxes``), so the tracker is not what is
    measured; ``use_tracker=True`` runs the model's tracker from the key-frame box instead. The blind
    box is held still over the video (there is no object to follow); with ``use_tracker`` it is tracked.

    Attributes:
        model: the model and its tracker settings (an :class:`artemis.ArtemisModel` is one).
        seed: seed of the controls' choices (with each sample id).
        use_tracker: run the model's tracker instead of giving the exact boxes.
        controls: also run the swap and blind controls.
        prompt: ``"box"`` gives the target by its box; ``"mask"`` by its visible pixels on the same frame
            (from the generator's scene), with the same track. The controls always give boxes.
        prompt_frame: ``"key"`` gives the target on its key frame (the frame where most of it shows);
            ``"overlap"`` on the frame where its box covers the largest share of another object, among those
            where at least half of it shows (:func:`artemis.data.synthref.most_overlapped_frame`): the
            hardest fair frame for a box prompt. The record's ``overlap`` is that share on that frame.
        generation: keyword arguments for ``generate`` (``max_new_tokens``, ...).
    """

    model: VideoPipeline
    seed: int = 0
    use_tracker: bool = False
    controls: bool = True
    prompt: str = "box"
    prompt_frame: str = "key"
    generation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prompt not in ("box", "mask"):
            raise ValueError(f"prompt={self.prompt!r}; expected 'box' or 'mask'")
        if self.prompt_frame not in ("key", "overlap"):
            raise ValueError(f"prompt_frame={self.prompt_frame!r}; expected 'key' or 'overlap'")

    def _describe(self, reader: Any, boxes: Sequence[Any], frame: int) -> str:
        from artemis.track import Track

        box = boxes[frame]
        track = None if self.use_tracker else Track.from_boxes(list(boxes), key_frame=frame)
        return self.model.describe(reader, box, frame, track=track, **self.generation).text

    def _scene(self, target: SynthRefTarget) -> Scene:
        if target.scene is None:
            raise AnnotationError(
                f"{target.sample_id}: its scene cannot be rebuilt from the manifest (written by another generator "
                "version?), so there is no mask or overlap for it; regenerate the split with `artemis data synthref`"
            )
        return target.scene

    def _prompt_frame(self, target: SynthRefTarget) -> tuple[int, float | None]:
        """The frame the target is given on and the share of another object its box covers there."""
        if self.prompt_frame == "key":
            return target.key_frame_id, target.overlap
        chosen = most_overlapped_frame(self._scene(target), target.object_index)
        if chosen is None:
            return target.key_frame_id, target.overlap
        return chosen

    def _describe_masked(self, reader: Any, target: SynthRefTarget, frame: int) -> str:
        from artemis.prompts import DESCRIBE_QUESTIONS
        from artemis.regions import Region
        from artemis.track import Track

        mask = visible_mask(self._scene(target), target.object_index, frame)
        track = None if self.use_tracker else [Track.from_boxes(list(target.boxes), key_frame=frame)]
        region = Region(mask=mask, frame=frame)
        return self.model.ask(
            reader, regions=[region], question=DESCRIBE_QUESTIONS[0], tracks=track, **self.generation
        ).text

    def __call__(self, target: SynthRefTarget) -> dict[str, Any]:
        """One prediction record (a line of ``predictions.jsonl``)."""
        from artemis.video import VideoReader

        rng = sample_rng(self.seed, target.sample_id)
        with VideoReader(target.video, backend=self.model.video_backend) as reader:
            frame, overlap = self._prompt_frame(target)
            error = None
            if self.prompt == "mask":
                try:
                    description = self._describe_masked(reader, target, frame)
                except BoxError as refused:  # e.g. a visible mask cut into parts far apart: recorded, run goes on
                    description, error = "", str(refused)
            else:
                description = self._describe(reader, target.boxes, frame)
            record: dict[str, Any] = {
                "id": target.sample_id,
                "video": target.video_name,
                "object": target.object_index,
                "key_frame": frame,
                "box": list(target.boxes[frame] or ()),
                "labels": target.labels,
                "prompt": self.prompt,
                "overlap": overlap,
                "description": description,
                "error": error,
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


# --- pair questions (``artemis eval synthref --task pairs``) -------------------------------------------

PAIR_KEYS = (
    "pair_accuracy",
    "chance_pair_accuracy",
    "majority_pair_accuracy",
    "swap_pair_accuracy",
    "swap_flip_rate",
    "num_pairs",
    "num_swap",
    "num_unparsed",
)
"""The metrics printed for a pair run (``metrics.json`` also has the accuracy of each kind)."""

_PAIR_WORDS = re.compile(r"\b(yes|no|region1|region2)\b", re.IGNORECASE)


def pair_answer(text: str) -> str | None:
    """What an answer to a pair question says: ``"yes"``, ``"no"``, ``"region1"``, ``"region2"`` (the first
    such word of the text), or None when it says none of them."""
    match = _PAIR_WORDS.search(text or "")
    return match.group(1).lower() if match else None


def pair_metrics(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracies from pair prediction records.

    A record has ``kind``, ``answer`` (the exact answer) and ``prediction``; ``swap`` (``answer``,
    ``prediction``) is the box-swap control: the same question with the two regions exchanged, whose
    answer names the other region for "which" questions (left, up, faster) and is unchanged otherwise.

    Returns:
        ``pair_accuracy``; ``chance_pair_accuracy`` (every pair question has two answers: 0.5);
        ``majority_pair_accuracy`` (always giving each kind's most common answer of these records, a
        stronger baseline where the answers are unbalanced); ``swap_pair_accuracy``; ``swap_flip_rate``
        (of the "which" questions, the share whose predicted region changes with the swap: 1.0 for a model
        that follows the boxes, 0.0 for one that ignores them); ``pair_accuracy_<kind>``; the counts.
    """
    hits = total = swap_hits = swap_total = flips = which_total = unparsed = 0
    by_kind: dict[str, list[int]] = {}
    answers_by_kind: dict[str, list[str]] = {}
    for record in records:
        kind, truth = record["kind"], pair_answer(record["answer"])
        said = pair_answer(record["prediction"])
        right = int(said is not None and said == truth)
        hits, total, unparsed = hits + right, total + 1, unparsed + (said is None)
        by_kind.setdefault(kind, [0, 0])
        by_kind[kind][0] += right
        by_kind[kind][1] += 1
        answers_by_kind.setdefault(kind, []).append(str(truth))
        swap = record.get("swap")
        if not swap:
            continue
        swapped = pair_answer(swap["prediction"])
        swap_hits += int(swapped is not None and swapped == pair_answer(swap["answer"]))
        swap_total += 1
        if kind in _WHICH_KINDS:
            which_total += 1
            flips += int(said in ("region1", "region2") and swapped in ("region1", "region2") and said != swapped)
    majority = sum(max(answers.count(a) for a in set(answers)) for answers in answers_by_kind.values())
    metrics: dict[str, Any] = {
        "pair_accuracy": _accuracy(hits, total),
        "chance_pair_accuracy": 0.5,
        "majority_pair_accuracy": _accuracy(majority, total),
        "swap_pair_accuracy": _accuracy(swap_hits, swap_total),
        "swap_flip_rate": _accuracy(flips, which_total),
        "num_pairs": total,
        "num_swap": swap_total,
        "num_unparsed": unparsed,
    }
    for kind in sorted(by_kind):
        metrics[f"pair_accuracy_{kind}"] = _accuracy(*by_kind[kind])
    return metrics


@dataclass
class PairPredictor:
    """Answer a pair question, and the same question with the two regions exchanged (the box-swap control).

    By default the exact boxes are the tracks; ``use_tracker=True`` tracks each region from its own key
    frame instead (one pass for both).
    """

    model: VideoPipeline
    use_tracker: bool = False
    controls: bool = True
    generation: dict[str, Any] = field(default_factory=dict)

    def _ask(self, reader: Any, record: PairRecord, order: Sequence[int]) -> str:
        from artemis.regions import Region
        from artemis.track import Track

        regions = [Region(box=record.boxes[i][record.key_frames[i]], frame=record.key_frames[i]) for i in order]
        tracks = None
        if not self.use_tracker:
            tracks = [
                Track.from_boxes(
                    [None if np.isnan(b).any() else b for b in record.boxes[i]], key_frame=record.key_frames[i]
                )
                for i in order
            ]
        return self.model.ask(reader, regions=regions, question=record.question, tracks=tracks, **self.generation).text

    def __call__(self, record: PairRecord) -> dict[str, Any]:
        """One prediction record (a line of ``predictions.jsonl``)."""
        from artemis.video import VideoReader

        with VideoReader(record.video, backend=self.model.video_backend) as reader:
            out: dict[str, Any] = {
                "id": record.sample_id,
                "kind": record.kind,
                "question": record.question,
                "objects": list(record.objects),
                "key_frames": list(record.key_frames),
                "answer": record.answer,
                "prediction": self._ask(reader, record, (0, 1)),
                "swap": None,
            }
            if self.controls:
                out["swap"] = {
                    "answer": swapped_pair_answer(record.kind, record.answer),
                    "prediction": self._ask(reader, record, (1, 0)),
                }
        return out


def run_pairs(
    pipeline: VideoPipeline,
    records: Sequence[PairRecord],
    out: Path,
    *,
    model_dir: Path,
    data: Path,
    use_tracker: bool = False,
    controls: bool = True,
    max_new_tokens: int = 16,
    shard: Any = None,
) -> dict[str, Any] | None:
    """Answer every pair question (resumably, in ``out``), score it and write ``metrics.json`` and the report."""
    from artemis.eval.runner import finish_run, run_predictions

    predictor = PairPredictor(
        pipeline, use_tracker=use_tracker, controls=controls, generation={"max_new_tokens": max_new_tokens}
    )
    settings = {
        "task": "synthref-pairs",
        "model": str(Path(model_dir).resolve()),
        "data": str(Path(data).resolve()),
        "track": use_tracker,
        "controls": controls,
        "max_new_tokens": max_new_tokens,
    }
    run = run_predictions(
        records, predictor, out, sample_id=lambda r: r.sample_id, settings=settings, description="pairs", shard=shard
    )
    if not run.complete:
        return None
    metrics = pair_metrics(run.records)
    notes = [
        f"{metrics['num_pairs']} pair questions of {data}/videoref45k_pairs.json; model {model_dir}.",
        "An answer is read as its first yes/no/region1/region2 word; none counts as wrong. Chance is 0.5 (two "
        "answers per question); majority = always each kind's most common answer.",
        "box-swap: the two regions exchanged; a which-question's answer then names the other region. "
        "swap_flip_rate: share of which-questions whose predicted region changes with the swap.",
    ]
    finish_run(out, "SynthRef pair questions", metrics, notes)
    return metrics
