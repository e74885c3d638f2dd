"""OpenCV's single-object trackers (opencv-contrib) behind the :class:`~artemis.track.Tracker` protocol.

OpenCV trackers take BGR frames and integer ``(x, y, w, h)`` rectangles; this wrapper takes RGB frames
and float pixel ``xyxy`` boxes like the rest of artemis and converts at the boundary.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np

from artemis.errors import TrackingError

__all__ = ["OPENCV_ALGORITHMS", "OpenCVTracker"]

OpenCVAlgorithm = Literal["csrt", "kcf", "mil"]

# Name -> (tracker class, params class) in OpenCV >= 4.5.1 (the non-legacy API kept by OpenCV 5).
OPENCV_ALGORITHMS: dict[str, tuple[str, str]] = {
    "csrt": ("TrackerCSRT", "TrackerCSRT_Params"),
    "kcf": ("TrackerKCF", "TrackerKCF_Params"),
    "mil": ("TrackerMIL", "TrackerMIL_Params"),
}


def _to_rect(box_xyxy: np.ndarray) -> tuple[int, int, int, int]:
    """Float ``xyxy`` -> the integer ``(x, y, w, h)`` OpenCV wants, rounding the edges (not the size)."""
    x1, y1, x2, y2 = (round(float(v)) for v in box_xyxy)
    return x1, y1, max(x2 - x1, 1), max(y2 - y1, 1)


class OpenCVTracker:
    """A CSRT, KCF or MIL tracker from ``opencv-contrib-python``.

    Args:
        algorithm: ``"csrt"`` (accurate, the default of :func:`~artemis.track.track_video`), ``"kcf"``
            (faster, no scale change) or ``"mil"`` (drifts easily; kept as a baseline).
        **params: fields of the algorithm's ``cv2.Tracker*_Params`` (e.g. ``psr_threshold=0.05`` for
            CSRT, whose update fails when the peak-to-sidelobe ratio drops below it).

    Raises:
        TrackingError: if OpenCV lacks the algorithm (plain ``opencv-python`` instead of the contrib
            build) or a parameter name is unknown.
    """

    def __init__(self, algorithm: OpenCVAlgorithm = "csrt", **params: Any) -> None:
        if algorithm not in OPENCV_ALGORITHMS:
            raise TrackingError(f"unknown OpenCV tracker {algorithm!r}; expected one of {sorted(OPENCV_ALGORITHMS)}")
        class_name, params_name = OPENCV_ALGORITHMS[algorithm]
        tracker_class = getattr(cv2, class_name, None)
        params_class = getattr(cv2, params_name, None)
        if tracker_class is None or params_class is None:
            raise TrackingError(
                f"OpenCV {cv2.__version__} has no cv2.{class_name}; install opencv-contrib-python(-headless)"
            )
        self.algorithm = algorithm
        self._params = params_class()
        for name, value in params.items():
            if not hasattr(self._params, name):
                valid = sorted(n for n in dir(self._params) if not n.startswith("_"))
                raise TrackingError(f"cv2.{params_name} has no field {name!r}; valid fields: {', '.join(valid)}")
            setattr(self._params, name, value)
        self._tracker_class = tracker_class
        self._tracker: Any = None

    def init(self, frame: np.ndarray, box_xyxy: np.ndarray) -> None:
        """Start tracking ``box_xyxy`` on the RGB ``frame``."""
        # A fresh OpenCV object per init: OpenCV trackers are not documented as re-initialisable.
        self._tracker = self._tracker_class.create(self._params)
        self._tracker.init(_to_bgr(frame), _to_rect(box_xyxy))

    def update(self, frame: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Return ``(xyxy box | None, score)`` for the next RGB ``frame``."""
        if self._tracker is None:
            raise TrackingError("OpenCVTracker.update() called before init(); call init(frame, box) first")
        ok, rect = self._tracker.update(_to_bgr(frame))
        # CSRT/KCF/MIL report no score in OpenCV 5 (getTrackingScore() returns -1): fall back to the flag.
        score = float(self._tracker.getTrackingScore())
        if score < 0:
            score = 1.0 if ok else 0.0
        if not ok:
            return None, score
        x, y, w, h = (float(v) for v in rect)
        return np.array([x, y, x + w, y + h], dtype=np.float64), score


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    # Colour-name and RGB features of CSRT were trained on BGR input, as cv2.imread returns it.
    return np.ascontiguousarray(frame[..., ::-1])
