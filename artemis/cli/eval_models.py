"""``artemis eval synthref | reg``: run a model over a data set (resumably) and score what it wrote.

Also how every model-driven evaluation prints its results; ``sot`` and ``rsot`` live in
:mod:`artemis.cli.eval_sot`. The work is done by the library (:mod:`artemis.eval.synthref`,
:mod:`artemis.eval.reg`, :mod:`artemis.eval.samples`) through :func:`artemis.eval.runner.run_predictions`,
so a killed run resumes where it stopped; this module parses arguments, loads the model and prints.

Every model-driven evaluation can run sharded over several processes with no option of its own:
``torchrun --nproc-per-node N -m artemis.cli eval synthref ...`` sets ``RANK`` and ``WORLD_SIZE``, each
process predicts every N-th sample, and rank 0 merges the shards and prints the scores
(:class:`artemis.eval.runner.Shard`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from artemis.api import ArtemisModel
from artemis.data.synthref_writer import PAIRS_FILE
from artemis.eval.reg import REG_FORMATS, caption_samples, run_reg
from artemis.eval.runner import Shard
from artemis.eval.samples import read_samples
from artemis.eval.synthref import load_targets, read_pair_records, run_pairs
from artemis.eval.synthref_run import SYNTHREF_KEYS, run_synthref
from artemis.model.loading import DEFAULT_MODEL, resolve_model_dir


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
    synthref.add_argument(
        "--prompt",
        choices=("box", "mask"),
        default="box",
        help="give each target by its box, or by its mask (its visible pixels on the same frame)",
    )
    synthref.add_argument(
        "--prompt-frame",
        choices=("key", "overlap"),
        default="key",
        help="give each target on its key frame, or on the frame where its box covers the most of another object",
    )
    synthref.add_argument("--max-new-tokens", type=int, default=64, help="generation length")
    synthref.add_argument(
        "--selector",
        choices=("kmeans", "uniform", "random"),
        help="override the model's token selector at inference (the selector ablation)",
    )
    synthref.add_argument(
        "--task",
        choices=("describe", "pairs"),
        default="describe",
        help="describe: attribute accuracy of descriptions; pairs: questions about two objects "
        "(videoref45k_pairs.json; pair_accuracy, chance, box-swap control)",
    )
    synthref.add_argument("--json", action="store_true", help="print the metrics as JSON")
    synthref.set_defaults(func=run_synthref_command)

    reg = commands.add_parser("reg", help="Video-REG: describe each record's target, score with pycocoevalcap")
    reg.add_argument("--model", default=DEFAULT_MODEL, help=f"model directory or bundled name ({DEFAULT_MODEL})")
    reg.add_argument("--data", required=True, help=f"FORMAT:FILE, FORMAT one of {', '.join(REG_FORMATS)}")
    reg.add_argument("--out", type=Path, default=Path("eval-reg"), help="output directory")
    reg.add_argument("--limit", type=int, help="only the first N records")
    reg.add_argument("--track", action="store_true", help="run the model's tracker even where boxes are given")
    reg.add_argument("--max-new-tokens", type=int, default=64, help="generation length")
    reg.add_argument("--spice-jars", type=Path, help="directory with the Stanford CoreNLP 3.6.0 jars (SPICE)")
    reg.add_argument("--bertscore-model", type=Path, help="local model directory for BERTScore")
    reg.add_argument("--json", action="store_true", help="print the corpus scores as JSON")
    reg.set_defaults(func=run_reg_command)


def print_result(args: argparse.Namespace, result: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> int:
    """Print the scores (a rank other than 0 of a sharded run has none: rank 0 prints them)."""
    if result is None:
        return 0
    shown = {k: result[k] for k in keys if k in result} if keys else result
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print_table(shown)
    return 0


# --- synthref -------------------------------------------------------------------------------------------


def run_synthref_command(args: argparse.Namespace) -> int:
    """``artemis eval synthref``."""
    if args.task == "pairs":
        return run_pairs_command(args)
    targets, vocabulary = load_targets(args.data)  # check the data before the (slower) model load
    shard = Shard.from_env()
    if args.limit:
        targets = targets[: args.limit]
    model_dir, model = _selected_model(args)
    metrics = run_synthref(
        model,
        targets,
        vocabulary,
        args.out,
        model_dir=model_dir,
        data=args.data,
        seed=args.seed,
        use_tracker=args.track,
        controls=not args.no_controls,
        prompt=args.prompt,
        prompt_frame=args.prompt_frame,
        max_new_tokens=args.max_new_tokens,
        shard=shard,
    )
    return print_result(args, metrics, SYNTHREF_KEYS)


def _selected_model(args: argparse.Namespace) -> tuple[Path, ArtemisModel]:
    """The model ``--model`` names, with the ``--selector`` switched in at inference when one is given."""
    model_dir = resolve_model_dir(args.model)
    model = ArtemisModel.from_pretrained(model_dir)
    if args.selector:
        model.set_selector(args.selector)
    return model_dir, model


def run_pairs_command(args: argparse.Namespace) -> int:
    """``artemis eval synthref --task pairs``."""
    records = read_pair_records(Path(args.data) / PAIRS_FILE)  # check the data before the (slower) model load
    if args.limit:
        records = records[: args.limit]
    shard = Shard.from_env()
    model_dir, model = _selected_model(args)
    metrics = run_pairs(
        model,
        records,
        args.out,
        model_dir=model_dir,
        data=args.data,
        use_tracker=args.track,
        controls=not args.no_controls,
        max_new_tokens=args.max_new_tokens,
        shard=shard,
    )
    if metrics is None:
        return 0
    return print_result(args, metrics)  # PAIR_KEYS and the accuracy of each kind


# --- reg ------------------------------------------------------------------------------------------------


def run_reg_command(args: argparse.Namespace) -> int:
    """``artemis eval reg``."""
    fmt, path, samples = read_samples(args.data, REG_FORMATS, args.limit)
    samples = caption_samples(samples, path)  # check the data before the (slower) model load
    shard = Shard.from_env()
    model_dir = resolve_model_dir(args.model)
    model = ArtemisModel.from_pretrained(model_dir)
    result = run_reg(
        model,
        samples,
        args.out,
        model_dir=model_dir,
        data_format=fmt,
        data_path=path,
        use_tracker=args.track,
        max_new_tokens=args.max_new_tokens,
        spice_jar_dir=args.spice_jars,
        bertscore_model=args.bertscore_model,
        shard=shard,
    )
    return print_result(args, None if result is None else result.scores)
