"""``ReferringDataset``: annotation records of any format as training samples for the HF ``Trainer``.

One dataset mixes four kinds of sample (:data:`KINDS`):

* ``referring`` — a record with a target's boxes (VideoRef45K, Elysium, HC-STVG, LaSOT, OTB, SynthRef).
  Frames and region boxes come from :func:`artemis.model.inputs.build_video_inputs`, the function
  inference uses, with a training-time ``rng`` for the tracked-frame jitter; the text is
  ``referring_prompt(question)`` answered by the record's answer or caption.
* ``video`` — a LLaVA / Video-ChatGPT conversation about a video (stages 1–2): midpoint frames, no regions.
* ``image`` — a LLaVA conversation about an image, fed as a one-frame video (``<image>`` becomes ``<video>``).
* ``text`` — a conversation without a video.

Randomness (the jitter, the question paraphrase, mixing) comes from ``np.random.default_rng([seed, epoch,
index])``, so an item is a pure function of ``(seed, epoch, index)``: the same in every worker and on
resume, and different from one epoch to the next. Call :meth:`ReferringDataset.set_epoch` (the
:class:`EpochCallback` does it for the ``Trainer``).

Frames come either from the videos (opened per item, so no reader is shared across data-loader
workers) or from a cache written by :mod:`artemis.data.cache`; both give identical tensors. A cache built
with vision features gives ``video_features`` / ``region_hidden_states`` in place of ``pixel_values`` /
``region_pixel_values`` (the same model outputs; the rest of the item, jitter draws included, is identical).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from artemis.data import formats
from artemis.data.cache import CacheSettings, FeatureCache
from artemis.data.media import (
    jittered_key_frame,
    open_media,
    record_track,
    region_candidates,
    video_frame_indices,
)
from artemis.data.records import RefSample, record_error
from artemis.errors import AnnotationError, ArtemisError, BoxError, ConfigError, VideoError
from artemis.model.configuration import ArtemisConfig
from artemis.model.inputs import build_video_inputs
from artemis.model.processing import ArtemisProcessor
from artemis.templates import DESCRIBE_QUESTIONS, IMAGE_TOKEN, VIDEO_TOKEN, referring_prompt

logger = logging.getLogger(__name__)

Kind = Literal["referring", "video", "image", "text"]
KINDS: tuple[Kind, ...] = ("referring", "video", "image", "text")
# Formats whose files are JSON lists parsed record by record, so one bad record can be skipped alone.
_PER_RECORD_FORMATS = ("videoref45k", "elysium", "llava")

__all__ = ["KINDS", "EpochCallback", "RecordEntry", "ReferringDataset", "load_entries"]


@dataclass
class RecordEntry:
    """One record of one annotation file, checked and classified.

    Attributes:
        sample: the record as a :class:`RefSample`.
        path: the annotation file it was read from.
        index: its position in that file.
        fmt: the format name.
        kind: one of :data:`KINDS`.
        source: position of its file in the list given to the dataset (for mixing weights).
    """

    sample: RefSample
    path: Path
    index: int
    fmt: str
    kind: Kind
    source: int = 0
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def where(self) -> int | str:
        """The record as errors name it: its index, and its id when that is not the index."""
        sample_id = self.sample.sample_id
        return self.index if sample_id == str(self.index) else f"{self.index} ({sample_id})"

    @property
    def key(self) -> str:
        """A key unique across files: ``"<format>:<absolute file>#<index>"`` (the cache is indexed by it)."""
        return f"{self.fmt}:{self.path.resolve()}#{self.index}"

    @property
    def media(self) -> str | None:
        """What the record's pixels come from (an absolute video, image or frame list), or None for text.

        Absolute, so an annotation file named by a relative path in one run and an absolute one in
        another (``artemis data cache`` from one folder, training from another) is the same record.
        """
        sample = self.sample
        if sample.frame_paths is not None:
            return json.dumps([str(Path(sample.resolve(p)).resolve()) for p in sample.frame_paths])
        path = sample.resolve(sample.video if sample.video is not None else sample.image)
        return None if path is None else str(Path(path).resolve())

    @property
    def split_key(self) -> str:
        """The video's identity for the train/val split: the last folder and the file name of its media.

        Not the absolute path, so the split is the same wherever the data set is stored.
        """
        sample = self.sample
        if sample.frame_paths is not None and sample.frame_paths:
            media = Path(sample.resolve(sample.frame_paths[0])).parent
        else:
            path = sample.resolve(sample.video if sample.video is not None else sample.image)
            if path is None:
                return self.key
            media = Path(path)
        return "/".join(media.parts[-2:])

    @property
    def fingerprint(self) -> str:
        """Hash of everything that decides the record's pixels and track (stale-cache detection)."""
        if self._fingerprint is None:
            s = self.sample
            content = [self.kind, self.media, s.frame_ids, [list(b) if b else None for b in s.boxes], s.visible]
            content.append(s.key_frame_id)
            self._fingerprint = hashlib.sha1(json.dumps(content).encode()).hexdigest()[:16]
        return self._fingerprint

    def error(self, field_name: str | None, message: str) -> AnnotationError:
        return record_error(self.path, self.where, field_name, message)


# --- loading -----------------------------------------------------------------------------------------


def _read_file(fmt: str, path: Path, skip: bool, skipped: list[AnnotationError]) -> list[tuple[int, RefSample]]:
    """``(index, sample)`` of every readable record; bad ones raise, or are skipped and collected."""
    module = formats.get_format(fmt)
    if fmt not in _PER_RECORD_FORMATS:
        # HC-STVG (a JSON object), LaSOT and OTB (folders) are read whole; a bad record fails the file.
        return list(enumerate(module.read(path)))
    from artemis.data.formats._common import load_record_list

    out = []
    for index, record in enumerate(load_record_list(path, fmt)):
        try:
            out.append((index, module.parse_record(record, path, index)))
        except AnnotationError as error:
            if not skip:
                raise
            skipped.append(error)
    return out


def _turns(entry: RecordEntry) -> list[tuple[str, str]]:
    """The conversation as ``[(user, answer), ...]`` with exactly one ``<video>`` when there is media."""
    turns = entry.sample.conversations or []
    if len(turns) % 2:
        raise entry.error("conversations", f"{len(turns)} turns; the last human turn has no gpt answer to train on")
    pairs = [
        (turns[i]["value"].replace(IMAGE_TOKEN, VIDEO_TOKEN), turns[i + 1]["value"]) for i in range(0, len(turns), 2)
    ]
    count = sum(user.count(VIDEO_TOKEN) + answer.count(VIDEO_TOKEN) for user, answer in pairs)
    if entry.kind == "text":
        if count:
            raise entry.error(
                "conversations", f"mentions {VIDEO_TOKEN}/{IMAGE_TOKEN} but the record has no video or image"
            )
        return pairs
    if count > 1:
        raise entry.error("conversations", f"has {count} {VIDEO_TOKEN}/{IMAGE_TOKEN} placeholders; expected one")
    if count == 0:  # LLaVA data sometimes omits it; the media then goes before the first question
        pairs[0] = (f"{VIDEO_TOKEN}\n{pairs[0][0]}", pairs[0][1])
    return pairs


def _check_entry(entry: RecordEntry) -> None:
    """Cheap checks done once at construction, so a bad record fails (or is skipped) before training."""
    sample = entry.sample
    if entry.kind == "referring":
        if (sample.answer or sample.caption) is None:
            raise entry.error("caption", "a referring record needs a caption or an answer to train on")
        if sample.question is not None:
            try:
                referring_prompt(sample.question)
            except ValueError as error:
                raise entry.error("question", str(error)) from None
        try:
            sample.key_box  # noqa: B018 - raises when the key frame has no box
        except AnnotationError as error:
            raise entry.error("key_frame_id", str(error).rsplit(": ", 1)[-1]) from None
        if sample.video is None and sample.frame_paths is None:
            raise entry.error("video", "the record names no video file, frame folder or frame images")
    else:
        _turns(entry)
    # Only existence is checked here (a stat); decoding problems surface when the item is read.
    if sample.frame_paths is not None:
        paths = [sample.resolve(p) for p in sample.frame_paths]
    else:
        paths = [sample.resolve(sample.video if sample.video is not None else sample.image)]
    for path in paths:
        if path is not None and not path.exists():
            field_name = {"image": "image", "referring": "frame_path"}.get(entry.kind, "video")
            raise entry.error(field_name, f"the referenced file {path} does not exist")


def _kind(sample: RefSample) -> Kind:
    if sample.has_boxes:
        return "referring"
    if sample.video is not None:
        return "video"
    return "image" if sample.image is not None else "text"


def load_entries(
    files: Sequence[tuple[str, str | Path]], bad_records: Literal["raise", "skip"] = "raise"
) -> tuple[list[RecordEntry], list[AnnotationError]]:
    """Read and check every record of ``files``.

    Args:
        files: ``[(format, path), ...]``.
        bad_records: ``"raise"`` the first malformed record's :class:`AnnotationError`, or ``"skip"`` it.

    Returns:
        ``(entries, skipped)``: the good records and the errors of the skipped ones.
    """
    if bad_records not in ("raise", "skip"):
        raise ConfigError(f"bad_records={bad_records!r}; expected 'raise' or 'skip'")
    skip = bad_records == "skip"
    entries: list[RecordEntry] = []
    skipped: list[AnnotationError] = []
    for source, (fmt, path) in enumerate(files):
        for index, sample in _read_file(fmt, Path(path), skip, skipped):
            entry = RecordEntry(sample, Path(path), index, fmt, _kind(sample), source)
            try:
                _check_entry(entry)
            except AnnotationError as error:
                if not skip:
                    raise
                skipped.append(error)
                continue
            entries.append(entry)
    for error in skipped:
        logger.warning("skipped a bad record: %s", error)
    if skipped:
        logger.warning("skipped %d bad records of %d", len(skipped), len(skipped) + len(entries))
    return entries, skipped


# --- the dataset -------------------------------------------------------------------------------------


class ReferringDataset(Dataset):
    """Referring, video, image and text samples for ``ArtemisForConditionalGeneration``.

    Build it with :meth:`from_files`. An item is a dict of tensors without a batch dimension:
    ``input_ids`` and ``labels`` (L,), and, when the sample has pixels, ``pixel_values`` (T, 3, S, S)
    and ``frame_mask`` (T,); a referring sample also has ``region_pixel_values`` (K, 3, S, S),
    ``region_boxes`` (1, K, 4), ``region_visible`` (1, K) and ``region_times`` (K,). Batch them with
    :class:`artemis.data.collator.ArtemisCollator`.

    With a features cache (``artemis data cache --features``) an item has ``video_features``
    (num_frames + P, C_v) instead of ``pixel_values`` and ``frame_mask``, and ``region_hidden_states`` (one
    (K, P, C_v) tensor per ``region_feature_layers``) instead of ``region_pixel_values``; pass ``model=``
    so the dataset can check that the features came from its vision tower.

    ``key_frame_jitter`` is the probability that a referring item gives the target's box on another frame
    where the target is visible instead of the record's key frame (drawn per seed, epoch and index, like
    the tracked-frame jitter): a user's box may be on any frame, an annotation's key frame is usually the
    target's clearest view. 0, the default, always uses the record's key frame.

    Attributes:
        entries: the records, in file order.
        skipped: the errors of the records skipped at construction (``bad_records="skip"``).
        epoch: the epoch the items are drawn for (see :meth:`set_epoch`).
    """

    def __init__(
        self,
        entries: list[RecordEntry],
        processor: ArtemisProcessor,
        config: ArtemisConfig,
        *,
        weights: Sequence[float] | None = None,
        seed: int = 0,
        tracker: str | None = None,
        max_region_candidates: int | None = None,
        key_frame_jitter: float = 0.0,
        max_length: int | None = None,
        cache_dir: str | Path | None = None,
        model: Any = None,
        skipped: list[AnnotationError] | None = None,
    ) -> None:
        if not 0.0 <= float(key_frame_jitter) <= 1.0:
            raise ConfigError(
                f"key_frame_jitter={key_frame_jitter!r}: it is a probability; use a value from 0 (always the "
                "record's key frame) to 1 (always another frame where the target is visible)"
            )
        self.entries = entries
        self.processor = processor
        self.config = config
        self.seed = int(seed)
        self.tracker = tracker
        self.max_region_candidates = max_region_candidates
        self.key_frame_jitter = float(key_frame_jitter)
        self.max_length = max_length
        self.skipped = list(skipped or [])
        self.epoch = 0
        sources = max((e.source for e in entries), default=-1) + 1
        self.weights = [1.0] * sources if weights is None else [float(w) for w in weights]
        if len(self.weights) < sources or any(w < 0 for w in self.weights):
            raise ConfigError(f"weights={list(self.weights)}: expected one weight >= 0 per file ({sources} files)")
        self.cache = None if cache_dir is None else FeatureCache(cache_dir)
        self.features = self.cache is not None and self.cache.settings.features
        if self.cache is not None:
            if self.tracker is None:  # the tracks were made when the cache was built
                self.tracker = self.cache.settings.tracker
            wanted = self.cache_settings()
            if self.features:
                wanted = wanted.with_features(
                    config, _vision_fingerprint(model, cache_dir), self.cache.settings.feature_dtype
                )
            self.cache.settings.check_matches(wanted)
        self._order = self._mix(0)

    @classmethod
    def from_files(
        cls,
        files: Sequence[tuple[str, str | Path]],
        processor: ArtemisProcessor,
        config: ArtemisConfig,
        *,
        weights: Sequence[float] | None = None,
        split: Literal["train", "val"] | None = None,
        val_fraction: float = 0.05,
        bad_records: Literal["raise", "skip"] = "raise",
        seed: int = 0,
        **options: Any,
    ) -> ReferringDataset:
        """Read ``[(format, path), ...]`` (any format of :data:`artemis.data.formats.FORMATS`).

        Args:
            weights: per file, how many times its records are drawn per epoch (``2.0`` twice each,
                ``0.5`` a different random half every epoch); default 1 each.
            split: keep the ``"train"`` or ``"val"`` part of a split by video (``val_fraction`` of the
                videos, chosen by a hash of the video's folder and file name, so no video is in both and the
                split does not depend on where the data set is stored); None keeps all.
            bad_records: ``"raise"`` on a malformed record, or ``"skip"`` it (counted in ``skipped``).
            seed: base of every random choice.
            options: ``tracker``, ``max_region_candidates``, ``key_frame_jitter``, ``max_length``,
                ``cache_dir``, ``model`` (see :class:`ReferringDataset`).
        """
        entries, skipped = load_entries(files, bad_records)
        if split is not None:
            if split not in ("train", "val"):
                raise ConfigError(f"split={split!r}; expected 'train', 'val' or None")
            entries = [e for e in entries if (_unit_hash(e.split_key) < val_fraction) == (split == "val")]
        return cls(entries, processor, config, weights=weights, seed=seed, skipped=skipped, **options)

    def cache_settings(self) -> CacheSettings:
        """What a cache must have been built with to serve this dataset."""
        vp = self.processor.video_processor
        return CacheSettings(
            image_size=vp.image_size,
            image_mean=list(vp.image_mean),
            image_std=list(vp.image_std),
            num_frames=self.config.num_frames,
            max_region_candidates=self.max_region_candidates,
            tracker=self.tracker,
        )

    # --- epochs and mixing ---------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Draw the items of ``epoch`` (jitter, paraphrases and mixing change; nothing else)."""
        self.epoch = int(epoch)
        self._order = self._mix(self.epoch)

    def _mix(self, epoch: int) -> np.ndarray:
        """Entry positions of the epoch's items: each file's records, repeated/subsampled by its weight."""
        if all(w == 1.0 for w in self.weights):
            return np.arange(len(self.entries))
        rng = np.random.default_rng([self.seed, epoch, 0x6D6978])
        by_source: dict[int, list[int]] = {}
        for position, entry in enumerate(self.entries):
            by_source.setdefault(entry.source, []).append(position)
        order: list[int] = []
        for source, positions in sorted(by_source.items()):
            count = round(self.weights[source] * len(positions))
            repeats, rest = divmod(count, len(positions))
            order += positions * repeats + sorted(rng.choice(positions, rest, replace=False).tolist())
        return np.asarray(order, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._order)

    def entry(self, index: int) -> RecordEntry:
        """The record behind item ``index`` of the current epoch."""
        return self.entries[int(self._order[index])]

    # --- items --------------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        entry = self.entry(index)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        try:
            if entry.kind == "referring":
                return self._referring(entry, rng)
            return self._conversation(entry)
        except AnnotationError:
            raise
        except (VideoError, BoxError) as error:  # name the record: the bare error names only the file
            raise entry.error("video", str(error)) from error
        except ArtemisError as error:
            raise entry.error(None, str(error)) from error

    def _open(self, entry: RecordEntry) -> Any:
        if self.cache is not None:
            return self.cache.video(entry)
        return open_media(entry)

    def _track(self, entry: RecordEntry, reader: Any) -> tuple[np.ndarray, np.ndarray, int]:
        if self.cache is not None:
            return reader.track  # stored with the frames
        return record_track(entry, reader, self.tracker)

    def _referring(self, entry: RecordEntry, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        sample = entry.sample
        # The paraphrase is drawn before the frames so both use the rng in a fixed order.
        question = sample.question
        if question is None:
            question = DESCRIBE_QUESTIONS[int(rng.integers(len(DESCRIBE_QUESTIONS)))]
        answer = sample.answer if sample.answer is not None else sample.caption
        reader = self._open(entry)
        try:
            boxes, visible, key_frame = self._track(entry, reader)
            candidates = region_candidates(visible, key_frame, self.max_region_candidates)
            if self.key_frame_jitter > 0.0 and rng.random() < self.key_frame_jitter:
                key_frame = jittered_key_frame(candidates, key_frame, rng)
            inputs = build_video_inputs(
                reader, key_frame, [boxes], [candidates], self.config, self.processor.video_processor, rng=rng,
                read_pixels=not self.features,
            )  # fmt: skip
            item = {name: value[0] for name, value in inputs.tensors.items()}  # drop the batch dim
            if self.features:
                item["video_features"] = reader.video_features  # (N_v, C_v)
                item["region_hidden_states"] = reader.region_hidden_states(inputs.region_frames)  # L x (K, P, C_v)
        finally:
            _close(reader)
        item.update(self._text(entry, [(referring_prompt(question), answer)]))
        return item

    def _conversation(self, entry: RecordEntry) -> dict[str, torch.Tensor]:
        item = self._text(entry, _turns(entry))
        if entry.kind == "text":
            return item
        reader = self._open(entry)
        if self.features:
            item["video_features"] = reader.video_features  # (N_v, C_v)
            return item
        try:
            frames = reader.get_frames(video_frame_indices(reader.num_frames, self.config.num_frames).tolist())
        finally:
            _close(reader)
        pixels = self.processor.video_processor(frames)  # (T, 3, S, S)
        item["pixel_values"] = pixels
        item["frame_mask"] = torch.ones(len(pixels), dtype=torch.bool)
        return item

    def _text(self, entry: RecordEntry, turns: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        encoded = self.processor.encode_conversation(turns)
        ids, labels = encoded.input_ids, encoded.labels
        if self.max_length is not None and len(ids) > self.max_length:
            slots = {self.config.video_token_id, self.config.region_token_id}
            if any(token in slots for token in ids[self.max_length :]):
                raise entry.error(
                    "conversations" if entry.kind != "referring" else "caption",
                    f"{len(ids)} tokens exceed max_length={self.max_length} and truncation would cut a video or "
                    "region placeholder; raise max_length or shorten the text",
                )
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}


def _vision_fingerprint(model: Any, cache_dir: str | Path) -> str:
    """The fingerprint of ``model``'s vision tower, which a features cache must have been built with."""
    from artemis.model.features import vision_fingerprint

    if getattr(model, "vision_tower", None) is None:
        raise ConfigError(
            f"the cache {cache_dir} holds vision features, so the dataset needs the model they are for: pass "
            "model=<the ArtemisForConditionalGeneration being trained> (only its vision weights' hash is kept), "
            "or use a cache built without --features"
        )
    return vision_fingerprint(model.vision_tower)


def _close(reader: Any) -> None:
    if hasattr(reader, "close"):
        reader.close()


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) for ``text`` (the train/val split by video)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16**12


class EpochCallback(TrainerCallback):
    """Tell a :class:`ReferringDataset` the epoch at the start of each ``Trainer`` epoch.

    The ``Trainer`` does not call ``set_epoch`` on a map-style dataset. The callback runs before the
    epoch's data-loader iterator (and its workers) is created, so workers see the new epoch; with
    ``dataloader_persistent_workers=True`` they would not, so keep it False.
    """

    def __init__(self, dataset: ReferringDataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        self.dataset.set_epoch(round(state.epoch or 0))
        return control
