"""Track several targets, each from its own key frame, in one decode of the video: :func:`track_targets`.

The rules of :func:`artemis.track.propagate.track_video` hold for each target (visibility, stride,
working resolution); what changes is how the frames are read:

* **One decode.** The frames any target needs (each target's forward and backward tracked frames) are
  read once, in increasing order. On each frame every target whose forward pass has started is
  stepped; a target's forward tracker starts on its own key frame.
* **Backward.** Frames before a target's key frame are kept (at the working resolution, tracked frames
  only) while they are read, and each backward pass then runs over them in reverse with a fresh
  tracker. So memory holds the tracked frames up to the latest key frame; ``stride`` and ``max_side``
  keep it small (with the pipeline's defaults, 8 and 320 px: one 320x180 frame, 170 KB, per 8 frames).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from artemis.boxes import BoxFormat, validate_box
from artemis.errors import VideoError, is_int
from artemis.track.base import Track, Tracker
from artemis.track.propagate import Stride, WorkingFrames, _interpolate, resolve_stride, tracked_indices
from artemis.track.registry import DEFAULT_TRACKER, create_tracker
from artemis.video import VideoSource

__all__ = ["track_targets"]

logger = logging.getLogger(__name__)

CHUNK = 16  # frames per get_frames call: few calls, bounded memory


def track_targets(
    source: VideoSource,
    boxes: Sequence[Sequence[float] | np.ndarray],
    frames: Sequence[int],
    *,
    tracker: str = DEFAULT_TRACKER,
    box_format: BoxFormat = "xyxy",
    stride: Stride = 1,
    max_side: int | None = None,
    tracker_options: dict[str, Any] | None = None,
) -> list[Track]:
    """Track target ``i`` from ``boxes[i]`` on frame ``frames[i]``, every target in one pass over ``source``.

    Args:
        source: an open video source (left open).
        boxes: per target, its pixel box on its key frame.
        frames: per target, its 0-based key frame.
        tracker / tracker_options: a backend name and its options (:func:`create_tracker`).
        stride / max_side: as in :func:`~artemis.track.propagate.track_video`.

    Returns:
        One :class:`Track` per target, in order; boxes in pixels of the original frames.
    """
    if len(boxes) != len(frames):
        raise ValueError(f"got {len(boxes)} boxes for {len(frames)} key frames; give one frame per box")
    if not boxes:
        return []
    num_frames, width, height = int(source.num_frames), int(source.width), int(source.height)
    stride = resolve_stride(stride, num_frames)
    keys = []
    for frame in frames:
        if not is_int(frame, 0, num_frames - 1):
            raise VideoError(
                f"frame {frame!r} is outside {source.path} ({num_frames} frames); expected 0..{num_frames - 1}"
            )
        keys.append(int(frame))
    key_boxes = [
        validate_box(box, width, height, box_format=box_format, frame_index=key)
        for box, key in zip(boxes, keys, strict=True)
    ]
    options = dict(tracker_options or {})
    create_tracker(tracker, **options)  # fail on a bad name or option before decoding anything

    working = WorkingFrames.of(width, height, max_side)
    scale = working.scale  # original -> working

    plans = [tracked_indices(key, num_frames, stride) for key in keys]  # (forward, backward) per target
    forward_sets = [set(forward) for forward, _ in plans]
    kept = {index for key, (_, backward) in zip(keys, plans, strict=True) if len(backward) > 1 for index in backward}
    needed = sorted(set().union(*forward_sets, kept))

    out_boxes = [np.full((num_frames, 4), np.nan, dtype=np.float64) for _ in keys]
    scores = [np.full(num_frames, np.nan, dtype=np.float64) for _ in keys]
    for i, key in enumerate(keys):
        out_boxes[i][key], scores[i][key] = key_boxes[i], 1.0

    def step(i: int, active: Tracker, index: int, frame: np.ndarray) -> None:
        work_box, score = active.update(frame)
        scores[i][index] = score
        box = working.to_original(work_box)
        if box is not None:
            out_boxes[i][index] = box

    forward_trackers: list[Tracker | None] = [None] * len(keys)
    stored: dict[int, np.ndarray] = {}
    for start in range(0, len(needed), CHUNK):
        chunk = needed[start : start + CHUNK]
        for index, raw in zip(chunk, source.get_frames(chunk), strict=True):
            frame = working.prepare(np.asarray(raw))
            for i, key in enumerate(keys):
                if index == key:
                    forward_trackers[i] = create_tracker(tracker, **options)
                    forward_trackers[i].init(frame, key_boxes[i] * scale)
                elif index > key and index in forward_sets[i]:
                    step(i, forward_trackers[i], index, frame)
            if index in kept:
                stored[index] = frame
    for i, (key, (_, backward)) in enumerate(zip(keys, plans, strict=True)):
        if len(backward) < 2:
            continue
        active = create_tracker(tracker, **options)
        active.init(stored[key], key_boxes[i] * scale)
        for index in backward[1:]:
            step(i, active, index, stored[index])

    tracks = []
    for i, (key, (forward, backward)) in enumerate(zip(keys, plans, strict=True)):
        visible = np.all(np.isfinite(out_boxes[i]), axis=1)
        _interpolate(out_boxes[i], visible, sorted(set(forward) | set(backward)))
        track = Track(
            boxes=out_boxes[i], visible=visible, key_frame=key, num_frames=num_frames,
            fps=float(source.fps or 0.0), width=width, height=height, scores=scores[i],
        )  # fmt: skip
        tracks.append(track)
    logger.info(
        "tracked %d targets in %s in one pass (%d frames read): %s frames visible",
        len(keys), source.path, len(needed), [int(t.visible.sum()) for t in tracks],
    )  # fmt: skip
    return tracks
