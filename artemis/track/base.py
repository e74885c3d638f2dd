"""The tracker protocol and the per-frame result of tracking one target through a video.

A :class:`Tracker` is a frame-by-frame single-object tracker: it is initialised on one frame with a pixel
``xyxy`` box and then asked, frame after frame, where the target went. :class:`Track` is what
:func:`artemis.track.track_video` returns: one box and one visibility flag per frame of the video.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from artemis.errors import AnnotationError, VideoError

__all__ = ["Track", "Tracker"]


@runtime_checkable
class Tracker(Protocol):
    """A single-object tracker fed one frame at a time.

    Frames are ``(H, W, 3)`` uint8 **RGB** arrays, all of the same size; boxes are pixel ``xyxy`` on
    that frame (float64, ``x2``/``y2`` exclusive, see :mod:`artemis.boxes`). A tracker is used for one
    pass in one direction; :func:`~artemis.track.track_video` creates a fresh one for the backward pass.
    """

    def init(self, frame: np.ndarray, box_xyxy: np.ndarray) -> None:
        """Start tracking the target inside ``box_xyxy`` (shape ``(4,)``) on ``frame``."""
        ...

    def update(self, frame: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Locate the target on the next frame.

        Returns:
            ``(box, score)``: the ``(4,)`` pixel ``xyxy`` box, or ``None`` when the tracker reports the
            target lost, and a confidence score (higher is surer; backends without one report 1.0 on
            success and 0.0 on failure). A tracker that lost the target must keep accepting frames, so
            it can find the target again.
        """
        ...


def _nan_boxes(num_frames: int) -> np.ndarray:
    return np.full((num_frames, 4), np.nan, dtype=np.float64)


@dataclass
class Track:
    """One target's box on every frame of a video.

    Attributes:
        boxes: ``(T, 4)`` float64 pixel ``xyxy``; NaN rows where the target is not visible or unknown.
        visible: ``(T,)`` bool; ``True`` exactly where ``boxes`` holds a box.
        key_frame: index of the frame the user's box was given on.
        num_frames: ``T``.
        fps: frames per second of the video (0.0 when unknown).
        width: frame width in pixels (0 when unknown).
        height: frame height in pixels (0 when unknown).
        scores: ``(T,)`` float64 tracker confidence on tracked frames, NaN elsewhere (interpolated or
            given frames); ``None`` when the boxes did not come from a tracker.
    """

    boxes: np.ndarray
    visible: np.ndarray
    key_frame: int
    num_frames: int
    fps: float = 0.0
    width: int = 0
    height: int = 0
    scores: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        if self.boxes.shape[0] != self.num_frames or self.visible.shape[0] != self.num_frames:
            raise ValueError(
                f"Track has num_frames={self.num_frames} but boxes of shape {self.boxes.shape} and visible of "
                f"shape {self.visible.shape}; expected ({self.num_frames}, 4) and ({self.num_frames},)"
            )
        if not 0 <= self.key_frame < max(self.num_frames, 1):
            raise ValueError(f"key_frame {self.key_frame} is outside 0..{self.num_frames - 1}")
        # One invariant instead of two sources of truth: a frame is visible iff it has a finite box.
        self.visible &= np.all(np.isfinite(self.boxes), axis=1)
        self.boxes[~self.visible] = np.nan
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(self.num_frames)

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_boxes(
        cls,
        boxes: Sequence[Sequence[float] | None] | np.ndarray,
        *,
        key_frame: int = 0,
        fps: float = 0.0,
        width: int = 0,
        height: int = 0,
    ) -> Track:
        """Build a track from annotated per-frame boxes (the ``given`` backend).

        Args:
            boxes: one pixel ``xyxy`` box per frame; an absent frame is ``[]``, ``None`` or a row of NaN
                (VideoRef45K's ``track_list`` writes ``[]``).
            key_frame: frame of the reference box.
            fps, width, height: video metadata to carry along.

        Raises:
            AnnotationError: if an entry is neither empty nor 4 numbers.
        """
        rows = _nan_boxes(len(boxes))
        for index, entry in enumerate(boxes):
            if entry is None or len(entry) == 0:
                continue
            values = np.asarray(entry, dtype=np.float64).reshape(-1)
            if values.shape != (4,):
                raise AnnotationError(
                    f"box of frame {index} is {list(values.tolist())}; expected [x1, y1, x2, y2] or [] when absent"
                )
            rows[index] = values
        visible = np.all(np.isfinite(rows), axis=1) & (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1])
        return cls(
            boxes=rows,
            visible=visible,
            key_frame=key_frame,
            num_frames=len(rows),
            fps=fps,
            width=width,
            height=height,
        )

    # --- access ---------------------------------------------------------------------------------------

    def boxes_at(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Boxes of the frames ``indices``: ``(N, 4)`` pixel ``xyxy``, NaN rows where not visible.

        Raises:
            VideoError: if an index is outside ``0..num_frames - 1``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if bad.size:
            raise VideoError(f"frame index {int(bad[0])} is outside the track; expected 0..{self.num_frames - 1}")
        return self.boxes[idx].copy()

    def visible_at(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Visibility flags ``(N,)`` of the frames ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.boxes_at(idx)  # same bounds check and message
        return self.visible[idx].copy()

    # --- serialisation --------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``boxes`` holds ``[x1, y1, x2, y2]`` or ``null`` per frame."""
        data: dict[str, Any] = {
            "num_frames": int(self.num_frames),
            "fps": float(self.fps),
            "width": int(self.width),
            "height": int(self.height),
            "key_frame": int(self.key_frame),
            "boxes": [row.tolist() if ok else None for row, ok in zip(self.boxes, self.visible, strict=True)],
            "visible": [bool(v) for v in self.visible],
        }
        if self.scores is not None:
            data["scores"] = [float(s) if math.isfinite(s) else None for s in self.scores]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Track:
        """Inverse of :meth:`to_json` (``width``/``height``/``scores`` optional).

        Raises:
            AnnotationError: if a key is missing or the lengths disagree.
        """
        try:
            boxes = data["boxes"]
            num_frames = int(data.get("num_frames", len(boxes)))
            visible = data.get("visible")
            key_frame = int(data["key_frame"])
        except (KeyError, TypeError, ValueError) as error:
            raise AnnotationError(
                f"track JSON lacks or mangles {error}; expected the output of Track.to_json"
            ) from None
        if len(boxes) != num_frames or (visible is not None and len(visible) != num_frames):
            raise AnnotationError(
                f"track JSON has num_frames={num_frames} but {len(boxes)} boxes"
                + (f" and {len(visible)} visibility flags" if visible is not None else "")
            )
        track = cls.from_boxes(
            boxes,
            key_frame=key_frame,
            fps=float(data.get("fps", 0.0)),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
        )
        if visible is not None:
            track.visible &= np.asarray(visible, dtype=bool)
            track.boxes[~track.visible] = np.nan
        scores = data.get("scores")
        if scores is not None:
            track.scores = np.array([np.nan if s is None else float(s) for s in scores], dtype=np.float64)
        return track
