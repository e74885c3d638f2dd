"""``BoxOutDataset``: SOT and RSOT clips of tracking records, to train a model to write boxes (Elysium).

Each record (ElysiumTrack-1M, or any format with per-frame boxes) is cut into clips with the schedule
inference uses (:func:`artemis.tasks.box_output.clip_starts`: 8 frames, stride 7, the last clip moved back to end
on the last frame). A clip gives

* an **SOT** item when the target is visible on its first frame: the question carries that box, the
  answer lists the box on every frame of the clip;
* an **RSOT** item when the record has a description (``object_description``): the question carries
  the expression, the answer is the same.

Items come from :meth:`artemis.model.ArtemisProcessor.box_output_item`, the builder inference uses, so the
prompt of a training clip and of the same clip at inference are the same ids; labels cover the answer only. Boxes
are written on the model's square input (:class:`artemis.boxes.SquareTransform`); a frame where the
target is absent or hidden is written ``[0,0,0,0]``, which inference reads as an invalid box. Items hold
``input_ids``, ``labels``, ``pixel_values`` (n, 3, S, S) and ``frame_mask`` (n,), which
:class:`artemis.data.collator.ArtemisCollator` batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from artemis.data import formats
from artemis.data.records import RefSample, record_error
from artemis.errors import ConfigError, VideoError
from artemis.model.configuration import ArtemisConfig
from artemis.model.processing import ArtemisProcessor
from artemis.tasks.box_output import CLIP_LENGTH, clip_starts, require_task
from artemis.video import opened

logger = logging.getLogger(__name__)

Task = Literal["sot", "rsot"]
TASKS: tuple[Task, ...] = ("sot", "rsot")

__all__ = ["TASKS", "BoxOutClip", "BoxOutDataset", "read_record_frames"]


@dataclass(frozen=True)
class BoxOutClip:
    """One training item: ``task`` on the frames ``positions`` (indices into the record's annotated frames)."""

    record: int
    task: Task
    positions: tuple[int, ...]


def read_record_frames(sample: RefSample, positions: Sequence[int]) -> np.ndarray:
    """The record's annotated frames at ``positions`` (indices into ``frame_ids``): (n, H, W, 3) uint8 RGB.

    Frames come from the record's video file or folder (at their frame ids) or from its image list; only
    the frames asked for are decoded.
    """
    if sample.video is None and sample.frame_paths is None:
        raise VideoError(f"record {sample.sample_id} has no video and no frame paths; it cannot be trained on")
    try:
        if sample.frame_paths is not None:
            # Only the clip's images: an image list over them decodes each once and nothing else.
            with opened([sample.resolve(sample.frame_paths[p]) for p in positions]) as video:
                return video.get_frames(list(range(len(positions))))
        with opened(sample.resolve(sample.video)) as video:
            return video.get_frames([sample.frame_ids[p] for p in positions])
    except VideoError as error:
        raise VideoError(f"record {sample.sample_id}: {error}") from None


class BoxOutDataset(Dataset):
    """SOT / RSOT clips of tracking records for ``Trainer`` (``data_collator=ArtemisCollator(...)``).

    Args:
        samples: records with per-frame boxes (e.g. ``formats.read("elysium", path)``).
        processor: the model's processor (tokenizer, frame preprocessing).
        config: the model's config; must have ``video_layout="frames"``.
        tasks: which items to make, ``("sot", "rsot")`` by default.
        clip_length / stride: the clip schedule (default ``min(8, num_frames)`` and one less), as inference.

    Raises:
        ConfigError: a pooled-layout config, an unknown task, or records that give no clip.
    """

    def __init__(
        self,
        samples: Sequence[RefSample],
        processor: ArtemisProcessor,
        config: ArtemisConfig,
        *,
        tasks: Sequence[Task] = TASKS,
        clip_length: int | None = None,
        stride: int | None = None,
    ) -> None:
        require_task(config, "boxes", "the model to train")  # its config must say it writes boxes
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ConfigError(f"tasks={list(tasks)!r} is not valid; expected a non-empty subset of {list(TASKS)}")
        self.samples = list(samples)
        self.processor = processor
        self.config = config
        self.clip_length = clip_length or min(CLIP_LENGTH, config.num_frames)
        if self.clip_length > config.num_frames:
            raise ConfigError(f"clip_length={self.clip_length} exceeds the model's num_frames={config.num_frames}")
        self.stride = self.clip_length - 1 if stride is None else stride
        self.clips: list[BoxOutClip] = []
        for index, sample in enumerate(self.samples):
            if not sample.has_boxes:
                continue
            _, visible = sample.boxes_array()
            for start in clip_starts(len(sample.frame_ids), self.clip_length, self.stride):
                positions = tuple(range(start, min(start + self.clip_length, len(sample.frame_ids))))
                if "sot" in tasks and visible[start]:
                    self.clips.append(BoxOutClip(index, "sot", positions))
                if "rsot" in tasks and sample.caption:
                    self.clips.append(BoxOutClip(index, "rsot", positions))
        if not self.clips:
            raise ConfigError(
                f"no {'/'.join(tasks)} clip in {len(self.samples)} record(s): SOT needs a visible target on a "
                "clip's first frame, RSOT a description (object_description)"
            )
        logger.info("box-out dataset: %d clips from %d records", len(self.clips), len(self.samples))

    @classmethod
    def from_files(
        cls,
        paths: Sequence[str | Path],
        processor: ArtemisProcessor,
        config: ArtemisConfig,
        *,
        fmt: str = "elysium",
        **options: Any,
    ) -> BoxOutDataset:
        """Read annotation files of format ``fmt`` (default ElysiumTrack-1M) and build the dataset."""
        samples = [s for path in paths for s in formats.read(fmt, Path(path)) if s.has_boxes]
        return cls(samples, processor, config, **options)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        sample = self.samples[clip.record]
        frames = read_record_frames(sample, clip.positions)  # (n, H, W, 3)
        height, width = frames.shape[1:3]
        if sample.width is not None and (sample.width, sample.height) != (width, height):
            raise record_error(
                sample.base_dir,
                sample.sample_id,
                "frame_size",
                f"{sample.width}x{sample.height} but the frames decode at {width}x{height}; fix the record's size",
            )
        boxes, visible = sample.boxes_array()
        boxes = boxes[list(clip.positions)]
        boxes[~visible[list(clip.positions)]] = np.nan  # hidden or absent -> written [0,0,0,0]
        if clip.task == "sot":
            return self.processor.box_output_item(frames, box=boxes[0], answer_boxes=boxes)
        return self.processor.box_output_item(frames, expression=sample.caption or "", answer_boxes=boxes)
