"""From a video, a key frame and per-frame target boxes to the model's tensors.

Shared by inference (:class:`artemis.ArtemisModel`) and training datasets, so the frames and boxes a
model is trained on are chosen exactly as the ones it is asked about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from artemis.model.configuration import ArtemisConfig
from artemis.model.processing import VideoProcessor
from artemis.video.sampling import sample_indices


def track_frame_indices(
    visible: np.ndarray,
    key_frame: int,
    count: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Choose ``count`` tracked frames among the frames where the target is visible.

    Without ``rng`` the frames are spread uniformly over the visible frames (evaluation); with ``rng``
    the visible frames are cut into ``count`` equal segments and one frame is drawn from each (Artemis'
    jittered training sampling). Frames repeat when fewer than ``count`` are visible; the key frame
    stands in when none is.

    Args:
        visible: (T,) bool visibility of the target on every frame.
        key_frame: the frame the user's box is on (excluded, as it has its own token).

    Returns:
        (count,) sorted frame indices.
    """
    candidates = np.flatnonzero(np.asarray(visible, dtype=bool))
    candidates = candidates[candidates != key_frame]
    if candidates.size == 0:
        return np.full(count, key_frame, dtype=np.int64)
    if rng is None:
        positions = np.round(np.linspace(0, candidates.size - 1, count)).astype(np.int64)
    else:
        edges = np.linspace(0, candidates.size, count + 1)
        lows = np.floor(edges[:-1]).astype(np.int64)
        highs = np.maximum(np.ceil(edges[1:]).astype(np.int64), lows + 1)
        positions = np.minimum(rng.integers(lows, highs), candidates.size - 1)
    return np.sort(candidates[positions])


@dataclass
class VideoInputs:
    """Tensors for one sample (batch dimension 1) and the frames they came from."""

    tensors: dict[str, torch.Tensor]
    video_frames: np.ndarray  # (T,) frame indices of the video tokens
    region_frames: np.ndarray  # (K,) key frame then tracked frames
    region_visible: np.ndarray  # (R, K) target visibility on the region frames


def build_video_inputs(
    reader,
    key_frame: int,
    boxes: Sequence[np.ndarray],
    visible: Sequence[np.ndarray],
    config: ArtemisConfig,
    video_processor: VideoProcessor,
    rng: np.random.Generator | None = None,
    *,
    read_pixels: bool = True,
) -> VideoInputs:
    """Read the frames the model needs (once each) and build its inputs.

    Args:
        reader: a :class:`artemis.video.VideoReader` (``num_frames``, ``width``, ``height``,
            ``get_frames``).
        key_frame: the frame the regions were given on.
        boxes: per region, (T, 4) pixel xyxy on every frame (NaN where unknown).
        visible: per region, (T,) bool.
        config: sizes (``num_frames``, ``num_track_boxes``).
        video_processor: the frame preprocessing.
        rng: training-time jitter of the tracked-frame sampling; None at inference.
        read_pixels: False leaves out ``pixel_values``, ``frame_mask`` and ``region_pixel_values`` (and reads
            no frame): for a caller that has the frames' vision features instead (a features cache).
    """
    total = reader.num_frames
    video_frames = sample_indices(total, min(config.num_frames, total), "midpoint")
    union_visible = np.any(np.stack([np.asarray(v, dtype=bool) for v in visible]), axis=0)  # (T,)
    tracked = track_frame_indices(union_visible, key_frame, config.num_track_boxes, rng)
    region_frames = np.concatenate([[key_frame], tracked]).astype(np.int64)  # (K,)

    transform = video_processor.transform_for(reader.width, reader.height)

    region_boxes = np.stack([transform.boxes_to_model(np.asarray(b)[region_frames]) for b in boxes])  # (R, K, 4)
    region_visible = np.stack([np.asarray(v, dtype=bool)[region_frames] for v in visible])  # (R, K)
    region_visible &= np.isfinite(region_boxes).all(-1)
    region_visible[:, 0] = True  # the user's own box
    times = region_frames / max(total - 1, 1)
    tensors = {}
    if read_pixels:
        wanted = np.unique(np.concatenate([video_frames, region_frames]))
        pixels = video_processor(reader.get_frames(wanted.tolist()))  # (U, 3, S, S)
        position = {int(frame): row for row, frame in enumerate(wanted)}
        tensors["pixel_values"] = pixels[[position[int(f)] for f in video_frames]][None]  # (1, T, 3, S, S)
        tensors["frame_mask"] = torch.ones(1, len(video_frames), dtype=torch.bool)
        tensors["region_pixel_values"] = pixels[[position[int(f)] for f in region_frames]][None]  # (1, K, 3, S, S)
    tensors["region_boxes"] = torch.from_numpy(region_boxes).float()[None]  # (1, R, K, 4)
    tensors["region_visible"] = torch.from_numpy(region_visible)[None]  # (1, R, K)
    tensors["region_times"] = torch.from_numpy(times).float()[None]  # (1, K)
    return VideoInputs(tensors, video_frames, region_frames, region_visible)
