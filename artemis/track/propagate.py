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
  ``stride="auto"`` (:func:`resolve_stride`) tracks at least :data:`AUTO_MIN_TRACKED` frames of a short
  video and every :data:`AUTO_MAX_STRIDE`-th frame of a long one.
* **Working resolution.** With ``max_side`` the frames are downscaled so their longer side is at most
  ``max_side`` pixels; boxes are scaled by the exact per-axis ratio of the resized to the original size
  on the way in and divided by it on the way out, so no offset creeps in (box edges, not pixel centres,
  are the coordinates; see :mod:`artemis.boxes`).
* **Memory.** The forward pass streams; the backward pass decodes the frames before the key frame in
  chunks of bounded size, last chunk first, and tracks each in reverse before dropping it
  (:class:`~artemis.track.feed.FrameFeed`), so memory does not grow with the video's length.
* **Parallel.** With ``parallel=True`` one thread decodes for both passes while the forward and the
  backward pass track at once (OpenCV releases the GIL); each pass has its own tracker.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from tqdm.auto import tqdm

from artemis.boxes import BoxFormat, clip_boxes, validate_box
from artemis.errors import AnnotationError, ConfigError, VideoError, is_int
from artemis.track.base import Track, Tracker
from artemis.track.feed import FrameFeed
from artemis.track.registry import DEFAULT_TRACKER, GIVEN_TRACKER, create_tracker
from artemis.video import ArrayVideo, VideoInput, VideoSource, open_video, opened

# ArrayVideo and open_video live in artemis.video; they stay importable from here for existing callers.
__all__ = [
    "AUTO_MAX_STRIDE",
    "AUTO_MIN_TRACKED",
    "ArrayVideo",
    "open_video",
    "resolve_stride",
    "track_video",
    "tracked_indices",
]

logger = logging.getLogger(__name__)


AUTO_MAX_STRIDE = 8
AUTO_MIN_TRACKED = 24
Stride = int | Literal["auto"]


def resolve_stride(stride: Stride, num_frames: int) -> int:
    """The stride to track a video of ``num_frames`` frames with; ``"auto"`` is
    ``clip(num_frames // AUTO_MIN_TRACKED, 1, AUTO_MAX_STRIDE)``.

    A short video is cheap to track densely, and at stride 8 a 24-frame clip would keep only 4 tracked
    frames and interpolate the rest; from 192 frames on, "auto" is stride 8 (docs/tracking.md).

    Raises:
        ConfigError: ``stride`` is neither ``"auto"`` nor an integer >= 1.
    """
    if stride == "auto":
        return max(1, min(AUTO_MAX_STRIDE, int(num_frames) // AUTO_MIN_TRACKED))
    if not is_int(stride, minimum=1):
        raise ConfigError(f"stride {stride!r} is invalid; expected an integer >= 1 (1 tracks every frame) or 'auto'")
    return int(stride)


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


@dataclass(frozen=True)
class WorkingFrames:
    """Tracking at a working resolution: frames resized to it, boxes mapped between it and the original."""

    width: int
    height: int
    work_w: int
    work_h: int

    @classmethod
    def of(cls, width: int, height: int, max_side: int | None) -> WorkingFrames:
        return cls(width, height, *_working_size(width, height, max_side))

    @property
    def scale(self) -> np.ndarray:
        """(4,) per-axis factors, original -> working, for an xyxy box."""
        return np.array([self.work_w / self.width, self.work_h / self.height] * 2, dtype=np.float64)

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """A decoded frame at the working resolution."""
        if (self.work_w, self.work_h) == (self.width, self.height):
            return frame
        return cv2.resize(frame, (self.work_w, self.work_h), interpolation=cv2.INTER_AREA)

    def to_original(self, work_box: np.ndarray | None) -> np.ndarray | None:
        """A tracker's working box in original pixels, clipped to the frame; None when lost or empty."""
        if work_box is None or not np.all(np.isfinite(work_box)):
            return None
        out = clip_boxes(np.asarray(work_box, dtype=np.float64) / self.scale, self.width, self.height)
        return out if out[2] > out[0] and out[3] > out[1] else None


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
    stride: Stride = 1,
    max_side: int | None = None,
    parallel: bool = True,
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
        stride: track every ``stride``-th frame and interpolate in between; ``"auto"``: see
            :func:`resolve_stride`.
        max_side: downscale frames so their longer side is at most this many pixels while tracking.
        parallel: decode on a thread of its own and run the forward and backward passes at once (the
            boxes are the same either way; ``False`` keeps all the work in the calling thread).
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
        return _track(
            reader, box, frame_index, tracker, box_format, stride, max_side, parallel, progress, boxes, tracker_options
        )


def _track(
    reader: VideoSource,
    box: Sequence[float] | np.ndarray,
    frame_index: int,
    tracker: str | Callable[[], Tracker],
    box_format: BoxFormat,
    stride: Stride,
    max_side: int | None,
    parallel: bool,
    progress: bool,
    boxes: Sequence[Sequence[float] | None] | None,
    tracker_options: dict[str, Any] | None,
) -> Track:
    """:func:`track_video` on an open reader (the caller owns and closes it)."""
    num_frames, width, height = int(reader.num_frames), int(reader.width), int(reader.height)
    fps = float(reader.fps or 0.0)
    if not is_int(frame_index):
        raise VideoError(f"frame index {frame_index!r} is not an integer; expected 0..{num_frames - 1}")
    if not 0 <= frame_index < num_frames:
        raise VideoError(
            f"frame {frame_index} is outside {reader.path} ({num_frames} frames); "
            f"expected a frame index in 0..{num_frames - 1}"
        )
    frame_index = int(frame_index)
    stride = resolve_stride(stride, num_frames)
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

    working = WorkingFrames.of(width, height, max_side)

    forward, backward = tracked_indices(frame_index, num_frames, stride)
    out_boxes = np.full((num_frames, 4), np.nan, dtype=np.float64)
    scores = np.full(num_frames, np.nan, dtype=np.float64)
    out_boxes[frame_index], scores[frame_index] = key_box, 1.0
    started = time.perf_counter()
    bar = tqdm(total=len(forward) + len(backward) - 2, desc="tracking", unit="frame", disable=not progress)

    def run(frames: Iterator[tuple[int, np.ndarray]]) -> int:
        """Init a fresh tracker on the first of ``frames`` (the key frame), update on the rest."""
        active = factory()
        lost = 0
        for position, (index, frame) in enumerate(frames):
            if position == 0:
                active.init(frame, key_box * working.scale)
                continue
            work_box, score = active.update(frame)
            box_out = working.to_original(work_box)
            out_boxes[index], scores[index] = (box_out, score) if box_out is not None else (np.nan, score)
            lost += box_out is None
            bar.update(1)
        return lost

    feed = FrameFeed(
        reader,
        forward,
        backward,
        anchor=frame_index,
        stride=stride,
        prepare=working.prepare,
        frame_bytes=working.work_w * working.work_h * 3,
        threaded=parallel,
    )
    try:
        lost_back, lost_fwd = _run_passes(run, feed, parallel and len(backward) > 1 and len(forward) > 1)
    finally:
        feed.close()
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
        working.work_w,
        working.work_h,
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


Pass = Callable[[Iterator[tuple[int, np.ndarray]]], int]  # tracks the frames of one pass, returns frames lost


def _run_passes(run: Pass, feed: FrameFeed, parallel: bool) -> tuple[int, int]:
    """Run the backward and forward passes, at once on two threads when ``parallel``; return lost counts."""
    if not parallel:
        return run(feed.frames("backward")), run(feed.frames("forward"))
    result: dict[str, int] = {}
    errors: list[BaseException] = []

    def backward() -> None:
        try:
            result["backward"] = run(feed.frames("backward"))
        except BaseException as error:  # raised again in the calling thread below
            errors.append(error)
            feed.stop()

    thread = threading.Thread(target=backward, name="artemis-track-backward", daemon=True)
    thread.start()
    try:
        result["forward"] = run(feed.frames("forward"))
    except BaseException:
        feed.stop()
        raise
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return result["backward"], result["forward"]


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
