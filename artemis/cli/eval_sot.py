"""``artemis eval sot | rsot``: track every sequence of a data set, then score it with the one-pass protocol.

SOT runs an OpenCV tracker (``--model opencv-csrt``), a model's tracker (a model directory with the
pooled layout, or ``--tracker NAME``) or, for a model with ``video_layout="frames"``, the LLM's own box
output (:mod:`artemis.boxout`, Elysium). RSOT (a referring expression -> a box on every frame) needs box
output. Both write ``predictions.jsonl`` through the resumable runner, then ``metrics.json``,
``report.md`` and the success/precision plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from artemis.cli.eval_models import TRACKING_KEYS, close_reader, open_sample, print_result, read_samples
from artemis.errors import AnnotationError, CheckpointError, ConfigError
from artemis.eval.tracking import CONVENTIONS

SOT_FORMATS = ("lasot", "otb", "elysium", "videoref45k")
RSOT_FORMATS = ("elysium", "videoref45k", "lasot")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``artemis eval sot`` and ``artemis eval rsot``."""
    sot = commands.add_parser("sot", help="single-object tracking from the first frame's box (one-pass)")
    sot.add_argument(
        "--model",
        required=True,
        help="tracker name (opencv-csrt, opencv-kcf, opencv-mil) or model directory (a video_layout='frames' "
        "model writes the boxes itself, Elysium-style; others run their tracker)",
    )
    sot.add_argument("--tracker", help="with a model directory: run this tracker instead of the LLM's box output")
    _add_common(sot, SOT_FORMATS, "eval-sot")
    sot.set_defaults(func=run_sot)

    rsot = commands.add_parser(
        "rsot", help="referring SOT: the LLM writes the box of a described target on every frame"
    )
    rsot.add_argument("--model", required=True, help="model directory with video_layout='frames' (box output)")
    _add_common(rsot, RSOT_FORMATS, "eval-rsot")
    rsot.set_defaults(func=run_rsot)


def _add_common(parser: argparse.ArgumentParser, formats: tuple[str, ...], out: str) -> None:
    parser.add_argument("--data", required=True, help=f"FORMAT:PATH, FORMAT one of {', '.join(formats)}")
    parser.add_argument("--out", type=Path, default=Path(out), help="output directory")
    parser.add_argument("--limit", type=int, help="only the first N sequences (a rerun with more resumes)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="lasot", help="whose rules (default lasot)")
    parser.add_argument("--dataset", choices=("otb", "lasot"), help="toolkit branch for pytracking/got10k")
    parser.add_argument("--clip-length", type=int, help="box output: frames per clip (default 8)")
    parser.add_argument("--stride", type=int, help="box output: clip stride (default clip length - 1)")
    parser.add_argument("--max-new-tokens", type=int, help="box output: generation length per clip (default 24/frame)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")


def _boxout_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"clip_length": args.clip_length, "stride": args.stride}
    if args.max_new_tokens is not None:
        options["max_new_tokens"] = args.max_new_tokens
    return options


def _boxout_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"clip_length": args.clip_length, "stride": args.stride, "max_new_tokens": args.max_new_tokens}


def _track_record(track: Any) -> dict[str, Any]:
    """A track as stored in ``predictions.jsonl``: 1-based ``x, y, w, h`` rows, ``null`` where lost."""
    import numpy as np

    from artemis.boxes import xyxy_to_otb

    pred = np.full((track.num_frames, 4), np.nan)
    seen = track.visible
    pred[seen] = xyxy_to_otb(track.boxes[seen])
    # Lost frames are stored as null and scored as NaN, so the toolkit's rule for invalid boxes applies.
    record: dict[str, Any] = {
        "boxes_xywh_1based": [[float(v) for v in row] if ok else None for row, ok in zip(pred, seen, strict=True)]
    }
    if hasattr(track, "status"):  # box output: what could not be read, and the raw answers
        from artemis.boxout import INVALID, UNPARSED

        record["unparsed_frames"] = [int(i) for i in np.flatnonzero(track.status == UNPARSED)]
        record["invalid_frames"] = [int(i) for i in np.flatnonzero(track.status == INVALID)]
        record["texts"] = list(track.texts)
    return record


def _sequence_arrays(sample: Any) -> tuple[Any, Any]:
    """Ground truth of a record as 1-based ``x, y, w, h`` rows (NaN where no box) and absent flags."""
    import numpy as np

    from artemis.boxes import xyxy_to_otb

    boxes, visible = sample.boxes_array()  # (T, 4) xyxy with NaN rows, (T,)
    gt = np.full_like(boxes, np.nan)
    rows = np.isfinite(boxes).all(axis=1)
    if rows.any():
        gt[rows] = xyxy_to_otb(boxes[rows])
    return gt, ~visible


def _score_and_report(
    args: argparse.Namespace, samples: list, records: list[dict[str, Any]], name: str, title: str, notes: list[str]
) -> int:
    """Score the stored tracks against the records' ground truth; write metrics, report and plots."""
    import numpy as np

    from artemis.eval.report import write_tracking_plots
    from artemis.eval.runner import finish_run
    from artemis.eval.tracking import score_dataset

    by_id = {s.sample_id: s for s in samples}
    sequences = []
    for record in records:
        gt, absent = _sequence_arrays(by_id[record["id"]])
        pred = np.array([row if row is not None else [np.nan] * 4 for row in record["boxes_xywh_1based"]])
        sequences.append((record["id"], pred, gt, absent if absent.any() else None))
    scores = score_dataset([(p, g, a) for _, p, g, a in sequences], args.convention, dataset=args.dataset)
    result = {key: scores.to_dict()[key] for key in TRACKING_KEYS}
    per_sequence = {
        seq: score_dataset([(p, g, a)], args.convention, dataset=args.dataset).to_dict() for seq, p, g, a in sequences
    }
    plots = write_tracking_plots({name: scores}, args.out)
    extra: dict[str, Any] = {
        "convention": args.convention,
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
            f"under the {args.convention} rules where the toolkit does so)."
        )
    if args.func is run_rsot:
        first = [_first_frame_iou(pred, gt) for _, pred, gt, _ in sequences]
        extra["first_frame_iou"] = float(np.mean(first))
        notes.append(
            f"RSOT: the one-pass protocol replaces frame 1 by the ground truth, so the grounding of the expression "
            f"on frame 1 is reported separately: mean IoU {extra['first_frame_iou']:.4f} (a miss or no box counts 0)."
        )
    finish_run(args.out, title, result, notes, extra=extra, images=plots)
    return print_result(args, result)


def _first_frame_iou(pred_xywh: Any, gt_xywh: Any) -> float:
    """IoU of the predicted and true box on frame 1 (0 where either is missing)."""
    import numpy as np

    from artemis.boxes import box_iou, xywh_to_xyxy

    if not (np.isfinite(pred_xywh[0]).all() and np.isfinite(gt_xywh[0]).all()):
        return 0.0
    return float(box_iou(xywh_to_xyxy(pred_xywh[0]), xywh_to_xyxy(gt_xywh[0])))


# --- sot ------------------------------------------------------------------------------------------------


def run_sot(args: argparse.Namespace) -> int:
    """``artemis eval sot``."""
    from artemis.eval.runner import run_predictions
    from artemis.track import TRACKER_NAMES, track_video

    fmt, path, samples = read_samples(args.data, SOT_FORMATS, args.limit)
    if args.tracker is not None and (args.tracker not in TRACKER_NAMES or args.tracker == "given"):
        raise ConfigError(
            f"--tracker {args.tracker!r} is not a tracker; expected one of opencv-csrt, opencv-kcf, opencv-mil"
        )
    boxout = False
    if args.model in TRACKER_NAMES:
        if args.model == "given":
            raise AnnotationError("--model given would score the ground truth against itself; name a real tracker")
        if args.tracker is not None:
            raise ConfigError("--tracker is for a model directory; with a tracker as --model, leave it out")
        name, model, identity = args.model, None, args.model
    else:
        from artemis.api import ArtemisModel, resolve_model_dir

        model_dir = resolve_model_dir(args.model)
        model = ArtemisModel.from_pretrained(model_dir)
        if args.tracker is not None:
            model.tracker = args.tracker
        boxout = args.tracker is None and model.config.video_layout == "frames"
        name, identity = model_dir.name, str(model_dir.resolve())
    options = _boxout_options(args)

    def predict(sample: Any) -> dict[str, Any]:
        reader, _positions = open_sample(sample, whole_video=False)
        try:
            start = next(i for i, b in enumerate(sample.boxes) if b is not None)  # frame 1 unless it is absent
            box = sample.boxes[start]
            if boxout:
                track = model.track_with_llm(reader, box, start, **options)
            elif model is not None:
                track = model.track(reader, box, start)
            else:
                track = track_video(reader, box, start, tracker=name)
        finally:
            close_reader(reader)
        return {**_track_record(track), "start_frame": start}

    settings: dict[str, Any] = {"task": "sot", "model": identity, "data": f"{fmt}:{path.resolve()}"}
    if args.tracker is not None:
        settings["tracker"] = args.tracker
    if boxout:
        settings["boxout"] = _boxout_settings(args)
    run = run_predictions(
        samples, predict, args.out, sample_id=lambda s: s.sample_id, settings=settings, description="sot"
    )
    how = "the LLM's box output (Elysium clips)" if boxout else f"tracker {model.tracker if model else name}"
    notes = [
        f"{len(run.records)} sequence(s) of {fmt}:{path}; {name} with {how}; convention {args.convention}.",
        "One-pass evaluation: initialised from the first frame's ground-truth box, every frame predicted; "
        "frame 1 set to the ground truth when scoring.",
    ]
    return _score_and_report(args, samples, run.records, name, f"SOT evaluation: {name}", notes)


# --- rsot -----------------------------------------------------------------------------------------------


def run_rsot(args: argparse.Namespace) -> int:
    """``artemis eval rsot``: the LLM tracks the target a record's description names, from frame 1 on."""
    from artemis.api import ArtemisModel, resolve_model_dir
    from artemis.boxout import require_frames_layout
    from artemis.eval.runner import run_predictions
    from artemis.model import ArtemisConfig

    fmt, path, samples = read_samples(args.data, RSOT_FORMATS, args.limit)
    samples = [s for s in samples if s.caption]
    if not samples:
        raise AnnotationError(f"{path}: no record has a description (object_description / caption) to refer by")
    model_dir = resolve_model_dir(args.model)
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir} has no config.json; pass a directory written by save_pretrained")
    try:
        config = ArtemisConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"no Artemis config in {model_dir}: {error}") from error
    require_frames_layout(config)  # before loading the weights
    model = ArtemisModel.from_pretrained(model_dir)
    options = _boxout_options(args)

    def predict(sample: Any) -> dict[str, Any]:
        reader, _positions = open_sample(sample, whole_video=False)
        try:
            track = model.track_with_llm(reader, expression=sample.caption, **options)
        finally:
            close_reader(reader)
        return {**_track_record(track), "expression": sample.caption}

    settings = {
        "task": "rsot",
        "model": str(model_dir.resolve()),
        "data": f"{fmt}:{path.resolve()}",
        "boxout": _boxout_settings(args),
    }
    run = run_predictions(
        samples, predict, args.out, sample_id=lambda s: s.sample_id, settings=settings, description="rsot"
    )
    notes = [
        f"{len(run.records)} sequence(s) of {fmt}:{path}; model {model_dir}; the record's description is the "
        f"referring expression; convention {args.convention}.",
        "Clips of 8 frames, stride 7: the first clip gets the expression, later clips the last predicted box "
        "(the expression again while no box has been found).",
    ]
    name = model_dir.name
    return _score_and_report(args, samples, run.records, name, f"RSOT evaluation: {name}", notes)
