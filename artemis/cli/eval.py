"""``artemis eval``: score captions or tracking results from files, or run a model and score it.

``artemis eval captions --pred FILE.jsonl`` and ``artemis eval tracking --pred FILE|DIR --gt FILE|DIR``
score files; ``artemis eval synthref|reg|sot`` run a model or tracker over a data set first (resumably,
see :mod:`artemis.eval.runner`); ``artemis eval rsot`` says which models can do it (none yet).
Errors in the inputs (a missing file, a malformed line, ids that do not match) are
:class:`artemis.errors.ArtemisError`s, which the dispatcher prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from artemis.errors import AnnotationError, ConfigError
from artemis.eval.tracking import CONVENTIONS, TrackingScores, read_absent_file, read_boxes_file, score_dataset
from artemis.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

TRACKING_KEYS = ("success_auc", "precision_20px", "norm_precision_020", "ao", "sr50")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``artemis eval`` and its sub-commands."""
    parser = subparsers.add_parser(
        "eval",
        help="score captions or tracking results",
        description="Score captions (pycocoevalcap) or tracking results (LaSOT / pytracking / got-10k rules).",
    )
    commands = parser.add_subparsers(dest="eval_command", metavar="TASK")
    parser.set_defaults(func=lambda args: _usage(parser))

    captions = commands.add_parser("captions", help="BLEU/METEOR/ROUGE_L/CIDEr (+SPICE, BERTScore) of captions")
    captions.add_argument("--pred", required=True, type=Path, help='JSONL: {"id", "prediction", "references": [...]}')
    captions.add_argument("--refs", type=Path, help='optional JSONL of {"id", "references"} (else taken from --pred)')
    captions.add_argument("--spice-jars", type=Path, help="directory with the Stanford CoreNLP 3.6.0 jars (SPICE)")
    captions.add_argument("--bertscore-model", type=Path, help="local model directory for BERTScore")
    captions.add_argument("--out", type=Path, help="write metrics.json, per_sample.jsonl and report.md here")
    captions.add_argument("--json", action="store_true", help="print the corpus scores as JSON")
    captions.set_defaults(func=run_captions)

    tracking = commands.add_parser("tracking", help="success AUC, precision, normalised precision, AO, SR50")
    tracking.add_argument("--pred", required=True, type=Path, help="predicted x,y,w,h file, or a directory")
    tracking.add_argument("--gt", required=True, type=Path, help="ground-truth file, or a directory (by file stem)")
    tracking.add_argument("--absent", type=Path, help="LaSOT absent flags (one 0/1 a line) for a single sequence")
    tracking.add_argument("--convention", choices=CONVENTIONS, default="lasot", help="whose rules (default lasot)")
    tracking.add_argument(
        "--dataset",
        choices=("otb", "lasot"),
        help="toolkit branch for pytracking/got10k (default: lasot with absent flags)",
    )
    tracking.add_argument("--out", type=Path, help="write metrics.json, report.md and the two PNG plots here")
    tracking.add_argument("--json", action="store_true", help="print the scores as JSON")
    tracking.set_defaults(func=run_tracking)

    # Model-driven evaluations: each runs a model over a data set with the resumable runner
    # (artemis.eval.runner), then scores what it wrote to predictions.jsonl.
    _register_model_commands(commands)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _print_table(scores: dict[str, Any]) -> None:
    width = max(len(k) for k in scores)
    for key, value in scores.items():
        print(f"{key:<{width}}  {value:.6f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


# --- captions ---------------------------------------------------------------------------------------


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise AnnotationError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or any(key not in record for key in required):
                keys = ", ".join(f'"{k}"' for k in required)
                raise AnnotationError(f"{path}, line {number}: expected a JSON object with {keys}")
            record["_line"] = number
            records.append(record)
    return records


def _by_id(records: list[dict[str, Any]], path: Path, field: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for record in records:
        key = str(record["id"])
        if key in result:
            raise AnnotationError(f"{path}, line {record['_line']}: id {key!r} appears twice")
        value = record[field]
        if field == "references":
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise AnnotationError(f"{path}, line {record['_line']}: references must be a non-empty list of strings")
        elif not isinstance(value, str):
            raise AnnotationError(f"{path}, line {record['_line']}: prediction must be a string")
        result[key] = value
    return result


def run_captions(args: argparse.Namespace) -> int:
    """``artemis eval captions``."""
    from artemis.eval.captions import score_captions

    pred_records = _read_jsonl(args.pred, ("id", "prediction") if args.refs else ("id", "prediction", "references"))
    predictions = _by_id(pred_records, args.pred, "prediction")
    if args.refs:
        references = _by_id(_read_jsonl(args.refs, ("id", "references")), args.refs, "references")
    else:
        references = _by_id(pred_records, args.pred, "references")
    scores = score_captions(
        predictions, references, spice_jar_dir=args.spice_jars, bertscore_model=args.bertscore_model
    )
    if args.out:
        from artemis.eval.report import write_report

        summary = {"num_samples": len(predictions), "corpus": scores.corpus, "skipped": scores.skipped}
        write_json_atomic(args.out / "metrics.json", summary)
        rows = [
            json.dumps({"id": i, "prediction": predictions[i], "references": references[i], **scores.per_sample[i]})
            for i in predictions
        ]
        write_text_atomic(args.out / "per_sample.jsonl", "\n".join(rows) + "\n")
        notes = [
            f"{len(predictions)} samples from {args.pred}; pycocoevalcap with its PTBTokenizer; no length filtering.",
            *(f"{name} skipped: {reason}" for name, reason in scores.skipped.items()),
        ]
        write_report(args.out / "report.md", "Caption evaluation", scores.corpus, notes)
    if args.json:
        print(json.dumps(scores.corpus, indent=2))
    else:
        _print_table(scores.corpus)
    return 0


# --- tracking ---------------------------------------------------------------------------------------


def _sequence_name(path: Path) -> str:
    name = path.name[: -len(".txt")] if path.name.endswith(".txt") else path.stem
    return name[: -len(".groundtruth")] if name.endswith(".groundtruth") else name


def _ground_truth_sequences(gt_dir: Path) -> dict[str, tuple[Path, list[Path]]]:
    """``{sequence: (groundtruth file, absent-flag files)}`` from the layouts LaSOT data come in.

    ``<seq>.txt`` or ``<seq>.groundtruth.txt`` with ``<seq>.absent.txt`` or ``absent/<seq>.txt`` (the
    LaSOT toolkit's ``annos/``), or ``<seq>/groundtruth.txt`` with ``absent.txt`` or
    ``full_occlusion.txt`` + ``out_of_view.txt`` (the LaSOT data set; absent = either flag).
    """
    sequences: dict[str, tuple[Path, list[Path]]] = {}
    for path in sorted(gt_dir.glob("*.txt")):
        if path.name.endswith(".absent.txt"):
            continue
        name = _sequence_name(path)
        flags = [p for p in (gt_dir / f"{name}.absent.txt", gt_dir / "absent" / f"{name}.txt") if p.is_file()]
        sequences[name] = (path, flags[:1])
    for folder in sorted(p for p in gt_dir.iterdir() if p.is_dir()):
        gt_file = folder / "groundtruth.txt"
        if gt_file.is_file():
            absent = folder / "absent.txt"
            flags = [absent] if absent.is_file() else [folder / "full_occlusion.txt", folder / "out_of_view.txt"]
            sequences[folder.name] = (gt_file, [p for p in flags if p.is_file()])
    if not sequences:
        raise AnnotationError(f"no ground-truth files (*.txt or */groundtruth.txt) found in {gt_dir}")
    return sequences


def _absent_flags(files: list[Path]):
    flags = None
    for path in files:
        current = read_absent_file(path)
        flags = current if flags is None else flags | current
    return flags


def _load_tracking(args: argparse.Namespace) -> tuple[str, list[tuple[str, Any, Any, Any]]]:
    if args.pred.is_dir() != args.gt.is_dir():
        raise AnnotationError("--pred and --gt must both be files or both be directories")
    if not args.pred.is_dir():
        gt = read_boxes_file(args.gt)
        pred = read_boxes_file(args.pred)
        absent = read_absent_file(args.absent) if args.absent else None
        return args.pred.stem, [(args.pred.stem, pred, gt, absent)]
    if args.absent:
        raise AnnotationError("--absent is for a single sequence; in a directory, put <seq>.absent.txt next to the GT")
    sequences = _ground_truth_sequences(args.gt)
    predictions = {_sequence_name(p): p for p in args.pred.glob("*.txt")}
    missing = [name for name in sequences if name not in predictions]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise AnnotationError(f"no prediction in {args.pred} for sequence(s) {shown} (expected <seq>.txt)")
    extra = sorted(set(predictions) - set(sequences))
    if extra:
        logger.warning("ignoring %d prediction file(s) without ground truth: %s", len(extra), ", ".join(extra[:5]))
    loaded = [
        (name, read_boxes_file(predictions[name]), read_boxes_file(gt), _absent_flags(flags))
        for name, (gt, flags) in sequences.items()
    ]
    return args.pred.name, loaded


def run_tracking(args: argparse.Namespace) -> int:
    """``artemis eval tracking``."""
    name, loaded = _load_tracking(args)
    scores: TrackingScores = score_dataset(
        [(pred, gt, absent) for _, pred, gt, absent in loaded], args.convention, dataset=args.dataset
    )
    result = {key: scores.to_dict()[key] for key in TRACKING_KEYS}
    if args.out:
        from artemis.eval.report import write_report, write_tracking_plots

        per_sequence = {}
        if len(loaded) > 1:
            for seq, pred, gt, absent in loaded:
                single = score_dataset([(pred, gt, absent)], args.convention, dataset=args.dataset)
                per_sequence[seq] = single.to_dict()
        summary = {
            **result,
            "convention": args.convention,
            "num_sequences": len(loaded),
            "num_frames": scores.num_frames,
            "success_curve": scores.success_curve.tolist(),
            "precision_curve": scores.precision_curve.tolist(),
            "norm_precision_curve": scores.norm_precision_curve.tolist(),
            "per_sequence": per_sequence,
        }
        write_json_atomic(args.out / "metrics.json", summary)
        plots = write_tracking_plots({name: scores}, args.out)
        notes = [
            f"Convention: {args.convention} (see docs/evaluation.md); {len(loaded)} sequence(s), "
            f"{scores.num_frames} frames.",
            "One-pass evaluation: frame 1 set to the ground truth; success AUC over 21 IoU thresholds "
            "(IoU > t); precision at 20 px; normalised precision at 0.20.",
        ]
        write_report(args.out / "report.md", f"Tracking evaluation: {name}", result, notes, images=plots)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


# --- model-driven evaluations ---------------------------------------------------------------------------


def _register_model_commands(commands: argparse._SubParsersAction) -> None:
    synthref = commands.add_parser(
        "synthref",
        help="attribute accuracy of a model's descriptions on a SynthRef split (+ box-swap/blind controls)",
    )
    synthref.add_argument("--model", required=True, help="model directory (or bundled model name)")
    synthref.add_argument("--data", required=True, type=Path, help="SynthRef split folder (has manifest.json)")
    synthref.add_argument("--out", type=Path, default=Path("eval-synthref"), help="output directory")
    synthref.add_argument("--limit", type=int, help="only the first N objects (a rerun with more resumes)")
    synthref.add_argument("--seed", type=int, default=0, help="seed of the controls' box choices")
    synthref.add_argument("--track", action="store_true", help="run the model's tracker instead of exact boxes")
    synthref.add_argument("--no-controls", action="store_true", help="skip the box-swap and box-blind controls")
    synthref.add_argument("--max-new-tokens", type=int, default=64, help="generation length")
    synthref.add_argument("--json", action="store_true", help="print the metrics as JSON")
    synthref.set_defaults(func=run_synthref)

    reg = commands.add_parser("reg", help="Video-REG: describe each record's target, score with pycocoevalcap")
    reg.add_argument("--model", required=True, help="model directory (or bundled model name)")
    reg.add_argument("--data", required=True, help="FORMAT:FILE, FORMAT one of videoref45k, elysium, hcstvg")
    reg.add_argument("--out", type=Path, default=Path("eval-reg"), help="output directory")
    reg.add_argument("--limit", type=int, help="only the first N records")
    reg.add_argument("--track", action="store_true", help="run the model's tracker even where boxes are given")
    reg.add_argument("--max-new-tokens", type=int, default=64, help="generation length")
    reg.add_argument("--spice-jars", type=Path, help="directory with the Stanford CoreNLP 3.6.0 jars (SPICE)")
    reg.add_argument("--bertscore-model", type=Path, help="local model directory for BERTScore")
    reg.add_argument("--json", action="store_true", help="print the corpus scores as JSON")
    reg.set_defaults(func=run_reg)

    sot = commands.add_parser("sot", help="single-object tracking from the first frame's box (one-pass)")
    sot.add_argument(
        "--model", required=True, help="tracker name (opencv-csrt, opencv-kcf, opencv-mil) or model directory"
    )
    sot.add_argument("--data", required=True, help="FORMAT:PATH, FORMAT one of lasot, otb, elysium, videoref45k")
    sot.add_argument("--out", type=Path, default=Path("eval-sot"), help="output directory")
    sot.add_argument("--limit", type=int, help="only the first N sequences")
    sot.add_argument("--convention", choices=CONVENTIONS, default="lasot", help="whose rules (default lasot)")
    sot.add_argument("--dataset", choices=("otb", "lasot"), help="toolkit branch for pytracking/got10k")
    sot.add_argument("--json", action="store_true", help="print the scores as JSON")
    sot.set_defaults(func=run_sot)

    rsot = commands.add_parser("rsot", help="referring SOT (expression -> boxes): no artemis model can do it yet")
    # The usual options are accepted so a scripted call gets the explanation, not a usage error.
    for option in ("--model", "--data", "--out"):
        rsot.add_argument(option, help=argparse.SUPPRESS)
    rsot.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    rsot.set_defaults(func=run_rsot)


def _split_data_arg(text: str, allowed: tuple[str, ...]) -> tuple[str, Path]:
    from artemis.data.formats import get_format

    name, sep, path = text.partition(":")
    if not sep or not path:
        raise AnnotationError(f"--data {text!r}: expected FORMAT:PATH with FORMAT one of {', '.join(allowed)}")
    if name not in allowed:
        get_format(name)  # an unknown name: the error lists every format
        raise AnnotationError(f"--data format {name!r} cannot be used here; expected one of {', '.join(allowed)}")
    if not Path(path).exists():
        raise FileNotFoundError(f"--data {path}: no such file or directory")
    return name, Path(path)


def _read_samples(text: str, allowed: tuple[str, ...], limit: int | None) -> tuple[str, Path, list]:
    from artemis.data.formats import read

    name, path = _split_data_arg(text, allowed)
    samples = [s for s in read(name, path) if s.has_boxes]
    if not samples:
        raise AnnotationError(f"{path}: no records with boxes in format {name}")
    return name, path, samples[:limit] if limit else samples


def _finish(args: argparse.Namespace, result: dict[str, Any], keys: tuple[str, ...] | None = None) -> int:
    shown = {k: result[k] for k in keys} if keys else result
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        _print_table(shown)
    return 0


# --- synthref -------------------------------------------------------------------------------------------

SYNTHREF_KEYS = (
    "joint_accuracy",
    "color_accuracy",
    "shape_accuracy",
    "motion_accuracy",
    "swap_joint_accuracy",
    "blind_joint_accuracy",
    "num_samples",
    "num_swap",
    "num_blind",
    "num_unparsed",
)


def run_synthref(args: argparse.Namespace) -> int:
    """``artemis eval synthref``."""
    from artemis.api import ArtemisModel, resolve_model_dir
    from artemis.eval.runner import finish_run, run_predictions
    from artemis.eval.synthref import SynthRefPredictor, chance_joint_accuracy, load_targets, synthref_metrics

    targets, vocabulary = load_targets(args.data)  # check the data before the (slower) model load
    model_dir = resolve_model_dir(args.model)
    if args.limit:
        targets = targets[: args.limit]
    model = ArtemisModel.from_pretrained(model_dir)
    predictor = SynthRefPredictor(
        model,
        seed=args.seed,
        use_tracker=args.track,
        controls=not args.no_controls,
        generation={"max_new_tokens": args.max_new_tokens},
    )
    settings = {
        "task": "synthref",
        "model": str(model_dir.resolve()),
        "data": str(Path(args.data).resolve()),
        "seed": args.seed,
        "track": args.track,
        "controls": not args.no_controls,
        "max_new_tokens": args.max_new_tokens,
    }
    run = run_predictions(
        targets, predictor, args.out, sample_id=lambda t: t.sample_id, settings=settings, description="synthref"
    )
    metrics = synthref_metrics(run.records, vocabulary)
    chance = chance_joint_accuracy(vocabulary)
    notes = [
        f"{metrics['num_samples']} objects of {args.data}; model {model_dir}.",
        "Boxes: "
        + (
            f"the model's tracker ({model.tracker}) from the exact key-frame box."
            if args.track
            else "the exact key-frame box, with the exact per-frame boxes as the track (the tracker is not measured)."
        ),
        "A description is parsed into colour/shape/motion (artemis.eval.synthref); an attribute that cannot be "
        "read unambiguously counts as wrong. Joint = all three right.",
        "box-swap: another object's box on the same video; scored against that object's labels.",
        f"box-blind: a random box of the target's size overlapping no object (IoU <= 0.1), held still; scored "
        f"against the target's labels. Chance joint accuracy is {chance:.4f}.",
    ]
    finish_run(args.out, "SynthRef attribute evaluation", metrics, notes, extra={"chance_joint_accuracy": chance})
    return _finish(args, metrics, SYNTHREF_KEYS)


# --- frames of a record ---------------------------------------------------------------------------------


def _open_sample(sample: Any, *, whole_video: bool) -> tuple[Any, list[int]]:
    """A reader for a record and the reader index of each annotated frame.

    With ``whole_video`` a video file is read whole (the model sees every frame, boxes sit at their frame
    ids); otherwise, and for records given as image lists, only the annotated frames are read, in order.
    """
    from artemis.errors import VideoError
    from artemis.track import ArrayVideo
    from artemis.video import VideoReader

    if sample.video is not None:
        reader = VideoReader(sample.resolve(sample.video))
        if whole_video or sample.frame_ids == list(range(len(sample.frame_ids))):
            return reader, list(sample.frame_ids)
        with reader:
            frames = reader.get_frames(sample.frame_ids)  # (T, H, W, 3)
        return ArrayVideo(frames), list(range(len(sample.frame_ids)))
    if sample.frame_paths:
        import cv2

        frames = []
        for rel in sample.frame_paths:
            image = cv2.imread(str(sample.resolve(rel)), cv2.IMREAD_COLOR)
            if image is None:
                raise VideoError(f"record {sample.sample_id}: cannot read frame {sample.resolve(rel)}")
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        return ArrayVideo(frames), list(range(len(frames)))
    raise VideoError(f"record {sample.sample_id} has no video and no frame paths; it cannot be run")


def _close(reader: Any) -> None:
    if hasattr(reader, "close"):
        reader.close()


# --- reg ------------------------------------------------------------------------------------------------


def run_reg(args: argparse.Namespace) -> int:
    """``artemis eval reg``."""
    from artemis.api import ArtemisModel, resolve_model_dir
    from artemis.eval.captions import score_captions
    from artemis.eval.runner import finish_run, run_predictions
    from artemis.track import Track

    fmt, path, samples = _read_samples(args.data, ("videoref45k", "elysium", "hcstvg"), args.limit)
    samples = [s for s in samples if s.caption or s.answer]
    if not samples:
        raise AnnotationError(f"{path}: no record has a caption to compare with")
    model_dir = resolve_model_dir(args.model)
    model = ArtemisModel.from_pretrained(model_dir)

    def predict(sample: Any) -> dict[str, Any]:
        reader, positions = _open_sample(sample, whole_video=True)
        try:
            key = positions[sample.key_index]
            boxes: list[Any] = [None] * reader.num_frames
            for position, box, seen in zip(positions, sample.boxes, sample.visible, strict=True):
                boxes[position] = box if seen else None
            # The record's boxes are the track where it has more than the key frame's; else the tracker runs.
            given = sum(b is not None for b in boxes) > 1 and not args.track
            track = Track.from_boxes(boxes, key_frame=key) if given else None
            text = model.describe(reader, sample.key_box, key, track=track, max_new_tokens=args.max_new_tokens).text
        finally:
            _close(reader)
        return {"prediction": text, "references": [sample.caption or sample.answer], "given_track": given}

    settings = {
        "task": "reg",
        "model": str(model_dir.resolve()),
        "data": f"{fmt}:{path.resolve()}",
        "track": args.track,
        "max_new_tokens": args.max_new_tokens,
    }
    run = run_predictions(
        samples, predict, args.out, sample_id=lambda s: s.sample_id, settings=settings, description="reg"
    )
    predictions = {r["id"]: r["prediction"] for r in run.records}
    references = {r["id"]: r["references"] for r in run.records}
    scores = score_captions(
        predictions, references, spice_jar_dir=args.spice_jars, bertscore_model=args.bertscore_model
    )
    notes = [
        f"{len(predictions)} records of {fmt}:{path}; model {model_dir}; question "
        "'What is the <region> doing in this video?' from the record's key-frame box.",
        "Track: the record's boxes where it has more than the key frame's, else the model's tracker.",
        "pycocoevalcap with its PTBTokenizer; no length filtering.",
        *(f"{name} skipped: {reason}" for name, reason in scores.skipped.items()),
    ]
    finish_run(
        args.out,
        "Video-REG evaluation",
        scores.corpus,
        notes,
        extra={"num_samples": len(predictions), "skipped": scores.skipped},
    )
    return _finish(args, scores.corpus)


# --- sot ------------------------------------------------------------------------------------------------


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


def run_sot(args: argparse.Namespace) -> int:
    """``artemis eval sot``."""
    import numpy as np

    from artemis.boxes import xyxy_to_otb
    from artemis.eval.report import write_tracking_plots
    from artemis.eval.runner import finish_run, run_predictions
    from artemis.track import TRACKER_NAMES, track_video

    fmt, path, samples = _read_samples(args.data, ("lasot", "otb", "elysium", "videoref45k"), args.limit)
    if args.model in TRACKER_NAMES:
        if args.model == "given":
            raise AnnotationError("--model given would score the ground truth against itself; name a real tracker")
        name, model, identity = args.model, None, args.model
    else:
        from artemis.api import ArtemisModel, resolve_model_dir

        model_dir = resolve_model_dir(args.model)
        model = ArtemisModel.from_pretrained(model_dir)
        name, identity = model_dir.name, str(model_dir.resolve())

    def predict(sample: Any) -> dict[str, Any]:
        reader, _positions = _open_sample(sample, whole_video=False)
        try:
            start = next(i for i, b in enumerate(sample.boxes) if b is not None)  # frame 1 unless it is absent
            box = sample.boxes[start]
            track = model.track(reader, box, start) if model else track_video(reader, box, start, tracker=name)
        finally:
            _close(reader)
        pred = np.full((track.num_frames, 4), np.nan)
        seen = track.visible
        pred[seen] = xyxy_to_otb(track.boxes[seen])
        # Lost frames are stored as null and scored as NaN, so the toolkit's rule for invalid boxes applies.
        rows = [[float(v) for v in row] if ok else None for row, ok in zip(pred, seen, strict=True)]
        return {"boxes_xywh_1based": rows, "start_frame": start}

    settings = {"task": "sot", "model": identity, "data": f"{fmt}:{path.resolve()}"}
    run = run_predictions(
        samples, predict, args.out, sample_id=lambda s: s.sample_id, settings=settings, description="sot"
    )
    by_id = {s.sample_id: s for s in samples}
    sequences = []
    for record in run.records:
        gt, absent = _sequence_arrays(by_id[record["id"]])
        pred = np.array([row if row is not None else [np.nan] * 4 for row in record["boxes_xywh_1based"]])
        sequences.append((record["id"], pred, gt, absent if absent.any() else None))
    scores = score_dataset([(p, g, a) for _, p, g, a in sequences], args.convention, dataset=args.dataset)
    result = {key: scores.to_dict()[key] for key in TRACKING_KEYS}
    per_sequence = {
        seq: score_dataset([(p, g, a)], args.convention, dataset=args.dataset).to_dict() for seq, p, g, a in sequences
    }
    plots = write_tracking_plots({name: scores}, args.out)
    notes = [
        f"{len(sequences)} sequence(s) of {fmt}:{path}; tracker {name}; convention {args.convention}.",
        "One-pass evaluation: initialised from the first frame's ground-truth box, every frame predicted; "
        "frame 1 set to the ground truth when scoring.",
    ]
    extra = {
        "convention": args.convention,
        "tracker": name,
        "num_sequences": len(sequences),
        "num_frames": scores.num_frames,
        "success_curve": scores.success_curve.tolist(),
        "precision_curve": scores.precision_curve.tolist(),
        "norm_precision_curve": scores.norm_precision_curve.tolist(),
        "per_sequence": per_sequence,
    }
    finish_run(args.out, f"SOT evaluation: {name}", result, notes, extra=extra, images=plots)
    return _finish(args, result)


# --- rsot -----------------------------------------------------------------------------------------------


def run_rsot(args: argparse.Namespace) -> int:
    """``artemis eval rsot``: refused, because no artemis model outputs boxes."""
    raise ConfigError(
        "RSOT needs a model that outputs boxes from a referring expression (Elysium-style); Artemis models "
        "only output text, and artemis has no such model yet. Score another model's boxes with "
        "'artemis eval tracking', or run 'artemis eval sot' with a tracker"
    )
