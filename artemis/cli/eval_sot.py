"""``artemis eval sot | rsot``: track every sequence of a data set, then score it with the one-pass protocol.

``artemis eval sot --tracker opencv-csrt`` scores a tracker (``--data synthref:SPLIT_DIR`` on a SynthRef
split, each target from its first visible box); ``artemis eval sot --model DIR`` scores a
model's own box output (Elysium), which needs a model trained with ``tasks: [describe, boxes]``. RSOT (a
referring expression -> a box on every frame) always needs box output. The work is done by
:mod:`artemis.eval.sot`; this module parses arguments, checks the model's config before loading its
weights, loads it and prints the scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artemis.api import ArtemisModel
from artemis.cli.eval_models import print_result
from artemis.cli.track import VIEWS_HELP
from artemis.errors import ConfigError
from artemis.eval.runner import Shard
from artemis.eval.samples import read_samples
from artemis.eval.sot import (
    RSOT_FORMATS,
    SOT_FORMATS,
    TRACKER_CHOICES,
    BoxOutOptions,
    check_tracker,
    described_samples,
    require_box_output,
    run_rsot,
    run_sot,
)
from artemis.eval.tracking import CONVENTIONS
from artemis.model.loading import resolve_model_dir
from artemis.track import DEFAULT_TRACKER, TRACKER_NAMES


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``artemis eval sot`` and ``artemis eval rsot``."""
    sot = commands.add_parser("sot", help="single-object tracking from the first frame's box (one-pass)")
    sot.add_argument("--tracker", help=f"score this tracker ({', '.join(TRACKER_CHOICES)})")
    sot.add_argument(
        "--model",
        help="score this model's own box output (a model directory or bundled name trained with "
        "tasks: [describe, boxes])",
    )
    _add_common(sot, SOT_FORMATS, "eval-sot")
    sot.set_defaults(func=run_sot_command)

    rsot = commands.add_parser(
        "rsot", help="referring SOT: the LLM writes the box of a described target on every frame"
    )
    rsot.add_argument("--model", required=True, help="model directory trained with tasks: [describe, boxes]")
    _add_common(rsot, RSOT_FORMATS, "eval-rsot")
    rsot.add_argument(
        "--track-found",
        action="store_true",
        help="track the target as SOT from the first box the expression's clip writes (the rest of that "
        "clip's answer is dropped)",
    )
    rsot.set_defaults(func=run_rsot_command)


def _add_common(parser: argparse.ArgumentParser, formats: tuple[str, ...], out: str) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help=f"FORMAT:PATH, FORMAT one of {', '.join(formats)}; synthref:SPLIT_DIR is a split folder written by "
        "artemis data synthref (each target from its first visible frame)",
    )
    parser.add_argument("--out", type=Path, default=Path(out), help="output directory")
    parser.add_argument("--limit", type=int, help="only the first N sequences (a rerun with more resumes)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="lasot", help="whose rules (default lasot)")
    parser.add_argument("--dataset", choices=("otb", "lasot"), help="toolkit branch for pytracking/got10k")
    parser.add_argument("--clip-length", type=int, help="box output: frames per clip (default 8)")
    parser.add_argument("--stride", type=int, help="box output: clip stride (default clip length - 1)")
    parser.add_argument("--max-new-tokens", type=int, help="box output: generation length per clip (default 24/frame)")
    parser.add_argument(
        "--clip-query",
        action="store_true",
        help="box output: each clip's frame selector looks for the box the clip before wrote, not the first one",
    )
    parser.add_argument(
        "--number-window",
        type=int,
        default=0,
        help="box output: write each box value as the mean of the values within K of the most likely one "
        "(default 0: greedy)",
    )
    parser.add_argument(
        "--views",
        type=int,
        default=1,
        help=f"box output: {VIEWS_HELP}",
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")


def _boxout_options(args: argparse.Namespace) -> BoxOutOptions:
    return BoxOutOptions(
        clip_length=args.clip_length,
        stride=args.stride,
        max_new_tokens=args.max_new_tokens,
        template=not args.clip_query,
        number_window=args.number_window,
        track_found=getattr(args, "track_found", False),  # rsot only
        views=args.views,
    )


def _sot_subject(args: argparse.Namespace) -> tuple[str | None, str | None, bool]:
    """``(tracker, model, deprecated)``: what ``artemis eval sot`` scores, from ``--tracker`` / ``--model``.

    ``--model NAME`` with a tracker's name (and no directory of that name) is the old spelling of
    ``--tracker NAME``; it still works for one release, with a notice (``deprecated``).
    """
    if args.tracker is not None and args.model is not None:
        raise ConfigError(
            f"--tracker {args.tracker} and --model {args.model} were both given; give one: --tracker NAME scores "
            "a tracker, --model DIR a model's own box output"
        )
    if args.tracker is None and args.model is None:
        raise ConfigError(
            f"nothing to score; give --tracker NAME ({', '.join(TRACKER_CHOICES)}) or --model DIR (a model "
            "trained with tasks: [describe, boxes])"
        )
    if args.model in TRACKER_NAMES and not Path(args.model).expanduser().is_dir():
        return args.model, None, True
    return args.tracker, args.model, False


def run_sot_command(args: argparse.Namespace) -> int:
    """``artemis eval sot``."""
    tracker, model_name, deprecated = _sot_subject(args)
    if tracker is not None:
        check_tracker(tracker)
    options = _boxout_options(args)  # bad values fail before the data and the model are read
    fmt, path, samples = read_samples(args.data, SOT_FORMATS, args.limit)
    shard = Shard.from_env()  # torchrun's RANK / WORLD_SIZE: this process takes every n-th sequence
    if tracker is not None:
        if deprecated:
            print(
                f"artemis eval sot: DeprecationWarning: --model {tracker} is deprecated for trackers; "
                f"use --tracker {tracker}",
                file=sys.stderr,
            )
        pipeline = model_dir = None
    else:
        model_dir = resolve_model_dir(model_name)
        hint = f"to score a tracker instead, pass --tracker {DEFAULT_TRACKER}"
        require_box_output(model_dir, str(model_name), hint=hint)  # before the weights are read
        pipeline = ArtemisModel.from_pretrained(model_dir)
    result = run_sot(
        samples,
        args.out,
        data_format=fmt,
        data_path=path,
        tracker=tracker,
        pipeline=pipeline,
        model_dir=model_dir,
        options=options,
        convention=args.convention,
        dataset=args.dataset,
        shard=shard,
    )
    return print_result(args, result)


def run_rsot_command(args: argparse.Namespace) -> int:
    """``artemis eval rsot``: the LLM tracks the target a record's description names, from frame 1 on."""
    options = _boxout_options(args)  # bad values fail before the data and the model are read
    fmt, path, samples = read_samples(args.data, RSOT_FORMATS, args.limit)
    samples = described_samples(samples, path)  # check the data before the (slower) model load
    shard = Shard.from_env()
    model_dir = resolve_model_dir(args.model)
    require_box_output(model_dir, args.model)  # before the weights are read
    model = ArtemisModel.from_pretrained(model_dir)
    result = run_rsot(
        model,
        samples,
        args.out,
        model_dir=model_dir,
        data_format=fmt,
        data_path=path,
        options=options,
        convention=args.convention,
        dataset=args.dataset,
        shard=shard,
    )
    return print_result(args, result)
