"""What the dataset and the cache share: a record's pixels, its track on every frame, and which frames are used.

:func:`open_media` opens a record's video, frame images or image as a :class:`~artemis.video.VideoSource`;
:func:`record_track` lays its target's boxes on every frame (the tracker filling frames it does not
annotate); :func:`region_candidates` are the frames the tracked-frame jitter may pick,
:func:`jittered_key_frame` a key frame among them, and :func:`video_frame_indices` the frames of the video
tokens.
"""

from __future__ import annotations

import numpy as np

from artemis.data.records import RecordEntry
from artemis.errors import VideoError
from artemis.track import track_video
from artemis.video import VideoSource, open_video
from artemis.video.sampling import sample_indices

__all__ = [
    "jittered_key_frame",
    "open_media",
    "record_track",
    "region_candidates",
    "video_frame_indices",
]


def open_media(entry: RecordEntry) -> VideoSource:
    """The record's pixels as a :class:`~artemis.video.VideoSource`; the caller closes it (``with``).

    A video file or frame folder opens a :class:`~artemis.video.VideoReader`; frame images (Elysium) an
    :class:`~artemis.video.ImageListVideo` whose frame ``i`` is the ``i``-th image, and a single image a
    one-frame one. Images are decoded when their frame is read, so a long record is never held whole.
    """
    sample = entry.sample
    if sample.frame_paths is not None:
        return open_video([sample.resolve(p) for p in sample.frame_paths])
    if entry.kind == "image":
        return open_video([sample.resolve(sample.image)])
    if sample.video is None:
        raise VideoError(f"record {entry.where} of {entry.path} names no video, frame images or image to read")
    return open_video(sample.resolve(sample.video))


def record_track(entry: RecordEntry, reader: VideoSource, tracker: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """The target's box on every frame of ``reader``.

    Annotated frames keep their annotation (a box, or absent). With ``tracker`` set, frames the record
    does not annotate are filled by :func:`artemis.track.track_video` from the key box; otherwise they
    are unknown (NaN, not visible).

    Returns:
        ``(boxes, visible, key_frame)``: (N, 4) float64 pixel xyxy, (N,) bool and the key frame's index.
    """
    sample = entry.sample
    total = reader.num_frames
    # Frame images (Elysium) form their own video: frame i of the record is image i.
    frame_ids = list(range(len(sample.frame_ids))) if sample.frame_paths is not None else sample.frame_ids
    if max(frame_ids) >= total:
        raise entry.error("frame_id", f"frame {max(frame_ids)} does not exist: the video has {total} frames")
    record_boxes, record_visible = sample.boxes_array()  # (T, 4), (T,)
    boxes = np.full((total, 4), np.nan)  # (N, 4)
    visible = np.zeros(total, dtype=bool)  # (N,)
    boxes[frame_ids] = record_boxes
    visible[frame_ids] = record_visible
    key_frame = frame_ids[sample.key_index]
    annotated = np.zeros(total, dtype=bool)
    annotated[frame_ids] = True
    if tracker is not None and not annotated.all():
        track = track_video(reader, np.asarray(sample.key_box), key_frame, tracker=tracker)
        boxes[~annotated] = track.boxes[~annotated]
        visible[~annotated] = track.visible[~annotated]
    return boxes, visible, key_frame


def region_candidates(visible: np.ndarray, key_frame: int, limit: int | None) -> np.ndarray:
    """The frames the tracked-frame jitter may pick: the visible frames, at most ``limit`` of them.

    With ``limit`` the visible frames are thinned to ``limit`` evenly spread ones (a fixed, seed-free
    choice), which bounds what a cache must hold for long videos. Returns a (N,) bool mask.
    """
    if limit is None:
        return visible
    frames = np.flatnonzero(visible & (np.arange(len(visible)) != key_frame))
    if len(frames) <= limit:
        return visible
    keep = np.zeros_like(visible)
    keep[frames[sample_indices(len(frames), limit, "uniform")]] = True
    keep[key_frame] = visible[key_frame]
    return keep


def jittered_key_frame(candidates: np.ndarray, key_frame: int, rng: np.random.Generator) -> int:
    """Another frame to give the target's box on: one of ``candidates`` other than ``key_frame``, uniformly.

    A user may draw the box on any frame, also one where the target is partly hidden or cut by the frame
    edge, while an annotation's key frame is usually its clearest view; training on other visible frames
    as key frames teaches the model that case. ``candidates`` are :func:`region_candidates`, so a features
    cache holds the chosen frame. Returns ``key_frame`` when it is the only candidate.
    """
    frames = np.flatnonzero(candidates)
    frames = frames[frames != key_frame]
    if frames.size == 0:
        return int(key_frame)
    return int(frames[int(rng.integers(frames.size))])


def video_frame_indices(total: int, num_frames: int) -> np.ndarray:
    """Frames of the video tokens: midpoints of ``min(num_frames, total)`` segments (as inference)."""
    return sample_indices(total, min(num_frames, total), "midpoint")
