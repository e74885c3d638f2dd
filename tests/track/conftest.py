"""Fixtures for the tracking tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from track_synth import square_boxes, square_frames, write_folder


@pytest.fixture()
def square_video(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 40-frame folder of PNGs showing a moving square, and its exact (40, 4) xyxy boxes."""
    boxes = square_boxes(40)
    return write_folder(square_frames(boxes), tmp_path / "square"), boxes
