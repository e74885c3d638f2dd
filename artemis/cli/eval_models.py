"""``artemis eval synthref | reg``: run a model over a data set (resumably) and score what it wrote.

Also the helpers every model-driven evaluation shares (``--data FORMAT:PATH``, opening a record's frames,
printing results); ``sot`` and ``rsot`` live in :mod:`artemis.cli.eval_sot`. Each run goes through
:func:`artemis.eval.runner.run_predictions`, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from artemis.cli.describe import DEFAULT_MODEL
from artemis.errors import AnnotationError

TRACKING_KEYS = ("success_auc", "precision_20px", "norm_precision_020", "ao", "sr50")


def print_table(scores: dict[str, Any]) -> None:
    width = max(len(k) for k in scores)
    for key, value in scores.items():
        print(f"{key:<{width}}  {value:.6f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``artemis eval synthref`` and ``artemis eval reg``."""
    synthref = commands.add_parser(
        "synthref",
        help="attribute accuracy of a model's descriptions on a SynthRef split (+ box-swap/blind controls)",
    )
    synthref.add_argument("--model", default=DEFAULT_MODEL, help=f"model directory or bundled name ({DEFAULT_MODEL})")
    synthref.add_argument("--data", required=True, type=Path, help="SynthRef split folder (has manifest.json)")
    synthref.add_argument("--out", type=Path, default=Path("eval-synthref"), help="output directory")
    synthref.add_argument("--limit", type=int, help="only the first N objects (a rerun with more resumes)")
    synthref.add_argument("--seed", type=int, default=0, help="seed of the controls' box choices")
    synthref.add_argument("--track", action="store_true", help="run the model's tracker instead of exact boxes")
    synthref.add_argument("--no-controls", action="store_true", help="skip the box-swap and box-blind controls")
    synthref.add_argument("--max-new-tokens", type=int, default=64, help="generation length")
    synthref.add_argument(
        "--selector",
        choices=("kmeans", "uniform", "random"),
        help="override the model's token selector at inference (the selector ablation)",
    )
    synthref.add_argument("--json", action="store_true", help="print the metrics as JSON")
    synthref.set_defaults(func=run_synthref)

    reg = commands.add_parser("reg", help="Video-REG: describe each record's target, score with pycocoevalcap")
    reg.add_argument("--model", default=DEFAULT_MODEL, help=f"model directory or bundled name ({DEFAULT_MODEL})")
    reg.add_argument("--data", required=True, help="FORMAT:FILE, FORMAT one of videoref45k, elysium, hcstvg")
    reg.add_argument("--out", type=Path, default=Path("eval-reg"), help="output directory")
    reg.add_argument("--limit", type=int, help="only the first N records")
    reg.add_argument("--track", action="store_true", help="run the model's tracker even where boxes are given")
    reg.add_argument("--max-new-tokens", type=int, default=64, help="generation length")
    reg.add_argument("--spice-jars", type=Path, help="directory with the Stanford CoreNLP 3.6.0 jars (SPICE)")
    reg.add_argument("--bertscore-model", type=Path, help="local model directory for BERTScore")
    reg.add_argument("--json", action="store_true", help="print the corpus scores as JSON")
    reg.set_defaults(func=run_reg)


def split_data_arg(text: str, allowed: tuple[str, ...]) -> tuple[str, Path]:
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


def read_samples(text: str, allowed: tuple[str, ...], limit: int | None) -> tuple[str, Path, list]:
    from artemis.data.formats import read

    name, path = split_data_arg(text, allowed)
    samples = [s for s in read(name, path) if s.has_boxes]
    if not samples:
        raise AnnotationError(f"{path}: no records with boxes in format {name}")
    return name, path, samples[:limit] if limit else samples


def print_result(args: argparse.Namespace, result: dict[str, Any], keys: tuple[str, ...] | None = None) -> int:
    shown = {k: result[k] for k in keys} if keys else result
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print_table(shown)
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
    if args.selector:
        model.set_selector(args.selector)
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
        "selector": model.config.selector,
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
    return print_result(args, metrics, SYNTHREF_KEYS)


# --- frames of a record ---------------------------------------------------------------------------------


def open_sample(sample: Any, *, whole_video: bool) -> tuple[Any, list[int]]:
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


def close_reader(reader: Any) -> None:
    if hasattr(reader, "close"):
        reader.close()


# --- reg ------------------------------------------------------------------------------------------------


def run_reg(args: argparse.Namespace) -> int:
    """``artemis eval reg``."""
    from artemis.api import ArtemisModel, resolve_model_dir
    from artemis.eval.captions import score_captions
    from artemis.eval.runner import finish_run, run_predictions
    from artemis.track import Track

    fmt, path, samples = read_samples(args.data, ("videoref45k", "elysium", "hcstvg"), args.limit)
    samples = [s for s in samples if s.caption or s.answer]
    if not samples:
        raise AnnotationError(f"{path}: no record has a caption to compare with")
    model_dir = resolve_model_dir(args.model)
    model = ArtemisModel.from_pretrained(model_dir)

    def predict(sample: Any) -> dict[str, Any]:
        reader, positions = open_sample(sample, whole_video=True)
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
            close_reader(reader)
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
    return print_result(args, scores.corpus)
