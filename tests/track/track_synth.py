"""Helpers for the tracking tests: synthetic square videos, an exact oracle tracker, the video reader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from artemis.eval.tracking import score_sequence
from artemis.video import VideoReader

SIZE = (120, 160)  # (H, W)
SIDE = 20


def square_boxes(num_frames: int, *, start=(20, 40), velocity=(2, 1)) -> np.ndarray:
    """Exact pixel xyxy boxes of a square moving at a constant integer velocity: (T, 4)."""
    t = np.arange(num_frames)[:, None]
    top_left = np.asarray(start) + t * np.asarray(velocity)  # (T, 2) as (x, y)
    return np.concatenate([top_left, top_left + SIDE], axis=1).astype(np.float64)


def square_frames(boxes: np.ndarray, *, hidden: set[int] = frozenset(), size=SIZE) -> np.ndarray:
    """A bright textured square on a dark background at each box: (T, H, W, 3) uint8 RGB."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 40, size=(*size, 3), dtype=np.uint8)  # faint noise: a static scene
    patch = np.full((SIDE, SIDE, 3), 230, dtype=np.uint8)
    patch[5:15, 5:15] = (255, 80, 40)  # an inner mark gives the correlation filter something to lock on
    frames = np.repeat(background[None], len(boxes), axis=0)
    for index, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        if index not in hidden:
            frames[index, y1:y2, x1:x2] = patch
    return frames


def write_folder(frames: np.ndarray, folder: Path) -> Path:
    """Write RGB frames as lossless PNGs named 00000.png, 00001.png, ... ."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


class OracleTracker:
    """Finds the bright square by thresholding: exact, so tests can check coordinate mapping alone."""

    def init(self, frame: np.ndarray, box_xyxy: np.ndarray) -> None:
        self.initial = np.asarray(box_xyxy, dtype=np.float64)

    def update(self, frame: np.ndarray) -> tuple[np.ndarray | None, float]:
        ys, xs = np.nonzero(frame.min(axis=2) > 150)
        if xs.size == 0:
            return None, 0.0
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64), 1.0


def open_reader(source: Path) -> VideoReader:
    """The project's VideoReader on a file or frame folder."""
    return VideoReader(source)


def success_auc(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> float:
    """Success AUC of 1-based xywh boxes under the LaSOT toolkit's protocol."""
    return float(score_sequence(pred_xywh, gt_xywh, convention="lasot").success_auc)
