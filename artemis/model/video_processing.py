"""Frames to pixel values, and which frames a sample shows the model.

:class:`VideoProcessor` pads each frame to a square (with the mean colour, as LLaVA's ``expand2square``)
and resizes it, never centre-crops, so the whole frame reaches the model and
:class:`artemis.boxes.SquareTransform` maps boxes with the same offsets. :func:`plan_frames` and
:func:`region_inputs` choose the video frames and the region frames of one referring sample; training
and inference both go through them (via :class:`artemis.model.processing.ArtemisProcessor`), so the
frames a model is trained on are chosen exactly as the ones it is asked about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from artemis.boxes import SquareTransform
from artemis.video.sampling import sample_indices

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VideoProcessor:
    """Pad each frame to a square with the mean colour, resize to ``image_size``, normalise.

    Written here rather than taken from ``CLIPImageProcessor`` because that one resizes the short side and
    centre-crops, which cuts off the sides of a wide video and with them any box there.
    """

    image_size: int = 224
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD

    def transform_for(self, width: int, height: int) -> SquareTransform:
        return SquareTransform(width=width, height=height, size=self.image_size)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """frames (T, H, W, 3) uint8 RGB -> pixel values (T, 3, S, S) float32."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        height, width = frames.shape[1:3]
        transform = self.transform_for(width, height)
        side = transform.side
        fill = [float(value) for value in np.round(np.array(self.image_mean) * 255.0)]
        top, left = transform.pad_y, transform.pad_x
        bottom, right = side - height - top, side - width - left
        size = self.image_size
        # copyMakeBorder writes the same canvas as filling a (T, side, side, 3) array with the mean colour
        # and copying the frame in, without numpy's slow broadcast of a 3-vector over every pixel (40 ms
        # for 15 frames of 640x272, more than the resizing).
        resized = np.stack(
            [
                cv2.resize(
                    cv2.copyMakeBorder(frame, top, bottom, left, right, cv2.BORDER_CONSTANT, value=fill),
                    (size, size),
                    interpolation=cv2.INTER_CUBIC,
                )
                for frame in np.ascontiguousarray(frames)
            ]
        )
        pixels = torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, S, S)
        mean = torch.tensor(self.image_mean)[None, :, None, None]
        std = torch.tensor(self.image_std)[None, :, None, None]
        return (pixels - mean) / std

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """A (H, W) bool mask on a frame -> (S, S) float32 on the model input: padded and resized as the frame
        is (the padding is outside the mask), each pixel the share of it the mask covers (area resize)."""
        mask = np.asarray(mask, dtype=bool)
        height, width = mask.shape
        transform = self.transform_for(width, height)
        canvas = np.zeros((transform.side, transform.side), dtype=np.float32)
        canvas[transform.pad_y : transform.pad_y + height, transform.pad_x : transform.pad_x + width] = mask
        size = self.image_size
        return torch.from_numpy(cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA))


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
class FramePlan:
    """Which frames one referring sample shows the model, and the target boxes on them.

    Attributes:
        video_frames: (T,) frame indices of the video tokens.
        region_frames: (K,) the key frame, then the tracked frames.
        region_boxes: (R, K, 4) normalised xyxy on the square model input, NaN where unknown.
        region_visible: (R, K) target visibility on the region frames (the key frame always True).
        region_times: (K,) normalised time of each region frame.
    """

    video_frames: np.ndarray
    region_frames: np.ndarray
    region_boxes: np.ndarray
    region_visible: np.ndarray
    region_times: np.ndarray

    def tensors(self) -> dict[str, torch.Tensor]:
        """The box tensors of the sample (no batch dimension)."""
        return {
            "region_boxes": torch.from_numpy(self.region_boxes).float(),  # (R, K, 4)
            "region_visible": torch.from_numpy(self.region_visible),  # (R, K)
            "region_times": torch.from_numpy(self.region_times).float(),  # (K,)
        }


def plan_frames(
    num_frames_total: int,
    key_frame: int,
    boxes: Sequence[np.ndarray],
    visible: Sequence[np.ndarray],
    *,
    num_video_frames: int,
    num_track_boxes: int,
    transform: SquareTransform,
    rng: np.random.Generator | None = None,
) -> FramePlan:
    """Choose the video frames and region frames of one sample and map its boxes to the model input.

    Args:
        num_frames_total: frames in the video.
        key_frame: the frame the regions were given on.
        boxes: per region, (T, 4) pixel xyxy on every frame (NaN where unknown).
        visible: per region, (T,) bool.
        num_video_frames / num_track_boxes: the model's ``num_frames`` and ``num_track_boxes``.
        transform: the frame-to-square mapping of the video processor (it carries the frame size).
        rng: training-time jitter of the tracked-frame sampling; None at inference.
    """
    video_frames = sample_indices(num_frames_total, min(num_video_frames, num_frames_total), "midpoint")
    union_visible = np.any(np.stack([np.asarray(v, dtype=bool) for v in visible]), axis=0)  # (T,)
    tracked = track_frame_indices(union_visible, key_frame, num_track_boxes, rng)
    region_frames = np.concatenate([[key_frame], tracked]).astype(np.int64)  # (K,)
    region_boxes = np.stack([transform.boxes_to_model(np.asarray(b)[region_frames]) for b in boxes])  # (R, K, 4)
    region_visible = np.stack([np.asarray(v, dtype=bool)[region_frames] for v in visible])  # (R, K)
    region_visible &= np.isfinite(region_boxes).all(-1)
    region_visible[:, 0] = True  # the user's own box
    times = region_frames / max(num_frames_total - 1, 1)
    return FramePlan(video_frames, region_frames, region_boxes, region_visible, times)


def read_plan_pixels(source, plan: FramePlan, video_processor: VideoProcessor) -> dict[str, torch.Tensor]:
    """Decode every frame the plan needs once and return ``pixel_values`` (T, 3, S, S), ``frame_mask``
    (T,) and ``region_pixel_values`` (K, 3, S, S)."""
    wanted = np.unique(np.concatenate([plan.video_frames, plan.region_frames]))
    pixels = video_processor(source.get_frames(wanted.tolist()))  # (U, 3, S, S)
    position = {int(frame): row for row, frame in enumerate(wanted)}
    return {
        "pixel_values": pixels[[position[int(f)] for f in plan.video_frames]],  # (T, 3, S, S)
        "frame_mask": torch.ones(len(plan.video_frames), dtype=torch.bool),
        "region_pixel_values": pixels[[position[int(f)] for f in plan.region_frames]],  # (K, 3, S, S)
    }
