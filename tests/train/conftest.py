"""Fixtures of the training tests: a small SynthRef split."""

from __future__ import annotations

from pathlib import Path

import pytest

from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split


@pytest.fixture(scope="session")
def synthref_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SynthRef with a 12-video train split (about 36 referring records) of 16 frames at 64x64."""
    root = tmp_path_factory.mktemp("synthref-train")
    generate_split(root, 12, seed=5, split="train", config=SynthRefConfig(width=64, height=64, num_frames=16))
    return root
