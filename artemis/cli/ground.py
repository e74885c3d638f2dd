"""``artemis ground``: find the target a referring expression names and write its box on every frame.

artemis ground clip.mp4 --expression "the red circle" --out track.json --viz track.mp4

The model writes the boxes (Elysium RSOT; a model trained with ``tasks: [describe, boxes]``); the JSON is
that of ``artemis track`` with the box-output fields (``docs/box_output.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from artemis.cli.track import (
    add_box_model_arguments,
    check_outputs,
    generation_options,
    load_box_model,
    report_box_output,
    write_outputs,
)
from artemis.prompts import normalize_expression
from artemis.video import opened


def register(subparsers: Any) -> None:
    """Add the ``ground`` sub-command to the ``artemis`` parser."""
    parser = subparsers.add_parser(
        "ground",
        help="find the target a referring expression names and track it (the model writes the boxes)",
        description=(
            "The model finds the target --expression names and writes its box on every frame (Elysium RSOT). "
            "Writes the JSON of `artemis track` plus status, num_unparsed, num_invalid, texts, clips, asked, "
            "expression and unknown_words."
        ),
    )
    parser.add_argument("video", type=Path, help="video file or folder of frames")
    parser.add_argument("--expression", required=True, help='what to find, e.g. "the red circle"')
    parser.add_argument("--frame", type=int, default=0, help="0-based frame to start from (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: stdout)")
    parser.add_argument("--viz", type=Path, default=None, help="also write the video with the box drawn (.mp4/.gif)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_box_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``artemis ground`` with parsed ``args``; returns the exit code."""
    expression = normalize_expression(args.expression)  # an empty expression is one line before loading
    check_outputs(args)
    model = load_box_model(args, "ground")
    with opened(args.video) as reader:
        track = model.ground(reader, expression, args.frame, progress=not args.no_progress, **generation_options(args))
        report_box_output("ground", track)
        if track.unknown_words:
            words = ", ".join(repr(word) for word in track.unknown_words)
            print(f"artemis ground: the model does not know the words {words}; it answered anyway", file=sys.stderr)
        write_outputs(args, reader, track, "model", caption=expression)
    return 0
