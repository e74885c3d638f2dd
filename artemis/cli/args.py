"""Messages shared by the sub-commands."""

from __future__ import annotations

import sys

from artemis.model.loading import ModelCard


def announce_model(command: str, card: ModelCard) -> None:
    """Say once, on stderr, which model answers and what it was trained on."""
    print(f"artemis {command}: model {card.describe()}", file=sys.stderr)
