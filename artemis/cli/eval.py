"""``artemis eval``: score captions or tracking results from files, or run a model and score it.

``artemis eval captions --pred FILE.jsonl`` and ``artemis eval tracking --pred FILE|DIR --gt FILE|DIR``
score files; ``artemis eval synthref|reg`` (:mod:`artemis.cli.eval_models`) and ``artemis eval sot|rsot``
(:mod:`artemis.cli.eval_sot`) run a model or tracker over a data set first, resumably, with the library's
predictors (:mod:`artemis.eval.synthref_run`, :mod:`artemis.eval.reg`, :mod:`artemis.eval.sot`; see
:mod:`artemis.eval.runner`).
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

from artemis.cli import eval_models, eval_sot
from artemis.cli.eval_models import print_table
from artemis.errors import AnnotationError
from artemis.eval.sot import TRACKING_KEYS
from artemis.eval.tracking import CONVENTIONS, TrackingScores, read_absent_file, read_boxes_file, score_dataset
from artemis.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)


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
    eval_models.register(commands)
    eval_sot.register(commands)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


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
        print_table(scores.corpus)
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
        print_table(result)
    return 0
