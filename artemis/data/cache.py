"""A cache of decoded, preprocessed frames and tracks, so training decodes and tracks each video once.

This module also holds what the dataset and the cache share: a record's pixels (:func:`open_media`),
its track on every frame (:func:`record_track`) and the frames the tracked-frame jitter may pick
(:func:`region_candidates`).

What is cached, per video (one safetensors file for all the records of that video):

* ``frames`` (U, S, S, 3) uint8 — the frames after :class:`~artemis.model.processing.VideoProcessor`'s
  pad-to-square and resize, before normalisation: the exact uint8 image the processor normalises, so
  feeding it back through the processor gives bit-identical ``pixel_values`` (checked on every write).
  A quarter of the size of float32 pixel values and independent of the source resolution.
* ``frame_ids`` (U,) — which frames those are: the video-token frames (segment midpoints) and every frame
  the tracked-frame jitter may pick (the target's visible frames, thinned to ``max_region_candidates``
  when set). So every epoch's jitter draw is served from the cache, with no fixed set of draws.
* per referring record ``boxes.<slot>`` (N, 4) float64 and ``visible.<slot>`` (N,) bool — the target on
  every frame: the annotation, plus :func:`artemis.track.track_video` from the key box on frames the
  record does not annotate (when a tracker is set).

Not cached: vision-tower hidden states. The model takes pixel values only; caching hidden states needs a
model input for them (see ``docs/data.md``), and with jittered region frames it would mean the features of
every candidate frame at several layers.

Layout of the cache directory::

    cache_config.json                      CacheSettings (must match the dataset that reads the cache)
    data/<group>.safetensors               one file per video, written atomically
    manifest-<i>-of-<n>.jsonl              one line per finished video of shard i (append-only)

A video's file is renamed into place before its manifest line is appended and flushed, so a killed run
leaves either a finished video or nothing; a rerun skips every video a manifest lists and redoes the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from artemis.errors import AnnotationError, ConfigError, VideoError
from artemis.io import atomic_path, write_json_atomic
from artemis.model.processing import CLIP_MEAN, CLIP_STD, PROCESSOR_FILE, VideoProcessor
from artemis.track.propagate import ArrayVideo
from artemis.video.sampling import sample_indices

if TYPE_CHECKING:
    from artemis.data.dataset import RecordEntry

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
SETTINGS_FILE = "cache_config.json"

__all__ = ["CacheSettings", "CacheSummary", "CachedVideo", "FeatureCache", "build_cache", "settings_from_model"]


@dataclass
class CacheSettings:
    """Everything that decides the cached tensors; a dataset reads a cache only when they match its own."""

    image_size: int
    image_mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    num_frames: int = 100
    max_region_candidates: int | None = None
    tracker: str | None = None
    version: int = CACHE_VERSION

    def video_processor(self) -> VideoProcessor:
        return VideoProcessor(self.image_size, tuple(self.image_mean), tuple(self.image_std))

    def check_matches(self, wanted: CacheSettings) -> None:
        """Raise a :class:`ConfigError` naming every field where the cache differs from ``wanted``."""
        mine, theirs = asdict(self), asdict(wanted)
        diffs = [
            f"{name}: cache {mine[name]!r}, dataset {theirs[name]!r}" for name in mine if mine[name] != theirs[name]
        ]
        if diffs:
            raise ConfigError(
                "the cache was built with other settings than this dataset uses (" + "; ".join(diffs) + "); "
                "rebuild it with `artemis data cache` for this model, or drop cache_dir"
            )


def settings_from_model(
    model: str | Path, *, tracker: str | None = "opencv-csrt", max_region_candidates: int | None = None
) -> CacheSettings:
    """Cache settings for a model directory (``config.json`` + ``processor_config.json``) or config file."""
    import artemis.model  # noqa: F401 - registers model_type "artemis" with AutoConfig
    from artemis.model.configuration import ArtemisConfig

    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model {path} not found; expected a model directory or its config.json")
    config = ArtemisConfig.from_pretrained(path) if path.is_dir() else ArtemisConfig.from_json_file(path)
    processor_file = (path if path.is_dir() else path.parent) / PROCESSOR_FILE
    extra = json.loads(processor_file.read_text()) if processor_file.exists() else {}
    return CacheSettings(
        image_size=int(extra.get("image_size", config.vision_config.image_size)),
        image_mean=[float(v) for v in extra.get("image_mean", CLIP_MEAN)],
        image_std=[float(v) for v in extra.get("image_std", CLIP_STD)],
        num_frames=config.num_frames,
        max_region_candidates=max_region_candidates,
        tracker=tracker,
    )


# --- frames and tracks -------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(f"cannot read image {path}; expected a .jpg/.png file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def open_media(entry: RecordEntry) -> Any:
    """A reader (``num_frames``, ``width``, ``height``, ``get_frames``) over the record's pixels.

    A video file or frame folder opens a :class:`~artemis.video.VideoReader`; frame images (Elysium)
    and a single image are decoded into an :class:`ArrayVideo` whose frame ``i`` is the ``i``-th image.
    """
    sample = entry.sample
    if sample.frame_paths is not None:
        return ArrayVideo([read_image(sample.resolve(p)) for p in sample.frame_paths])
    if entry.kind == "image":
        return ArrayVideo(read_image(sample.resolve(sample.image))[None])
    from artemis.video import VideoReader  # deferred: the readers pull in decord/av on import

    return VideoReader(sample.resolve(sample.video))


def record_track(entry: RecordEntry, reader: Any, tracker: str | None) -> tuple[np.ndarray, np.ndarray, int]:
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
        from artemis.track import track_video

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


def video_frame_indices(total: int, num_frames: int) -> np.ndarray:
    """Frames of the video tokens: midpoints of ``min(num_frames, total)`` segments (as inference)."""
    return sample_indices(total, min(num_frames, total), "midpoint")


# --- reading -----------------------------------------------------------------------------------------


class CachedVideo:
    """The cached frames of one video, with the reading interface ``build_video_inputs`` uses.

    ``width``/``height`` are the source's (boxes are mapped with them); ``get_frames`` returns the cached
    (N, S, S, 3) uint8 frames, which the video processor turns into the same pixel values as the source.

    Attributes:
        track: ``(boxes (N, 4), visible (N,), key_frame)`` of the record it was opened for, or None.
    """

    def __init__(
        self,
        path: Path,
        frames: np.ndarray,
        frame_ids: np.ndarray,
        num_frames: int,
        width: int,
        height: int,
        track: tuple[np.ndarray, np.ndarray, int] | None = None,
    ) -> None:
        self.path = path
        self.num_frames, self.width, self.height = num_frames, width, height
        self._frames = frames  # (U, S, S, 3)
        self._rows = {int(frame): row for row, frame in enumerate(frame_ids)}
        self.track = track

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """(N, S, S, 3) uint8 cached frames at ``indices``."""
        missing = [int(i) for i in indices if int(i) not in self._rows]
        if missing:
            raise VideoError(
                f"frames {missing[:5]} are not in the cache file {self.path}; the cache was built for other "
                "settings or data, rebuild it with `artemis data cache`"
            )
        return self._frames[[self._rows[int(i)] for i in indices]]


@dataclass
class _CachedRecord:
    file: str
    fingerprint: str
    slot: int | None
    key_frame: int | None
    num_frames: int
    width: int
    height: int


def _read_manifests(root: Path) -> list[dict[str, Any]]:
    """Every complete line of every shard's manifest (a torn last line of a killed run is ignored)."""
    lines = []
    for manifest in sorted(root.glob("manifest-*.jsonl")):
        for line in manifest.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                logger.info("ignoring an incomplete line of %s (a killed run)", manifest)
    return lines


class FeatureCache:
    """Read side of a cache directory written by :func:`build_cache`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        settings_path = self.root / SETTINGS_FILE
        if not settings_path.is_file():
            raise FileNotFoundError(
                f"no cache at {self.root} ({SETTINGS_FILE} missing); build it with `artemis data cache`"
            )
        self.settings = CacheSettings(**json.loads(settings_path.read_text()))
        # A record re-cached after its annotation changed has several versions; the lookup picks the one
        # whose fingerprint matches the record as it is now.
        self._records: dict[str, list[_CachedRecord]] = {}
        for group in _read_manifests(self.root):
            for record in group["records"]:
                self._records.setdefault(record["key"], []).append(
                    _CachedRecord(
                        group["file"],
                        record["fingerprint"],
                        record["slot"],
                        record["key_frame"],
                        group["num_frames"],
                        group["width"],
                        group["height"],
                    )
                )

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def video(self, entry: RecordEntry) -> CachedVideo:
        """The cached frames (and track) of ``entry``'s video."""
        versions = self._records.get(entry.key)
        if versions is None:
            raise entry.error(None, f"not in the cache {self.root}; run `artemis data cache` over this file first")
        record = next((r for r in reversed(versions) if r.fingerprint == entry.fingerprint), None)
        if record is None:
            raise entry.error(None, f"changed since the cache {self.root} was built; rebuild the cache")
        path = self.root / record.file
        tensors = load_file(path)
        track = None
        if record.slot is not None:
            boxes = tensors[f"boxes.{record.slot}"].numpy()
            visible = tensors[f"visible.{record.slot}"].numpy()
            track = (boxes, visible, int(record.key_frame))
        return CachedVideo(
            path, tensors["frames"].numpy(), tensors["frame_ids"].numpy(), record.num_frames, record.width,
            record.height, track,
        )  # fmt: skip


# --- writing -----------------------------------------------------------------------------------------


@dataclass
class CacheSummary:
    """What one :func:`build_cache` run did."""

    shard_index: int
    num_shards: int
    videos_written: int
    videos_already_done: int
    records: int
    seconds: float


def quantise_frames(video_processor: VideoProcessor, frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, S, S, 3) uint8: the padded, resized frames the processor normalises.

    Recovered by inverting the normalisation and rounding (exact: the processor's resize yields uint8),
    then checked: the processor must give bit-identical pixel values from the result.
    """
    pixels = video_processor(frames)  # (N, 3, S, S)
    mean = torch.tensor(video_processor.image_mean)[None, :, None, None]
    std = torch.tensor(video_processor.image_std)[None, :, None, None]
    quantised = torch.round((pixels * std + mean) * 255.0).clamp(0, 255).to(torch.uint8)  # (N, 3, S, S)
    out = quantised.permute(0, 2, 3, 1).contiguous().numpy()  # (N, S, S, 3)
    if not torch.equal(video_processor(out), pixels):
        raise RuntimeError(
            "the video processor does not reproduce its pixel values from its own resized frames, so cached "
            "frames would differ from the video's; the frame cache cannot be used with this processor"
        )
    return out


def group_entries(entries: Sequence[RecordEntry]) -> list[tuple[str, list[RecordEntry]]]:
    """Records grouped by the video they read, in order of first appearance, with a stable group id.

    The id hashes the video and its records' keys and fingerprints, so a changed record gets a new file.
    """
    groups: dict[str, list[RecordEntry]] = {}
    for entry in entries:
        if entry.media is not None:
            groups.setdefault(entry.media, []).append(entry)
    out = []
    for media, members in groups.items():
        content = json.dumps([media, [(e.key, e.fingerprint) for e in members]])
        out.append((hashlib.sha1(content.encode()).hexdigest()[:20], members))
    return out


def _shard_from_env(shard_index: int | None, num_shards: int | None) -> tuple[int, int]:
    """Explicit values win; otherwise torchrun's ``RANK``/``WORLD_SIZE``; otherwise one shard."""
    if shard_index is None and num_shards is None:
        shard_index, num_shards = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    shard_index, num_shards = shard_index or 0, num_shards or 1
    if not 0 <= shard_index < num_shards:
        raise ConfigError(f"shard index {shard_index} is not in 0..{num_shards - 1} (num_shards={num_shards})")
    return shard_index, num_shards


def _cache_group(members: list[RecordEntry], settings: CacheSettings, video_processor: VideoProcessor) -> tuple:
    """Decode (and track) one video: the tensors of its file and the manifest records."""
    reader = open_media(members[0])
    try:
        total = reader.num_frames
        needed = set(video_frame_indices(total, settings.num_frames).tolist())
        tensors: dict[str, torch.Tensor] = {}
        records = []
        for slot, entry in enumerate(members):
            record = {"key": entry.key, "fingerprint": entry.fingerprint, "slot": None, "key_frame": None}
            if entry.kind == "referring":
                boxes, visible, key_frame = record_track(entry, reader, settings.tracker)
                candidates = region_candidates(visible, key_frame, settings.max_region_candidates)
                needed |= {key_frame, *np.flatnonzero(candidates).tolist()}
                tensors[f"boxes.{slot}"] = torch.from_numpy(boxes)  # (N, 4) float64
                tensors[f"visible.{slot}"] = torch.from_numpy(visible)  # (N,) bool
                record.update(slot=slot, key_frame=int(key_frame))
            records.append(record)
        frame_ids = np.array(sorted(needed), dtype=np.int64)  # (U,)
        frames = reader.get_frames(frame_ids.tolist())  # (U, H, W, 3)
        size = {"num_frames": int(total), "width": int(reader.width), "height": int(reader.height)}
    finally:
        if hasattr(reader, "close"):
            reader.close()
    tensors["frames"] = torch.from_numpy(quantise_frames(video_processor, frames))  # (U, S, S, 3)
    tensors["frame_ids"] = torch.from_numpy(frame_ids)
    return tensors, records, size


def build_cache(
    entries: Sequence[RecordEntry],
    out_dir: str | Path,
    settings: CacheSettings,
    *,
    shard_index: int | None = None,
    num_shards: int | None = None,
    on_video_done: Callable[[int], None] | None = None,
) -> CacheSummary:
    """Cache this shard's videos into ``out_dir``, skipping the ones a previous run finished.

    Args:
        entries: the records (:func:`artemis.data.dataset.load_entries`); text-only ones need nothing.
        settings: see :class:`CacheSettings` (:func:`settings_from_model` builds them for a model).
        shard_index, num_shards: this process's share, video ``g`` going to shard ``g % num_shards``;
            default ``RANK``/``WORLD_SIZE`` (torchrun) or a single shard.
        on_video_done: called with the number of records of each video written (a progress bar's update).

    Raises:
        ConfigError: ``out_dir`` holds a cache built with other settings.
    """
    started = time.perf_counter()
    root = Path(out_dir)
    shard_index, num_shards = _shard_from_env(shard_index, num_shards)
    settings_path = root / SETTINGS_FILE
    if settings_path.exists():
        CacheSettings(**json.loads(settings_path.read_text())).check_matches(settings)
    else:
        write_json_atomic(settings_path, asdict(settings))
    # Any shard layout of an earlier run counts: resuming with another --num-shards redoes nothing.
    done = {line["group"] for line in _read_manifests(root) if (root / line["file"]).is_file()}
    manifest = root / f"manifest-{shard_index:05d}-of-{num_shards:05d}.jsonl"
    if manifest.exists() and manifest.stat().st_size and not manifest.read_bytes().endswith(b"\n"):
        with manifest.open("a") as handle:  # close a line torn by a kill, so the next one starts clean
            handle.write("\n")
    video_processor = settings.video_processor()
    groups = group_entries(entries)[shard_index::num_shards]
    written = skipped = records = 0
    for group_id, members in groups:
        records += len(members)
        if group_id in done:
            skipped += 1
            continue
        try:
            tensors, group_records, size = _cache_group(members, settings, video_processor)
        except VideoError as error:  # name the records: the bare error names only the file
            names = ", ".join(str(m.where) for m in members)
            raise AnnotationError(f"{members[0].path}: records {names}: field 'video': {error}") from error
        relative = f"data/{group_id}.safetensors"
        with atomic_path(root / relative) as tmp:
            save_file(tensors, str(tmp), metadata={"version": str(CACHE_VERSION)})
        line = json.dumps({"group": group_id, "file": relative, **size, "records": group_records})
        with manifest.open("a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        written += 1
        if on_video_done is not None:
            on_video_done(len(members))
    seconds = time.perf_counter() - started
    logger.info(
        "cache shard %d/%d: %d videos written, %d already done, %d records, %.1f s",
        shard_index, num_shards, written, skipped, records, seconds,
    )  # fmt: skip
    return CacheSummary(shard_index, num_shards, written, skipped, records, seconds)
