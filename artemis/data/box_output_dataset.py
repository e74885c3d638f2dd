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
:class:`artemis.data.collator.ArtemisCollator` batches (with ``vision_features``, ``video_features``
instead of the pixels, so they batch with the items of a features cache).

Decoding: a clip reads only its frames, and a small video (at most ``max_video_mb`` decoded) is decoded
whole once and kept in an in-process LRU of ``video_cache_mb`` (:class:`DecodedVideoCache`), since every
record is cut into several clips and a video holds several records.

SOT prompt jitter (``sot_box_jitter``, default 0): each edge of the box given in an SOT prompt moves by a
uniform draw of up to that fraction of the box's width / height; the answer keeps the exact boxes, so
the model learns to correct a box chained from the previous clip.

History noise (``box_history_noise``, default 0): under teacher forcing the LLM reads the exact boxes of
the frames before the one it writes, and SynthRef's objects move in straight lines, so after two frames it
can extrapolate the rest without looking at the frames; at inference it reads its own boxes instead. With
``box_history_noise=r`` each answer box the LLM reads back is moved by whole units of the 0..100 grid,
``dx, dy`` drawn uniformly from ``-r..r`` per frame (per seed, epoch and item); the labels stay exact, so
the loss rewards reading the frame over extrapolating a shaky history (the usual remedy for exposure bias).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from artemis.data.entries import read_track_records
from artemis.data.records import RefSample, record_error
from artemis.errors import ConfigError, VideoError, is_int, is_real
from artemis.model.configuration import ArtemisConfig
from artemis.model.processing import ArtemisProcessor
from artemis.tasks.box_output import CLIP_LENGTH, clip_starts, require_task
from artemis.video import opened

logger = logging.getLogger(__name__)

Task = Literal["sot", "rsot"]
TASKS: tuple[Task, ...] = ("sot", "rsot")

__all__ = ["TASKS", "BoxOutClip", "BoxOutDataset", "DecodedVideoCache", "jitter_box", "read_record_frames"]

# A video larger than this decoded is not kept whole by default (DecodedVideoCache's max_video_bytes).
MAX_VIDEO_MB = 32.0

# Extracts video features from processed frames: (n, 3, S, S) -> (num_frames * tokens, C_v), e.g. a
# ``VisionFeatureExtractor`` bound to the trained model (see ``BoxOutDataset``).
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BoxOutClip:
    """One training item: ``task`` on the frames ``positions`` (indices into the record's annotated frames)."""

    record: int
    task: Task
    positions: tuple[int, ...]


class DecodedVideoCache:
    """A least-recently-used store of whole decoded small videos, bounded in bytes.

    Hand-written because ``functools.lru_cache`` bounds entries, not bytes, and cannot skip large videos.
    Each data-loader worker has its own (nothing is shared between processes).

    Args:
        max_bytes: total size of the frames kept (0 keeps nothing).
        max_video_bytes: a video larger than this decoded is never kept; its clips decode their frames only.
    """

    def __init__(self, max_bytes: int, max_video_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.max_video_bytes = int(max_video_bytes)
        self._videos: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def frames(self, path: Path, frame_ids: Sequence[int]) -> np.ndarray:
        """Frames ``frame_ids`` of the video file or folder ``path``: (n, H, W, 3) uint8 RGB."""
        key = str(path)
        whole = self._videos.get(key)
        if whole is not None:
            self.hits += 1
            self._videos.move_to_end(key)
            return whole[list(frame_ids)]
        self.misses += 1
        with opened(path) as video:
            size = video.num_frames * video.height * video.width * 3
            if not 0 < size <= min(self.max_video_bytes, self.max_bytes):
                return video.get_frames(list(frame_ids))
            whole = video.get_frames(list(range(video.num_frames)))  # (T, H, W, 3)
        self._videos[key] = whole
        self._bytes += whole.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._videos.popitem(last=False)
            self._bytes -= dropped.nbytes
        return whole[list(frame_ids)]


def read_record_frames(
    sample: RefSample, positions: Sequence[int], cache: DecodedVideoCache | None = None
) -> np.ndarray:
    """The record's annotated frames at ``positions`` (indices into ``frame_ids``): (n, H, W, 3) uint8 RGB.

    Frames come from the record's video file or folder (at their frame ids) or from its image list; only
    the frames asked for are decoded, unless ``cache`` keeps the whole (small) video.
    """
    if sample.video is None and sample.frame_paths is None:
        raise VideoError(f"record {sample.sample_id} has no video and no frame paths; it cannot be trained on")
    try:
        if sample.frame_paths is not None:
            # Only the clip's images: an image list over them decodes each once and nothing else.
            with opened([sample.resolve(sample.frame_paths[p]) for p in positions]) as video:
                return video.get_frames(list(range(len(positions))))
        frame_ids = [sample.frame_ids[p] for p in positions]
        if cache is not None:
            return cache.frames(sample.resolve(sample.video), frame_ids)
        with opened(sample.resolve(sample.video)) as video:
            return video.get_frames(frame_ids)
    except VideoError as error:
        raise VideoError(f"record {sample.sample_id}: {error}") from None


def jitter_box(
    box: np.ndarray, fraction: float, width: int, height: int, rng: np.random.Generator, shift: float = 0.0
) -> np.ndarray:
    """``box`` (pixel xyxy) with each edge moved by up to ``fraction`` of the box's width / height, then
    the whole box moved by up to ``shift`` of its width / height (its size kept).

    The result stays inside the ``width`` x ``height`` frame and at least one pixel wide and high.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    dx1, dy1, dx2, dy2 = rng.uniform(-fraction, fraction, size=4) * np.array([w, h, w, h])
    x1, x2, y1, y2 = x1 + dx1, x2 + dx2, y1 + dy1, y2 + dy2
    if shift > 0.0:  # drawn only when asked, so the edge draws of a seed stay those of earlier runs
        sx, sy = rng.uniform(-shift, shift, size=2) * np.array([w, h])
        x1, x2, y1, y2 = x1 + sx, x2 + sx, y1 + sy, y2 + sy
    x1, x2 = np.clip([x1, x2], 0.0, width)
    y1, y2 = np.clip([y1, y2], 0.0, height)
    if x2 - x1 < 1.0 or y2 - y1 < 1.0:  # a tiny box jittered away: keep the true one
        return np.asarray(box, dtype=np.float64)
    return np.array([x1, y1, x2, y2], dtype=np.float64)


class BoxOutDataset(Dataset):
    """SOT / RSOT clips of tracking records for ``Trainer`` (``data_collator=ArtemisCollator(...)``).

    Args:
        samples: records with per-frame boxes (e.g. ``formats.read("elysium", path)``).
        processor: the model's processor (tokenizer, frame preprocessing).
        config: the model's config; must have ``video_layout="frames"``.
        tasks: which items to make, ``("sot", "rsot")`` by default.
        clip_length / stride: the clip schedule (default ``min(8, num_frames)`` and one less), as inference.
        sot_box_jitter: SOT prompts give the first-frame box with each edge moved by up to this fraction of
            the box's size (0, the default, gives the exact box); drawn per seed, epoch and item.
        sot_box_shift: and then moves the whole box, its size kept, by up to this fraction of its width /
            height (0, the default: no move).
        box_history_noise: the largest move, in units of the 0..100 box grid, of each answer box as the LLM
            reads it back in training (0, the default: exact); the labels stay exact.
        sot_query_exact: the frame selector's query reads the exact first-frame box while the prompt gives the
            jittered one (False, the default: both the jittered one), as at inference with a fixed template,
            whose query comes from the user's box.
        seed: base of the jitter draws.
        video_cache_mb / max_video_mb: the LRU of whole decoded small videos (0 turns it off).
        video_cache: a :class:`DecodedVideoCache` to use instead of a new one of ``video_cache_mb``, so that
            datasets over the same videos (an SOT and an RSOT file) decode each video once between them.
        vision_features: give items ``video_features`` computed by this function from the clip's processed
            frames instead of ``pixel_values`` (to batch with a features cache; the vision tower is frozen).

    Raises:
        ConfigError: a pooled-layout config, an unknown task, a jitter outside [0, 0.5], or records that
            give no clip.
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
        sot_box_jitter: float = 0.0,
        sot_box_shift: float = 0.0,
        box_history_noise: int = 0,
        sot_query_exact: bool = False,
        seed: int = 0,
        video_cache_mb: float = 512.0,
        max_video_mb: float = MAX_VIDEO_MB,
        video_cache: DecodedVideoCache | None = None,
        vision_features: FeatureFn | None = None,
    ) -> None:
        require_task(config, "boxes", "the model to train")  # its config must say it writes boxes
        if not is_real(sot_box_jitter, 0, 0.5):
            raise ConfigError(
                f"sot_box_jitter={sot_box_jitter!r}: it is the largest move of a box edge as a fraction of the "
                "box's size; use a number from 0 (exact box) to 0.5"
            )
        self.sot_box_jitter = float(sot_box_jitter)
        if not is_real(sot_box_shift, 0, 1):
            raise ConfigError(
                f"sot_box_shift={sot_box_shift!r}: it is the largest move of the whole box as a fraction of its "
                "size; use a number from 0 (no move) to 1"
            )
        self.sot_box_shift = float(sot_box_shift)
        if not is_int(box_history_noise, 0, 20):
            raise ConfigError(
                f"box_history_noise={box_history_noise!r}: it is the largest move of a box the LLM reads back, in "
                "units of the 0..100 box grid; use a whole number from 0 (exact) to 20"
            )
        self.box_history_noise = box_history_noise
        if not isinstance(sot_query_exact, bool):
            raise ConfigError(f"sot_query_exact={sot_query_exact!r}; expected true or false")
        self.sot_query_exact = sot_query_exact
        self.seed = int(seed)
        self.epoch = 0
        if video_cache is None:
            video_cache = DecodedVideoCache(int(video_cache_mb * 2**20), int(max_video_mb * 2**20))
        self.video_cache = video_cache
        self.vision_features = vision_features
        self.skipped: list = []
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ConfigError(f"tasks={list(tasks)!r} is not valid; expected a non-empty subset of {list(TASKS)}")
        self.tasks: tuple[Task, ...] = tuple(tasks)
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
        bad_records: Literal["raise", "skip"] = "raise",
        **options: Any,
    ) -> BoxOutDataset:
        """Read annotation files of format ``fmt`` (default ElysiumTrack-1M) and build the dataset.

        A malformed record, one without a track or whose media is missing raises an ``AnnotationError``
        naming it, or with ``bad_records="skip"`` is left out (kept in ``dataset.skipped``).
        """
        samples: list[RefSample] = []
        skipped = []
        for path in paths:
            good, bad = read_track_records(fmt, path, bad_records)
            samples += good
            skipped += bad
        dataset = cls(samples, processor, config, **options)
        dataset.skipped = skipped
        return dataset

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Draw the jitter of ``epoch`` (nothing else changes between epochs)."""
        self.epoch = int(epoch)

    def clip_key(self, index: int) -> str:
        """``"<task>:<record id>@<first position>"``: which clip item ``index`` is (logs)."""
        clip = self.clips[index]
        return f"{clip.task}:{self.samples[clip.record].sample_id}@{clip.positions[0]}"

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self._item(index)
        if self.vision_features is not None:
            pixels = item.pop("pixel_values")  # (n, 3, S, S)
            del item["frame_mask"]
            item["video_features"] = self.vision_features(pixels)  # (N_v, C_v)
        return item

    def _item(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        sample = self.samples[clip.record]
        frames = read_record_frames(sample, clip.positions, self.video_cache)  # (n, H, W, 3)
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
        history = None  # (n, 2) moves of the boxes the LLM reads back, in the answer's 0..100 units
        if self.box_history_noise:
            rng = np.random.default_rng([self.seed, self.epoch, int(index), 0x484953])
            history = rng.integers(-self.box_history_noise, self.box_history_noise + 1, size=(len(boxes), 2))
        if clip.task == "sot":
            box = boxes[0]
            if self.sot_box_jitter > 0.0 or self.sot_box_shift > 0.0:
                rng = np.random.default_rng([self.seed, self.epoch, int(index), 0x534F54])
                box = jitter_box(box, self.sot_box_jitter, width, height, rng, self.sot_box_shift)
            query = boxes[0] if self.sot_query_exact else None
            return self.processor.box_output_item(
                frames, box=box, answer_boxes=boxes, history_moves=history, query_box=query
            )
        return self.processor.box_output_item(
            frames, expression=sample.caption or "", answer_boxes=boxes, history_moves=history
        )
