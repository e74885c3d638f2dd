"""OpenCV's single-object trackers (opencv-contrib) behind the :class:`~artemis.track.Tracker` protocol.

OpenCV trackers take BGR frames and integer ``(x, y, w, h)`` rectangles; this wrapper takes RGB frames
and float pixel ``xyxy`` boxes like the rest of artemis and converts at the boundary.

It also keeps OpenCV's failures inside: a box narrower or shorter than :data:`MIN_TEMPLATE_SIDE` pixels
(CSRT fails in ``cv2.resize`` on a box one or two pixels wide, MIL stalls) is tracked through a template
grown around it, and the tracked template is mapped back to the box's own size and offset; a ``cv2.error``
in ``init`` or ``update`` becomes a lost frame, logged once, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import cv2
import numpy as np

from artemis.errors import TrackingError

__all__ = ["FAST_CSRT_OPTIONS", "MIN_TEMPLATE_SIDE", "OPENCV_ALGORITHMS", "OpenCVTracker"]

logger = logging.getLogger(__name__)

# Smallest template side given to OpenCV, in pixels (or the frame's side, when smaller).
MIN_TEMPLATE_SIDE = 10

# CSRT options of the ``opencv-csrt-fast`` tracker, the default of ArtemisModel and ``artemis describe``.
# Chosen by a measured sweep at stride 8 and 320 px (docs/tracking.md, "Speed against accuracy"): an update costs
# about a third of OpenCV's defaults (no per-frame segmentation of the target, 17 scales instead of 33,
# three ADMM iterations instead of four, and a 128 px template, which stops CSRT from upscaling small
# targets to 200 px), with OTB Crossing and SynthRef success AUCs as good as the defaults'.
FAST_CSRT_OPTIONS: dict[str, Any] = {
    "use_segmentation": False,
    "number_of_scales": 17,
    "admm_iterations": 3,
    "template_size": 128.0,
}

OpenCVAlgorithm = Literal["csrt", "kcf", "mil"]

# Name -> (tracker class, params class) in OpenCV >= 4.5.1 (the non-legacy API kept by OpenCV 5).
OPENCV_ALGORITHMS: dict[str, tuple[str, str]] = {
    "csrt": ("TrackerCSRT", "TrackerCSRT_Params"),
    "kcf": ("TrackerKCF", "TrackerKCF_Params"),
    "mil": ("TrackerMIL", "TrackerMIL_Params"),
}


def _grow(box_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """``box_xyxy`` grown to at least :data:`MIN_TEMPLATE_SIDE` per side about its centre, kept in the frame."""
    box = np.asarray(box_xyxy, dtype=np.float64).copy()
    for axis, size in ((0, width), (1, height)):
        low, high = box[axis], box[axis + 2]
        side = min(float(size), max(high - low, float(MIN_TEMPLATE_SIDE)))
        start = min(max((low + high - side) / 2, 0.0), size - side)
        box[axis], box[axis + 2] = round(start), round(start) + round(side)
    return box


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
        self._started = False
        self._failed = False  # OpenCV raised: every further frame is lost
        # The user's box as fractions of the template's rectangle (x1, y1, x2, y2): (0, 0, 1, 1) unless grown.
        self._inner = np.array([0.0, 0.0, 1.0, 1.0])

    def init(self, frame: np.ndarray, box_xyxy: np.ndarray) -> None:
        """Start tracking ``box_xyxy`` on the RGB ``frame``.

        A box smaller than :data:`MIN_TEMPLATE_SIDE` is tracked through a grown template; if OpenCV still
        fails, the tracker reports every following frame as lost instead of raising.
        """
        height, width = frame.shape[:2]
        box = np.asarray(box_xyxy, dtype=np.float64)
        x, y, w, h = rect = _to_rect(_grow(box, width, height))
        grown = rect != _to_rect(box)
        # A template of the box's own size tracks the box itself (OpenCV's rectangle comes back as it is).
        self._inner = (box - [x, y, x, y]) / [w, h, w, h] if grown else np.array([0.0, 0.0, 1.0, 1.0])
        self._started, self._failed = True, False
        # A fresh OpenCV object per init: OpenCV trackers are not documented as re-initialisable.
        self._tracker = self._tracker_class.create(self._params)
        try:
            self._tracker.init(_to_bgr(frame), rect)
        except cv2.error as error:
            self._fail("init", rect, error)

    def update(self, frame: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Return ``(xyxy box | None, score)`` for the next RGB ``frame``; ``None`` when lost."""
        if not self._started:
            raise TrackingError("OpenCVTracker.update() called before init(); call init(frame, box) first")
        if self._failed:
            return None, 0.0
        try:
            ok, rect = self._tracker.update(_to_bgr(frame))
            # CSRT/KCF/MIL report no score in OpenCV 5 (getTrackingScore() returns -1): fall back to the flag.
            score = float(self._tracker.getTrackingScore())
        except cv2.error as error:
            self._fail("update", None, error)
            return None, 0.0
        if score < 0:
            score = 1.0 if ok else 0.0
        if not ok:
            return None, score
        x, y, w, h = (float(v) for v in rect)
        return np.array([x, y, x, y]) + self._inner * [w, h, w, h], score

    def _fail(self, step: str, rect: tuple[int, int, int, int] | None, error: cv2.error) -> None:
        self._failed = True
        where = f" on rectangle {rect}" if rect is not None else ""
        message = str(error).strip().splitlines()
        logger.warning(
            "OpenCV %s %s failed%s (%s); the following frames are reported lost",
            self.algorithm, step, where, message[-1] if message else type(error).__name__,
        )  # fmt: skip


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    # Colour-name and RGB features of CSRT were trained on BGR input, as cv2.imread returns it.
    return np.ascontiguousarray(frame[..., ::-1])
