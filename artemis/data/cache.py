"""A cache of what training would redo every epoch: decoding, tracking and, optionally, the vision tower.

What is cached, per video (one safetensors file for all the records of that video):

* per referring record ``boxes.<slot>`` (N, 4) float64 and ``visible.<slot>`` (N,) bool — the target on
  every frame: the annotation, plus :func:`artemis.track.track_video` from the key box on frames the
  record does not annotate (when a tracker is set). A record about several regions (SynthRef's
  ``videoref45k_pairs.json``) stores region 1 there and region ``r`` (0-based) under
  ``boxes.<slot>.<r>`` / ``visible.<slot>.<r>``; its manifest line lists one key frame per region.
* a **frames cache** (the default): ``frames`` (U, S, S, 3) uint8 — the frames after
  :class:`~artemis.model.processing.VideoProcessor`'s pad-to-square and resize, before normalisation: the
  exact uint8 image the processor normalises, so feeding it back through the processor gives bit-identical
  ``pixel_values`` (checked on every write) — and ``frame_ids`` (U,): the video-token frames (segment
  midpoints) and every frame the tracked-frame jitter may pick (the target's visible frames, thinned to
  ``max_region_candidates`` when set). So every epoch's jitter draw is served from the cache.
* a **features cache** (``features=True``; the vision tower is frozen in every published stage):
  ``video_features`` (num_frames + P, C_v) — the model's ``pool_video_features`` of the video-token frames,
  the model input that replaces ``pixel_values`` — and, for every frame the jitter may pick (and each key
  frame), ``region_frame_ids`` (U_r,) with ``region.<level>`` (U_r, P, C_v): the patch tokens of each
  ``region_feature_layers`` level, the input that replaces ``region_pixel_values``. Stored in
  ``feature_dtype``; no frames. The settings hold :func:`~artemis.model.features.vision_fingerprint` of the
  vision tower and the layers used, and a model with other vision weights is refused.

A dataset reading a frames cache returns pixels, one reading a features cache returns features; both give
the same samples (and the same jitter draws) as the videos.

Layout of the cache directory::

    cache_config.json                      CacheSettings (must match the dataset that reads the cache)
    data/<group>.safetensors               one file per video, written atomically
    manifest-<i>-of-<n>.jsonl              one line per finished video of shard i (append-only)

A video's file is renamed into place before its manifest line is appended and flushed, so a killed run
leaves either a finished video or nothing; a rerun skips every video a manifest lists and redoes the rest.

The frames a record about several regions may show (every region's key frame and visible frames) join the
video's cached frames like a one-region record's, so a dataset reads pair records from the cache too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from artemis.data.media import open_media, record_track, region_candidates, video_frame_indices
from artemis.data.records import RecordEntry
from artemis.errors import AnnotationError, ConfigError, VideoError
from artemis.io import atomic_path, write_json_atomic
from artemis.model.processing import CLIP_MEAN, CLIP_STD, PROCESSOR_FILE, VideoProcessor

if TYPE_CHECKING:
    from artemis.model.configuration import ArtemisConfig
    from artemis.model.features import VisionFeatureExtractor

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
SETTINGS_FILE = "cache_config.json"
FEATURE_DTYPES = ("float32", "float16", "bfloat16")

__all__ = [
    "FEATURE_DTYPES",
    "CacheSettings",
    "CacheSummary",
    "CachedVideo",
    "FeatureCache",
    "build_cache",
    "open_media",
    "precomputed_video_features",
    "record_track",
    "region_candidates",
    "settings_from_model",
    "video_frame_indices",
]


@dataclass
class CacheSettings:
    """Everything that decides the cached tensors; a dataset reads a cache only when they match its own.

    The ``features`` fields are set by :meth:`with_features` (None in a frames cache): the stored dtype, the
    vision tower's fingerprint and the layers and video layout the features were taken with.
    """

    image_size: int
    image_mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    num_frames: int = 100
    max_region_candidates: int | None = None
    tracker: str | None = None
    version: int = CACHE_VERSION
    features: bool = False
    feature_dtype: str | None = None
    vision_fingerprint: str | None = None
    vision_feature_layer: int | None = None
    region_feature_layers: list[int] | None = None
    video_layout: str | None = None
    frame_pool_size: int | None = None

    def video_processor(self) -> VideoProcessor:
        return VideoProcessor(self.image_size, tuple(self.image_mean), tuple(self.image_std))

    def with_features(self, config: ArtemisConfig, fingerprint: str, dtype: str = "float32") -> CacheSettings:
        """These settings for a features cache of a model with ``config`` and vision ``fingerprint``."""
        if dtype not in FEATURE_DTYPES:
            raise ConfigError(f"feature dtype {dtype!r} is not supported; expected one of {', '.join(FEATURE_DTYPES)}")
        layout = getattr(config, "video_layout", "pooled")
        return replace(
            self,
            features=True,
            feature_dtype=dtype,
            vision_fingerprint=fingerprint,
            vision_feature_layer=int(config.vision_feature_layer),
            region_feature_layers=[int(layer) for layer in config.region_feature_layers],
            video_layout=layout,
            frame_pool_size=int(config.frame_feature_grid) if layout == "frames" else None,  # the grid cached
        )

    def check_matches(self, wanted: CacheSettings) -> None:
        """Raise a :class:`ConfigError` naming every field where the cache differs from ``wanted``."""
        if self.features and wanted.features and self.vision_fingerprint != wanted.vision_fingerprint:
            raise ConfigError(
                f"the cache's vision features were computed by another vision tower (fingerprint "
                f"{self.vision_fingerprint}) than this model's ({wanted.vision_fingerprint}); rebuild the cache with "
                "`artemis data cache --features --model DIR` for this model's weights (into a new --out), or use a "
                "cache without --features"
            )
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


# --- reading -----------------------------------------------------------------------------------------


class CachedVideo:
    """The cached tensors of one video, with the reading interface the processor uses.

    ``width``/``height`` are the source's (boxes are mapped with them). A frames cache serves
    ``get_frames``: the cached (N, S, S, 3) uint8 frames, which the video processor turns into the same
    pixel values as the source. A features cache serves ``video_features`` and
    :meth:`region_hidden_states` instead, read from the file only for the frames asked for.

    Attributes:
        tracks: per region, ``(boxes (N, 4), visible (N,), key_frame)`` of the record it was opened for
            (one entry for a one-region record), or None.
        video_features: (num_frames + P, C_v) pooled video features (features cache), else None.
    """

    def __init__(
        self,
        path: Path,
        frames: np.ndarray | None,
        frame_ids: np.ndarray,
        num_frames: int,
        width: int,
        height: int,
        tracks: list[tuple[np.ndarray, np.ndarray, int]] | None = None,
        video_features: torch.Tensor | None = None,
        num_levels: int = 0,
    ) -> None:
        self.path = path
        self.num_frames, self.width, self.height = num_frames, width, height
        self._frames = frames  # (U, S, S, 3), or None in a features cache
        self._rows = {int(frame): row for row, frame in enumerate(frame_ids)}  # frame -> row of the file
        self.tracks = tracks
        self.video_features = video_features
        self.num_levels = num_levels

    def _lookup(self, indices: Sequence[int]) -> list[int]:
        missing = [int(i) for i in indices if int(i) not in self._rows]
        if missing:
            raise VideoError(
                f"frames {missing[:5]} are not in the cache file {self.path}; the cache was built for other "
                "settings or data, rebuild it with `artemis data cache`"
            )
        return [self._rows[int(i)] for i in indices]

    @property
    def track(self) -> tuple[np.ndarray, np.ndarray, int] | None:
        """The first region's track (the only one of a one-region record), or None."""
        return None if self.tracks is None else self.tracks[0]

    def close(self) -> None:
        """Nothing to release (the tensors are in memory); here so a reader of either kind is closed alike."""

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """(N, S, S, 3) uint8 cached frames at ``indices``."""
        if self._frames is None:
            raise VideoError(
                f"{self.path} is in a features cache, which holds vision features instead of frames; read it "
                "through ReferringDataset, or build a cache without --features for pixels"
            )
        return self._frames[self._lookup(indices)]

    def region_hidden_states(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Per region level, (N, P, C_v) hidden states of the frames ``indices`` (features cache)."""
        rows = self._lookup(indices)
        with safe_open(str(self.path), framework="pt") as handle:
            return tuple(handle.get_slice(f"region.{level}")[rows] for level in range(self.num_levels))


@dataclass
class _CachedRecord:
    file: str
    fingerprint: str
    slot: int | None
    key_frame: int | list[int] | None  # one per region for a record about several regions
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
        """The cached frames (and tracks) of ``entry``'s video."""
        versions = self._records.get(entry.key)
        if versions is None:
            raise entry.error(None, f"not in the cache {self.root}; run `artemis data cache` over this file first")
        record = next((r for r in reversed(versions) if r.fingerprint == entry.fingerprint), None)
        if record is None:
            raise entry.error(None, f"changed since the cache {self.root} was built; rebuild the cache")
        path = self.root / record.file
        size = (record.num_frames, record.width, record.height)
        keys = [] if record.slot is None else _as_list(record.key_frame)
        track_names = [_track_names(record.slot, region) for region in range(len(keys))]
        if self.settings.features:  # the region levels are read per item, only the frames it draws
            names = ["video_features", "region_frame_ids", *(name for pair in track_names for name in pair)]
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in names}
        else:
            tensors = load_file(path)
        tracks = None
        if keys:
            tracks = [
                (tensors[boxes].numpy(), tensors[visible].numpy(), int(key))
                for (boxes, visible), key in zip(track_names, keys, strict=True)
            ]
        if self.settings.features:
            levels = len(self.settings.region_feature_layers or [])
            return CachedVideo(
                path, None, tensors["region_frame_ids"].numpy(), *size, tracks, tensors["video_features"], levels
            )
        return CachedVideo(path, tensors["frames"].numpy(), tensors["frame_ids"].numpy(), *size, tracks)


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


def _cache_group(
    members: list[RecordEntry],
    settings: CacheSettings,
    video_processor: VideoProcessor,
    extractor: VisionFeatureExtractor | None,
) -> tuple:
    """Decode (and track) one video: the tensors of its file and the manifest records."""
    precomputed = None if extractor is None else precomputed_video_features(members[0], extractor.config)
    if precomputed is not None and all(entry.kind != "referring" for entry in members):
        # Conversations need the video's features only: the original's pickle stands for the video.
        records = [{"key": e.key, "fingerprint": e.fingerprint, "slot": None, "key_frame": None} for e in members]
        tensors = {
            "video_features": precomputed.to(getattr(torch, settings.feature_dtype)).contiguous(),
            "region_frame_ids": torch.zeros(0, dtype=torch.int64),
        }
        return tensors, records, {"num_frames": 0, "width": 0, "height": 0}
    with open_media(members[0]) as reader:
        total = reader.num_frames
        video_ids = video_frame_indices(total, settings.num_frames)  # (T,)
        region_needed: set[int] = set()
        tensors: dict[str, torch.Tensor] = {}
        records = []
        for slot, entry in enumerate(members):
            record = {"key": entry.key, "fingerprint": entry.fingerprint, "slot": None, "key_frame": None}
            if entry.kind == "referring":
                keys = []
                for region, view in enumerate(entry.regions()):
                    boxes, visible, key_frame = record_track(view, reader, settings.tracker)
                    candidates = region_candidates(visible, key_frame, settings.max_region_candidates)
                    region_needed |= {key_frame, *np.flatnonzero(candidates).tolist()}
                    boxes_name, visible_name = _track_names(slot, region)
                    tensors[boxes_name] = torch.from_numpy(boxes)  # (N, 4) float64
                    tensors[visible_name] = torch.from_numpy(visible)  # (N,) bool
                    keys.append(int(key_frame))
                record.update(slot=slot, key_frame=keys[0] if len(keys) == 1 else keys)
            records.append(record)
        region_ids = np.array(sorted(region_needed), dtype=np.int64)  # (U_r,)
        frame_ids = np.union1d(video_ids, region_ids).astype(np.int64)  # (U,)
        frames = reader.get_frames(frame_ids.tolist())  # (U, H, W, 3)
        size = {"num_frames": int(total), "width": int(reader.width), "height": int(reader.height)}
    if extractor is None:
        tensors["frames"] = torch.from_numpy(quantise_frames(video_processor, frames))  # (U, S, S, 3)
        tensors["frame_ids"] = torch.from_numpy(frame_ids)
        return tensors, records, size
    row = {int(frame): index for index, frame in enumerate(frame_ids)}
    video, levels = extractor(
        video_processor(frames), [row[int(f)] for f in video_ids], [row[int(f)] for f in region_ids]
    )
    dtype = getattr(torch, settings.feature_dtype)
    if precomputed is not None:  # the original's video features (stage 3's clip_path) over the decoded ones
        video = precomputed
    tensors["video_features"] = video.to(device="cpu", dtype=dtype).contiguous()  # (N_v, C_v)
    tensors["region_frame_ids"] = torch.from_numpy(region_ids)
    for level, states in enumerate(levels):
        tensors[f"region.{level}"] = states.to(device="cpu", dtype=dtype).contiguous()  # (U_r, P, C_v)
    return tensors, records, size


def precomputed_video_features(entry: RecordEntry, config: ArtemisConfig) -> torch.Tensor | None:
    """The original Artemis' precomputed video features a record names, or None.

    The original reads, instead of decoding a video, a pickle of its pooled CLIP features (layer -2, 100
    frames: 100 temporal + 256 spatial rows of 1024; ``utils/save_spatio_temporal_clip_features_video.py``),
    named by ``video_clip`` (LLaVA-format records, stages 1-2) or ``clip_path`` (VideoRef45K) relative to
    the data root. These are exactly the model's ``pool_video_features`` output, so they fill a features
    cache's ``video_features``. Pickles can run code when loaded: read only the release's files or your own.

    Returns:
        (num_video_tokens, C_v) float32, or None when the record names no pickle.
    """
    name = entry.sample.metadata.get("video_clip") or entry.sample.metadata.get("clip_path")
    if name is None:
        return None
    path = entry.sample.resolve(name)
    try:
        with open(path, "rb") as handle:
            array = np.asarray(pickle.load(handle), dtype=np.float32)
    except (OSError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise entry.error("video_clip", f"cannot read the precomputed features {path}: {error}") from None
    rows = getattr(config, "num_video_features", config.num_video_tokens)  # the pooled features the model reads
    expected = (rows, config.vision_config.hidden_size)
    if array.shape != expected:
        raise entry.error(
            "video_clip",
            f"the precomputed features {path} have shape {array.shape}; this model's video tokens need {expected} "
            "(num_frames + patches, vision width): features of another vision tower or frame count",
        )
    return torch.from_numpy(array)


def _check_extractor(settings: CacheSettings, extractor: VisionFeatureExtractor | None) -> None:
    """A features cache needs the extractor whose weights and layers the settings name."""
    if not settings.features:
        if extractor is not None:
            raise ConfigError("an extractor was given for a cache without features; use settings.with_features(...)")
        return
    if extractor is None:
        raise ConfigError(
            "settings ask for vision features but no extractor was given; pass "
            "extractor=VisionFeatureExtractor.from_pretrained(model_dir) (the CLI: --features --model DIR)"
        )
    own = settings.with_features(extractor.config, extractor.fingerprint, settings.feature_dtype)
    if own != settings:
        settings.check_matches(own)


def _track_names(slot: int, region: int) -> tuple[str, str]:
    """The tensor names of region ``region``'s track in record ``slot`` (region 0 keeps the one-region names)."""
    suffix = "" if region == 0 else f".{region}"
    return f"boxes.{slot}{suffix}", f"visible.{slot}{suffix}"


def _as_list(key_frame: int | list[int] | None) -> list[int]:
    return list(key_frame) if isinstance(key_frame, list) else [int(key_frame)]


def build_cache(
    entries: Sequence[RecordEntry],
    out_dir: str | Path,
    settings: CacheSettings,
    *,
    shard_index: int | None = None,
    num_shards: int | None = None,
    on_video_done: Callable[[int], None] | None = None,
    extractor: VisionFeatureExtractor | None = None,
) -> CacheSummary:
    """Cache this shard's videos into ``out_dir``, skipping the ones a previous run finished.

    Args:
        entries: the records (:func:`artemis.data.entries.load_entries`); text-only ones need nothing.
        settings: see :class:`CacheSettings` (:func:`settings_from_model` builds them for a model).
        shard_index, num_shards: this process's share, video ``g`` going to shard ``g % num_shards``;
            default ``RANK``/``WORLD_SIZE`` (torchrun) or a single shard.
        on_video_done: called with the number of records of each video written (a progress bar's update).
        extractor: computes the vision features of a features cache (``settings.features``); its vision
            tower must be the one ``settings`` name (:meth:`CacheSettings.with_features`).

    Raises:
        ConfigError: ``out_dir`` holds a cache built with other settings (another model's vision tower
            included), or the extractor does not fit ``settings``.
    """
    started = time.perf_counter()
    root = Path(out_dir)
    shard_index, num_shards = _shard_from_env(shard_index, num_shards)
    _check_extractor(settings, extractor)
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
            tensors, group_records, size = _cache_group(members, settings, video_processor, extractor)
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
