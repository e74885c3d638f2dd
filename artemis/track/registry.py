"""Tracker backends by explicit name.

``opencv-csrt`` (default of :func:`~artemis.track.track_video`), ``opencv-csrt-fast`` (CSRT with the
options of :data:`~artemis.track.opencv.FAST_CSRT_OPTIONS`, the default of ``ArtemisModel``),
``opencv-kcf`` and ``opencv-mil`` are frame-by-frame trackers built by :func:`create_tracker`.
``given`` is not a tracker that looks at pixels: it takes the boxes from annotations
(``track_video(..., tracker="given", boxes=track_list)`` or :meth:`Track.from_boxes`).

Hook for learned trackers: a learned tracker (e.g. SAM 2, when the ``sam2`` package and a local
checkpoint are present) is added as one more entry of :data:`TRACKER_FACTORIES` whose factory imports
its package lazily, takes ``checkpoint=<local path>`` and ``device=`` options, and raises
:class:`~artemis.errors.TrackingError` naming the missing package or file; nothing is downloaded. Until
then any object following the :class:`~artemis.track.Tracker` protocol can be used without registering
it, by passing a zero-argument factory as ``track_video(..., tracker=factory)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from artemis.errors import TrackingError
from artemis.track.base import Tracker
from artemis.track.opencv import FAST_CSRT_OPTIONS, OpenCVTracker

__all__ = ["DEFAULT_TRACKER", "FAST_TRACKER", "GIVEN_TRACKER", "TRACKER_FACTORIES", "TRACKER_NAMES", "create_tracker"]

DEFAULT_TRACKER = "opencv-csrt"
FAST_TRACKER = "opencv-csrt-fast"
"""CSRT tuned for speed at the models' stride-8, 320 px settings; what ``ArtemisModel`` tracks with."""
GIVEN_TRACKER = "given"
"""The pseudo-tracker that returns the annotated boxes (unrelated to the box-output status ``BoxStatus.GIVEN``)."""

TRACKER_FACTORIES: dict[str, Callable[..., Tracker]] = {
    "opencv-csrt": lambda **options: OpenCVTracker("csrt", **options),
    # Options given by the caller override the fast ones field by field.
    FAST_TRACKER: lambda **options: OpenCVTracker("csrt", **(FAST_CSRT_OPTIONS | options)),
    "opencv-kcf": lambda **options: OpenCVTracker("kcf", **options),
    "opencv-mil": lambda **options: OpenCVTracker("mil", **options),
}

TRACKER_NAMES: tuple[str, ...] = (*TRACKER_FACTORIES, GIVEN_TRACKER)


def create_tracker(name: str, **options: Any) -> Tracker:
    """Build a fresh frame-by-frame tracker by name.

    Args:
        name: one of ``opencv-csrt``, ``opencv-csrt-fast``, ``opencv-kcf``, ``opencv-mil``.
        **options: backend options; for OpenCV trackers, fields of ``cv2.Tracker*_Params``.

    Raises:
        TrackingError: for an unknown name (listing the valid ones), for ``given`` (which needs the
            annotated boxes, not a frame-by-frame tracker) or for a backend that cannot be built.
    """
    if name == GIVEN_TRACKER:
        raise TrackingError(
            "tracker 'given' takes its boxes from annotations, not from frames; use "
            "track_video(video, box, frame, tracker='given', boxes=track_list) or Track.from_boxes(track_list)"
        )
    factory = TRACKER_FACTORIES.get(name)
    if factory is None:
        raise TrackingError(f"unknown tracker {name!r}; expected one of: {', '.join(TRACKER_NAMES)}")
    return factory(**options)
