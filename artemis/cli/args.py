"""Argument types and messages shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys

from artemis.boxes import parse_box_arg
from artemis.errors import BoxError
from artemis.model.loading import ModelCard


def box(text: str) -> tuple[float, float, float, float]:
    """``--box X1,Y1,X2,Y2``; a malformed value names the expected form (argparse shows the message)."""
    try:
        return parse_box_arg(text)
    except BoxError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def announce_model(command: str, card: ModelCard) -> None:
    """Say once, on stderr, which model answers and what it was trained on."""
    print(f"artemis {command}: model {card.describe()}", file=sys.stderr)
