"""Propagate one box through a whole video: :func:`track_video`.

From the key frame the target is tracked forward to the last frame and, with a fresh tracker on the
reversed frame order, backward to frame 0. Rules (also in ``docs/tracking.md``):

* **Visibility.** A tracked frame is visible when the tracker reports success and its box, clipped to
  the frame, keeps a positive area. A lost frame gets a NaN box and ``visible=False``; the tracker is
  still fed every following frame, so it can pick the target up again (CSRT, for one, reports failure
  when its correlation peak is weak and recovers when the target reappears near its last position).
* **Stride.** With ``stride=k`` only frames ``key, key±k, key±2k, ...`` and both ends (0 and T-1) are
  tracked. A frame between two tracked frames gets the linear interpolation of their boxes when both are
  visible, and is invisible otherwise (an interpolation towards a lost box would be invented).
* **Working resolution.** With ``max_side`` the frames are downscaled so their longer side is at most
  ``max_side`` pixels; boxes are scaled by the exact per-axis ratio of the resized to the original size
  on the way in and divided by it on the way out, so no offset creeps in (box edges, not pixel centres,
  are the coordinates; see :mod:`artemis.boxes`).
* **Memory.** Frames are decoded once, in order. Only the frames the backward pass needs (those before
  the key frame, at working resolution) are held; the forward pass streams.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from artemis.boxes import BoxFormat, clip_boxes, validate_box
from artemis.errors import AnnotationError, ConfigError, VideoError
from artemis.track.base import Track, Tracker
from artemis.track.registry import DEFAULT_TRACKER, GIVEN_TRACKER, create_tracker
from artemis.video import ArrayVideo, VideoInput, VideoSource, open_video, opened

# ArrayVideo and open_video live in artemis.video; they stay importable from here for existing callers.
__all__ = ["ArrayVideo", "open_video", "track_video", "tracked_indices"]

logger = logging.getLogger(__name__)


def tracked_indices(key_frame: int, num_frames: int, stride: int) -> tuple[list[int], list[int]]:
    """Frames the tracker looks at: ``(forward, backward)``, each starting at ``key_frame``.

    ``forward`` runs ``key, key+stride, ...`` and ends at ``num_frames - 1``; ``backward`` runs
    ``key, key-stride, ...`` and ends at 0.
    """
    forward = list(range(key_frame, num_frames, stride))
    if forward[-1] != num_frames - 1:
        forward.append(num_frames - 1)
    backward = list(range(key_frame, -1, -stride))
    if backward[-1] != 0:
        backward.append(0)
    return forward, backward


def _working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _interpolate(boxes: np.ndarray, visible: np.ndarray, anchors: list[int]) -> None:
    """Fill the frames between consecutive ``anchors`` in place (see the stride rule above)."""
    for a, b in itertools.pairwise(anchors):
        if b - a < 2 or not (visible[a] and visible[b]):
            continue
        t = (np.arange(a + 1, b, dtype=np.float64) - a) / (b - a)  # (n,)
        boxes[a + 1 : b] = boxes[a] + t[:, None] * (boxes[b] - boxes[a])  # (n, 4)
        visible[a + 1 : b] = True


def track_video(
    video: VideoInput,
    box: Sequence[float] | np.ndarray,
    frame_index: int = 0,
    *,
    tracker: str | Callable[[], Tracker] = DEFAULT_TRACKER,
    box_format: BoxFormat = "xyxy",
    stride: int = 1,
    max_side: int | None = None,
    progress: bool = False,
    boxes: Sequence[Sequence[float] | None] | None = None,
    tracker_options: dict[str, Any] | None = None,
) -> Track:
    """Track the target in ``box`` on frame ``frame_index`` through every frame of ``video``.

    Args:
        video: a :class:`~artemis.video.VideoSource` (left open), or what :func:`artemis.video.open_video`
            opens: a video file or frame folder path, a list of image paths, or decoded ``(T, H, W, 3)``
            uint8 RGB frames (closed again before returning).
        box: the target on frame ``frame_index``, in pixels of that frame.
        frame_index: 0-based key frame.
        tracker: a backend name (``opencv-csrt``, ``opencv-kcf``, ``opencv-mil``, ``given``) or a
            zero-argument factory returning a fresh :class:`Tracker` (called once per direction).
        box_format: ``"xyxy"`` or ``"xywh"``.
        stride: track every ``stride``-th frame and interpolate in between.
        max_side: downscale frames so their longer side is at most this many pixels while tracking.
        progress: show a tqdm progress bar (on stderr).
        boxes: for ``tracker="given"`` only: one pixel ``xyxy`` box per frame, ``[]``/``None`` when the
            target is absent (VideoRef45K's ``track_list``). The user's ``box`` replaces frame
            ``frame_index``.
        tracker_options: keyword options for :func:`create_tracker` (e.g. CSRT's ``psr_threshold``).

    Returns:
        A :class:`Track` with one box and visibility flag per frame; boxes are in pixels of the
        original frames whatever ``max_side`` is.

    Raises:
        VideoError: missing or unreadable video, or ``frame_index`` outside it.
        BoxError: ``box`` outside the frame, of zero area or inverted.
        TrackingError: unknown tracker name or a tracker that cannot be built.
        ConfigError: invalid ``stride`` or ``max_side``.
    """
    with opened(video) as reader:  # closes what it opened, also when validation or tracking fails
        return _track(reader, box, frame_index, tracker, box_format, stride, max_side, progress, boxes, tracker_options)


def _track(
    reader: VideoSource,
    box: Sequence[float] | np.ndarray,
    frame_index: int,
    tracker: str | Callable[[], Tracker],
    box_format: BoxFormat,
    stride: int,
    max_side: int | None,
    progress: bool,
    boxes: Sequence[Sequence[float] | None] | None,
    tracker_options: dict[str, Any] | None,
) -> Track:
    """:func:`track_video` on an open reader (the caller owns and closes it)."""
    num_frames, width, height = int(reader.num_frames), int(reader.width), int(reader.height)
    fps = float(reader.fps or 0.0)
    if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
        raise VideoError(f"frame index {frame_index!r} is not an integer; expected 0..{num_frames - 1}")
    if not 0 <= frame_index < num_frames:
        raise VideoError(
            f"frame {frame_index} is outside {reader.path} ({num_frames} frames); "
            f"expected a frame index in 0..{num_frames - 1}"
        )
    frame_index = int(frame_index)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ConfigError(f"stride {stride!r} is invalid; expected an integer >= 1 (1 tracks every frame)")
    if max_side is not None and (not isinstance(max_side, (int, np.integer)) or max_side < 16):
        raise ConfigError(f"max_side {max_side!r} is invalid; expected None or an integer >= 16 pixels")
    key_box = validate_box(box, width, height, box_format=box_format, frame_index=frame_index)

    if tracker == GIVEN_TRACKER:
        return _given_track(boxes, key_box, frame_index, num_frames, fps, width, height)
    if boxes is not None:
        raise ConfigError(f"boxes= is only used by tracker='given', not by {tracker!r}")
    if isinstance(tracker, str):
        name, options = tracker, dict(tracker_options or {})
        create_tracker(name, **options)  # fail on a bad name or option before decoding anything

        def factory() -> Tracker:
            return create_tracker(name, **options)
    else:
        factory = tracker

    work_w, work_h = _working_size(width, height, max_side)
    scale = np.array([work_w / width, work_h / height] * 2, dtype=np.float64)  # original -> working

    def prepare(frame: np.ndarray) -> np.ndarray:
        if (work_w, work_h) == (width, height):
            return frame
        return cv2.resize(frame, (work_w, work_h), interpolation=cv2.INTER_AREA)

    def to_original(work_box: np.ndarray | None) -> np.ndarray | None:
        if work_box is None or not np.all(np.isfinite(work_box)):
            return None
        out = clip_boxes(np.asarray(work_box, dtype=np.float64) / scale, width, height)
        return out if out[2] > out[0] and out[3] > out[1] else None

    forward, backward = tracked_indices(frame_index, num_frames, stride)
    out_boxes = np.full((num_frames, 4), np.nan, dtype=np.float64)
    scores = np.full(num_frames, np.nan, dtype=np.float64)
    out_boxes[frame_index], scores[frame_index] = key_box, 1.0
    started = time.perf_counter()
    bar = tqdm(total=len(forward) + len(backward) - 2, desc="tracking", unit="frame", disable=not progress)

    def run(indices: list[int], frames: Iterator[tuple[int, np.ndarray]]) -> int:
        """Init a fresh tracker on the first of ``frames`` (the key frame), update on the rest."""
        active = factory()
        lost = 0
        for position, (index, frame) in enumerate(frames):
            if index != indices[position]:  # a reader that skips frames would silently misalign boxes
                raise VideoError(f"{reader.path} returned frame {index} where frame {indices[position]} was expected")
            if position == 0:
                active.init(prepare(frame), key_box * scale)
                continue
            work_box, score = active.update(prepare(frame))
            box_out = to_original(work_box)
            out_boxes[index], scores[index] = (box_out, score) if box_out is not None else (np.nan, score)
            lost += box_out is None
            bar.update(1)
        return lost

    lost_back = 0
    if len(backward) > 1:
        # Hold the frames of the backward pass at working resolution, key frame included, then reverse.
        wanted = set(backward)
        held = {i: prepare(f) for i, f in _frames_at(reader, sorted(backward), frame_index, stride) if i in wanted}
        lost_back = run(backward, ((i, held.pop(i)) for i in backward))
    lost_fwd = run(forward, _frames_at(reader, forward, frame_index, stride)) if len(forward) > 1 else 0
    bar.close()

    visible = np.all(np.isfinite(out_boxes), axis=1)
    _interpolate(out_boxes, visible, sorted(set(forward) | set(backward)))
    logger.info(
        "tracked %s from frame %d: %d/%d frames visible, %d tracked frames lost, %.1f s at %dx%d",
        reader.path,
        frame_index,
        int(visible.sum()),
        num_frames,
        lost_back + lost_fwd,
        time.perf_counter() - started,
        work_w,
        work_h,
    )
    return Track(
        boxes=out_boxes,
        visible=visible,
        key_frame=frame_index,
        num_frames=num_frames,
        fps=fps,
        width=width,
        height=height,
        scores=scores,
    )


def _frames_at(reader: VideoSource, indices: list[int], anchor: int, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for the ascending ``indices`` of a tracking pass.

    The frames on the grid ``anchor + j * stride`` are streamed with ``iter_frames``; an end frame off
    that grid (0 or T-1) is read on its own.
    """
    regular = [i for i in indices if (i - anchor) % stride == 0]
    extra = [i for i in indices if (i - anchor) % stride != 0]
    for i in extra:
        if i < regular[0]:
            yield i, reader.get_frame(i)
    yield from reader.iter_frames(regular[0], regular[-1] + 1, stride)
    for i in extra:
        if i > regular[-1]:
            yield i, reader.get_frame(i)


def _given_track(
    boxes: Sequence[Sequence[float] | None] | None,
    key_box: np.ndarray,
    frame_index: int,
    num_frames: int,
    fps: float,
    width: int,
    height: int,
) -> Track:
    if boxes is None:
        raise ConfigError("tracker='given' needs boxes=[one [x1, y1, x2, y2] or [] per frame]")
    if len(boxes) != num_frames:
        raise AnnotationError(f"tracker='given' got {len(boxes)} boxes for a video of {num_frames} frames")
    track = Track.from_boxes(boxes, key_frame=frame_index, fps=fps, width=width, height=height)
    track.boxes[frame_index], track.visible[frame_index] = key_box, True
    return track
