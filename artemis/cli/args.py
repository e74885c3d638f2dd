"""Messages and options shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys

from artemis.model.loading import ModelCard
from artemis.track import FAST_TRACKER


def announce_model(command: str, card: ModelCard) -> None:
    """Say once, on stderr, which model answers and what it was trained on."""
    print(f"artemis {command}: model {card.describe()}", file=sys.stderr)


def stride_arg(value: str) -> int | str:
    """``--stride``: an integer >= 1 or ``auto``."""
    if value == "auto":
        return value
    try:
        stride = int(value)
    except ValueError:
        stride = 0
    if stride < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a stride; expected an integer >= 1 or 'auto'")
    return stride


def add_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tracker``, ``--stride`` and ``--max-side`` of the commands that track for a model."""
    parser.add_argument("--tracker", default=FAST_TRACKER, help=f"tracker backend (default {FAST_TRACKER})")
    parser.add_argument(
        "--stride", type=stride_arg, default=None,
        help="track every K-th frame, or 'auto' (the model's default: 8, denser on videos under 192 frames)",
    )  # fmt: skip
    parser.add_argument("--max-side", type=int, help="track frames downscaled to PX (default 320; 0: full size)")


def tracker_settings(args: argparse.Namespace) -> dict:
    """``--stride`` / ``--max-side`` as model options; an option not given keeps the model's default."""
    settings: dict = {}
    if args.stride is not None:
        settings["track_stride"] = args.stride
    if args.max_side is not None:
        settings["track_max_side"] = args.max_side or None  # 0: track at full resolution
    return settings
