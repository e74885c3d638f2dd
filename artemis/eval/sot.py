"""SOT and RSOT over a data set: track every sequence, then score it with the one-pass protocol.

SOT runs either a tracker (:func:`artemis.track.track_video`, e.g. ``opencv-csrt``) or a model's own box
output (Elysium, :meth:`artemis.tasks.VideoPipeline.track_with_llm`); RSOT (a referring expression -> a box
on every frame) always needs box output. A model must have ``"boxes"`` among its config's ``tasks``;
:func:`require_box_output` checks that from ``config.json`` before any weights are loaded.

:func:`run_sot` and :func:`run_rsot` write ``predictions.jsonl`` through the resumable runner
(:func:`artemis.eval.runner.run_predictions`), then :func:`score_tracks` writes ``metrics.json``,
``report.md`` and the success/precision plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artemis.boxes import box_iou, xywh_to_xyxy, xyxy_to_otb
from artemis.data.records import RefSample
from artemis.errors import AnnotationError, ConfigError
from artemis.eval.report import write_tracking_plots
from artemis.eval.runner import Shard, finish_run, run_predictions
from artemis.eval.samples import SYNTHREF, open_sample
from artemis.eval.tracking import score_dataset
from artemis.model.loading import load_config
from artemis.tasks.box_output import BoxOutTrack, BoxStatus, check_number_window, check_views, require_task
from artemis.tasks.pipeline import VideoPipeline
from artemis.track import TRACKER_NAMES, Track, track_video
from artemis.track.registry import GIVEN_TRACKER

__all__ = [
    "RSOT_FORMATS",
    "SOT_FORMATS",
    "TRACKER_CHOICES",
    "TRACKING_KEYS",
    "BoxOutOptions",
    "RsotPredictor",
    "SotPredictor",
    "check_tracker",
    "described_samples",
    "first_frame_iou",
    "require_box_output",
    "run_rsot",
    "run_sot",
    "score_tracks",
    "sequence_arrays",
    "track_record",
]

TRACKING_KEYS = ("success_auc", "precision_20px", "norm_precision_020", "ao", "sr50")
"""The scores printed and reported for a tracking run."""
SOT_FORMATS = ("lasot", "otb", "elysium", "videoref45k", SYNTHREF)
RSOT_FORMATS = ("elysium", "videoref45k", "lasot", SYNTHREF)
TRACKER_CHOICES = tuple(name for name in TRACKER_NAMES if name != GIVEN_TRACKER)
"""Trackers SOT can score (``given`` would score the ground truth against itself)."""


SYNTHREF_NOTE = (
    "SynthRef: one sequence per target (elysium_track.json), starting on the first frame where the target is "
    "visible; earlier frames are not part of the sequence. Frames where it is hidden or out of the frame are "
    "absent (excluded from the IoU, counted in the denominator under the lasot convention)."
)


def check_tracker(name: str) -> None:
    """Refuse a tracker SOT cannot score, naming the ones it can."""
    if name == GIVEN_TRACKER:
        raise ConfigError(
            f"--tracker {GIVEN_TRACKER} would score the ground truth against itself; name a real tracker "
            f"({', '.join(TRACKER_CHOICES)})"
        )
    if name not in TRACKER_CHOICES:
        raise ConfigError(f"--tracker {name!r} is not a tracker; expected one of {', '.join(TRACKER_CHOICES)}")


def require_box_output(model_dir: Path, model_name: str, *, hint: str | None = None) -> None:
    """Refuse, from its ``config.json`` alone (no weights read), a model not trained to write boxes.

    Args:
        model_dir: the checkpoint directory.
        model_name: how the message names the model (what the user passed).
        hint: another fix to add to the message (e.g. scoring a tracker instead).

    Raises:
        CheckpointError: no readable Artemis config in ``model_dir``.
        ConfigError: ``"boxes"`` is not among the config's ``tasks``.
    """
    config = load_config(model_dir)
    try:
        require_task(config, "boxes", f"model {model_name!r}")
    except ConfigError as error:
        if hint is None:
            raise
        raise ConfigError(f"{error}; {hint}") from None


@dataclass(frozen=True)
class BoxOutOptions:
    """Box-output settings; ``None`` keeps the default of :func:`artemis.tasks.box_output.track_with_llm`.

    Attributes:
        clip_length: frames per clip (8).
        stride: clip stride (clip length - 1).
        max_new_tokens: generation length per clip (24 per frame).
        template: keep the frame selector's query of the first clip for the later clips (``track_with_llm``).
        number_window: 0 writes box values greedily; k >= 1 the local mean within k of the most likely value
            (``track_with_llm``).
        track_found: RSOT: track from the first box the expression's clip finds (``track_with_llm``).
        views: ask each clip in this many views and keep the box they agree on (``track_with_llm``); 1: once.
    """

    clip_length: int | None = None
    stride: int | None = None
    max_new_tokens: int | None = None
    template: bool = True
    number_window: int = 0
    track_found: bool = False
    views: int = 1

    def __post_init__(self) -> None:
        check_number_window(self.number_window)  # before any model is loaded or output written
        check_views(self.views)

    def call_options(self) -> dict[str, Any]:
        """Keyword arguments of ``track_with_llm``."""
        options: dict[str, Any] = {
            "clip_length": self.clip_length,
            "stride": self.stride,
            "template": self.template,
            "number_window": self.number_window,
            "track_found": self.track_found,
            "views": self.views,
        }
        if self.max_new_tokens is not None:
            options["max_new_tokens"] = self.max_new_tokens
        return options

    def settings(self) -> dict[str, Any]:
        """As recorded in ``run.json``."""
        settings = {
            "clip_length": self.clip_length,
            "stride": self.stride,
            "max_new_tokens": self.max_new_tokens,
            "template": self.template,
        }
        if self.number_window:  # recorded only when used, so runs from before the option still resume
            settings["number_window"] = self.number_window
        if self.track_found:
            settings["track_found"] = True
        if self.views != 1:
            settings["views"] = self.views
        return settings


def track_record(track: Track) -> dict[str, Any]:
    """A track as stored in ``predictions.jsonl``: 1-based ``x, y, w, h`` rows, ``null`` where lost.

    A box-output track (:class:`~artemis.tasks.BoxOutTrack`) also stores its ``unparsed_frames``,
    ``invalid_frames`` and the generated ``texts``.
    """
    pred = np.full((track.num_frames, 4), np.nan)  # (T, 4)
    seen = track.visible  # (T,)
    pred[seen] = xyxy_to_otb(track.boxes[seen])
    # Lost frames are stored as null and scored as NaN, so the toolkit's rule for invalid boxes applies.
    record: dict[str, Any] = {
        "boxes_xywh_1based": [[float(v) for v in row] if ok else None for row, ok in zip(pred, seen, strict=True)]
    }
    if isinstance(track, BoxOutTrack):  # box output: what could not be read, and the raw answers
        record["unparsed_frames"] = [int(i) for i in np.flatnonzero(track.status == BoxStatus.UNPARSED)]
        record["invalid_frames"] = [int(i) for i in np.flatnonzero(track.status == BoxStatus.INVALID)]
        record["texts"] = list(track.texts)
    return record


def sequence_arrays(sample: RefSample) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of a record as 1-based ``x, y, w, h`` rows (NaN where no box), and absent flags.

    Returns:
        ``(T, 4)`` float rows and ``(T,)`` bool flags (absent or hidden).
    """
    boxes, visible = sample.boxes_array()  # (T, 4) xyxy with NaN rows, (T,)
    gt = np.full_like(boxes, np.nan)  # (T, 4)
    rows = np.isfinite(boxes).all(axis=1)
    if rows.any():
        gt[rows] = xyxy_to_otb(boxes[rows])
    return gt, ~visible


def first_frame_iou(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> float:
    """IoU of the predicted and true box on frame 1 (0 where either is missing); rows are ``(T, 4)`` xywh."""
    if not (np.isfinite(pred_xywh[0]).all() and np.isfinite(gt_xywh[0]).all()):
        return 0.0
    return float(box_iou(xywh_to_xyxy(pred_xywh[0]), xywh_to_xyxy(gt_xywh[0])))


def described_samples(samples: Sequence[RefSample], path: Path) -> list[RefSample]:
    """The records with a description (``object_description`` / caption) to refer to their target by.

    Raises:
        AnnotationError: none has.
    """
    kept = [s for s in samples if s.caption]
    if not kept:
        raise AnnotationError(f"{path}: no record has a description (object_description / caption) to refer by")
    return kept


# --- predictors ---------------------------------------------------------------------------------------


@dataclass
class SotPredictor:
    """Track one sequence from the first frame's ground-truth box: with ``tracker``, or the model's box output.

    Attributes:
        tracker: a tracker name (:data:`TRACKER_CHOICES`), or ``None`` with ``pipeline``.
        pipeline: a model that writes boxes, or ``None`` with ``tracker``.
        options: box-output settings.
    """

    tracker: str | None = None
    pipeline: VideoPipeline | None = None
    options: BoxOutOptions = BoxOutOptions()

    def __post_init__(self) -> None:
        if (self.tracker is None) == (self.pipeline is None):
            raise ValueError("SotPredictor takes a tracker or a pipeline, exactly one")

    def __call__(self, sample: RefSample) -> dict[str, Any]:
        """One line of ``predictions.jsonl``: the track (:func:`track_record`) and its ``start_frame``."""
        with open_sample(sample, whole_video=False) as (video, _positions):
            start = next(i for i, b in enumerate(sample.boxes) if b is not None)  # frame 1 unless it is absent
            box = sample.boxes[start]
            if self.pipeline is not None:
                track = self.pipeline.track_with_llm(video, box, start, **self.options.call_options())
            else:
                track = track_video(video, box, start, tracker=self.tracker)
        return {**track_record(track), "start_frame": start}


@dataclass
class RsotPredictor:
    """The model tracks the target a record's description names, from frame 1 on (box output)."""

    pipeline: VideoPipeline
    options: BoxOutOptions = BoxOutOptions()

    def __call__(self, sample: RefSample) -> dict[str, Any]:
        """One line of ``predictions.jsonl``: the track (:func:`track_record`) and the ``expression``."""
        with open_sample(sample, whole_video=False) as (video, _positions):
            track = self.pipeline.track_with_llm(video, expression=sample.caption, **self.options.call_options())
        return {**track_record(track), "expression": sample.caption}


# --- runs ---------------------------------------------------------------------------------------------


def run_sot(
    samples: Sequence[RefSample],
    out: Path,
    *,
    data_format: str,
    data_path: Path,
    tracker: str | None = None,
    pipeline: VideoPipeline | None = None,
    model_dir: Path | None = None,
    options: BoxOutOptions = BoxOutOptions(),
    convention: str = "lasot",
    dataset: str | None = None,
    shard: Shard | None = None,
) -> dict[str, float] | None:
    """Track every sequence (resumably, in ``out``) with a tracker or a model's box output, then score it.

    Args:
        samples: records with boxes.
        out: output directory (``predictions.jsonl``, ``run.json``, ``metrics.json``, ``report.md``, plots).
        data_format / data_path: where the records come from (``run.json`` and the report).
        tracker: a tracker name; or
        pipeline / model_dir: a model that writes boxes (:func:`require_box_output`) and its directory.
        options: box-output settings.
        convention / dataset: the scoring rules (:func:`artemis.eval.tracking.score_dataset`).
        shard: this process of a sharded run (see :mod:`artemis.eval.runner`); rank 0 merges and scores.

    Returns:
        The :data:`TRACKING_KEYS` scores; None on ranks other than 0 of a sharded run.
    """
    if tracker is not None:
        check_tracker(tracker)
    predictor = SotPredictor(tracker=tracker, pipeline=pipeline, options=options)
    if pipeline is not None:
        if model_dir is None:
            raise ValueError("run_sot with a pipeline needs its model_dir")
        name, identity, how = model_dir.name, str(model_dir.resolve()), "the LLM's box output (Elysium clips)"
    else:
        name, identity, how = str(tracker), str(tracker), f"tracker {tracker}"
    settings: dict[str, Any] = {"task": "sot", "model": identity, "data": f"{data_format}:{data_path.resolve()}"}
    if pipeline is not None:
        settings["boxout"] = options.settings()
    run = run_predictions(
        samples, predictor, out, sample_id=lambda s: s.sample_id, settings=settings, description="sot", shard=shard
    )
    if not run.complete:
        return None
    notes = [
        f"{len(run.records)} sequence(s) of {data_format}:{data_path}; {name} with {how}; convention {convention}.",
        "One-pass evaluation: initialised from the first frame's ground-truth box, every frame predicted; "
        "frame 1 set to the ground truth when scoring.",
    ]
    if data_format == SYNTHREF:
        notes.append(SYNTHREF_NOTE)
    return score_tracks(
        samples, run.records, out, name, f"SOT evaluation: {name}", notes, convention=convention, dataset=dataset
    )


def run_rsot(
    pipeline: VideoPipeline,
    samples: Sequence[RefSample],
    out: Path,
    *,
    model_dir: Path,
    data_format: str,
    data_path: Path,
    options: BoxOutOptions = BoxOutOptions(),
    convention: str = "lasot",
    dataset: str | None = None,
    shard: Shard | None = None,
) -> dict[str, float] | None:
    """Referring SOT: the model tracks the target each record's description names; then score it.

    Records without a description (``object_description`` / caption) are dropped. Arguments as
    :func:`run_sot` (None on ranks other than 0 of a sharded run); ``metrics.json`` adds ``first_frame_iou``.

    Raises:
        AnnotationError: no record has a description.
    """
    samples = described_samples(samples, data_path)
    settings = {
        "task": "rsot",
        "model": str(model_dir.resolve()),
        "data": f"{data_format}:{data_path.resolve()}",
        "boxout": options.settings(),
    }
    run = run_predictions(
        samples,
        RsotPredictor(pipeline, options),
        out,
        sample_id=lambda s: s.sample_id,
        settings=settings,
        description="rsot",
        shard=shard,
    )
    if not run.complete:
        return None
    notes = [
        f"{len(run.records)} sequence(s) of {data_format}:{data_path}; model {model_dir}; the record's description "
        f"is the referring expression; convention {convention}.",
        "Clips of 8 frames, stride 7: the first clip gets the expression, later clips the last predicted box "
        "(the expression again while no box has been found).",
    ]
    if data_format == SYNTHREF:
        notes.append(SYNTHREF_NOTE)
    name = model_dir.name
    return score_tracks(
        samples,
        run.records,
        out,
        name,
        f"RSOT evaluation: {name}",
        notes,
        convention=convention,
        dataset=dataset,
        first_frame=True,
    )


def score_tracks(
    samples: Sequence[RefSample],
    records: Sequence[dict[str, Any]],
    out: Path,
    name: str,
    title: str,
    notes: list[str],
    *,
    convention: str = "lasot",
    dataset: str | None = None,
    first_frame: bool = False,
) -> dict[str, float]:
    """Score stored tracks against the records' ground truth; write ``metrics.json``, the report and plots.

    Args:
        samples: the records (by ``sample_id``).
        records: their lines of ``predictions.jsonl`` (:func:`track_record` rows).
        out: output directory.
        name: the tracker's name in the plots and ``metrics.json``.
        title / notes: the report's title and notes (box-output and RSOT notes are added).
        convention / dataset: the scoring rules.
        first_frame: also report ``first_frame_iou`` (RSOT, where scoring replaces frame 1 by the truth).

    Returns:
        The :data:`TRACKING_KEYS` scores.
    """
    notes = list(notes)
    by_id = {s.sample_id: s for s in samples}
    sequences = []
    for record in records:
        gt, absent = sequence_arrays(by_id[record["id"]])
        pred = np.array([row if row is not None else [np.nan] * 4 for row in record["boxes_xywh_1based"]])  # (T, 4)
        sequences.append((record["id"], pred, gt, absent if absent.any() else None))
    scores = score_dataset([(p, g, a) for _, p, g, a in sequences], convention, dataset=dataset)
    result = {key: scores.to_dict()[key] for key in TRACKING_KEYS}
    per_sequence = {
        seq: score_dataset([(p, g, a)], convention, dataset=dataset).to_dict() for seq, p, g, a in sequences
    }
    plots = write_tracking_plots({name: scores}, out)
    extra: dict[str, Any] = {
        "convention": convention,
        "tracker": name,
        "num_sequences": len(sequences),
        "num_frames": scores.num_frames,
        "success_curve": scores.success_curve.tolist(),
        "precision_curve": scores.precision_curve.tolist(),
        "norm_precision_curve": scores.norm_precision_curve.tolist(),
        "per_sequence": per_sequence,
    }
    if records and "unparsed_frames" in records[0]:
        unparsed = sum(len(r["unparsed_frames"]) for r in records)
        invalid = sum(len(r["invalid_frames"]) for r in records)
        extra.update(num_unparsed_frames=unparsed, num_invalid_boxes=invalid)
        notes.append(
            f"Box output: {unparsed} of {scores.num_frames} frames had no readable box in the generated text and "
            f"{invalid} an empty, inverted or off-frame box; both are scored as invalid boxes (previous frame's box "
            f"under the {convention} rules where the toolkit does so)."
        )
    if first_frame:
        extra["first_frame_iou"] = float(np.mean([first_frame_iou(pred, gt) for _, pred, gt, _ in sequences]))
        notes.append(
            f"RSOT: the one-pass protocol replaces frame 1 by the ground truth, so the grounding of the expression "
            f"on frame 1 is reported separately: mean IoU {extra['first_frame_iou']:.4f} (a miss or no box counts 0)."
        )
    finish_run(out, title, result, notes, extra=extra, images=plots)
    return result
