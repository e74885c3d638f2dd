"""Shared fixtures: the third-party reference folder and small generated inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``; tests that need it skip where it is absent (a user's checkout)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"reference material not found at {REFERENCE} (only present in the project workspace)")
    return REFERENCE


TINY_TEXTS = (
    "the red circle moves from left to right .",
    "a blue square stays still .",
    "the green triangle moves up .",
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Artemis checkpoint written with ``save_pretrained`` (safetensors + tokenizer)."""
    from artemis import ArtemisModel
    from artemis.model import build_tiny_model

    model, processor = build_tiny_model(TINY_TEXTS, seed=0)
    directory = tmp_path_factory.mktemp("tiny-artemis")
    ArtemisModel(model, processor).save_pretrained(directory)
    return directory
