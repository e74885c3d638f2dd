"""Track a target from one box through a whole video.

>>> from artemis.track import track_video
>>> track = track_video("clip.mp4", box=(10, 20, 110, 220), frame_index=12)  # doctest: +SKIP
>>> track.boxes.shape, track.visible.sum()  # doctest: +SKIP

Backends are picked by name (:data:`TRACKER_NAMES`): ``opencv-csrt`` (default), ``opencv-csrt-fast``
(CSRT tuned for speed; what ``ArtemisModel`` uses), ``opencv-kcf``, ``opencv-mil`` and ``given`` (boxes
from annotations). See ``docs/tracking.md``.
"""

from artemis.track.base import Track, Tracker
from artemis.track.multi import track_targets
from artemis.track.opencv import OpenCVTracker
from artemis.track.propagate import resolve_stride, track_video, tracked_indices
from artemis.track.registry import DEFAULT_TRACKER, FAST_TRACKER, TRACKER_NAMES, create_tracker
from artemis.video import ArrayVideo, open_video  # re-exported: they lived here before artemis.video had them

__all__ = [
    "DEFAULT_TRACKER",
    "FAST_TRACKER",
    "TRACKER_NAMES",
    "ArrayVideo",
    "OpenCVTracker",
    "Track",
    "Tracker",
    "create_tracker",
    "open_video",
    "resolve_stride",
    "track_targets",
    "track_video",
    "tracked_indices",
]
