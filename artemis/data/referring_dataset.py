"""``ReferringDataset``: annotation records of any format as training samples for the HF ``Trainer``.

One dataset mixes four kinds of sample (:data:`KINDS`):

* ``referring`` — a record with a target's boxes (VideoRef45K, Elysium, HC-STVG, LaSOT, OTB, SynthRef).
  Frames and region boxes come from :meth:`artemis.model.ArtemisProcessor.referring_visuals`, the method
  inference uses, with a training-time ``rng`` for the tracked-frame jitter; the text is the processor's
  referring layout of the question, answered by the record's answer or caption. A record about several
  regions (VideoRef45K's multi-region shape, SynthRef's ``videoref45k_pairs.json``) is built as ``ask``
  builds its prompt: every region's track with its own key frame, one key slot frame showing them all
  (:func:`artemis.model.processing.shared_key_frame`), and the N-region text layout.
* ``video`` — a LLaVA / Video-ChatGPT conversation about a video (stages 1–2): midpoint frames, no regions.
* ``image`` — a LLaVA conversation about an image (``<image>`` becomes ``<video>``): a one-frame video, or,
  with the model's ``image_tokens="patches"`` (the original), the image's patch tokens (``image_mask``).
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
import logging
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from artemis.data.cache import CachedVideo, CacheSettings, FeatureCache
from artemis.data.entries import conversation_turns, load_entries
from artemis.data.media import (
    jittered_key_frame,
    open_media,
    record_track,
    region_candidates,
    video_frame_indices,
)
from artemis.data.records import RecordEntry
from artemis.errors import AnnotationError, ArtemisError, BoxError, ConfigError, VideoError
from artemis.model.configuration import ArtemisConfig
from artemis.model.processing import ArtemisProcessor, EncodedText
from artemis.prompts import DESCRIBE_QUESTIONS
from artemis.regions import load_mask
from artemis.video import VideoSource

logger = logging.getLogger(__name__)

__all__ = ["EpochCallback", "ReferringDataset", "weighted_draw"]


# --- the dataset -------------------------------------------------------------------------------------


def weighted_draw(positions: Sequence[int] | np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
    """One epoch's items of a file of weight ``weight``: ``round(weight * n)`` of its ``n`` positions, each
    position ``floor`` of that many times over, then the rest drawn without replacement, in order."""
    positions = np.asarray(positions, dtype=np.int64)
    repeats, rest = divmod(round(weight * len(positions)), len(positions))
    chosen = np.sort(rng.choice(positions, rest, replace=False))
    return np.concatenate([np.tile(positions, repeats), chosen]).astype(np.int64)


class ReferringDataset(Dataset):
    """Referring, video, image and text samples for ``ArtemisForConditionalGeneration``.

    Build it with :meth:`from_files`. An item is a dict of tensors without a batch dimension:
    ``input_ids`` and ``labels`` (L,), and, when the sample has pixels, ``pixel_values`` (T, 3, S, S)
    and ``frame_mask`` (T,); a referring sample also has ``region_pixel_values`` (K, 3, S, S),
    ``region_boxes`` (R, K, 4), ``region_visible`` (R, K) and ``region_times`` (K,), R being the record's
    number of regions (1 but for a multi-region record). Batch them with
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
        mask_prompts: float = 0.0,
        max_length: int | None = None,
        media_counts_as_one: bool = False,
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
        if not 0.0 <= float(mask_prompts) <= 1.0:
            raise ConfigError(
                f"mask_prompts={mask_prompts!r}: it is a probability; use a value from 0 (always the box) to 1 "
                "(the record's key-frame mask whenever it has one)"
            )
        self.mask_prompts = float(mask_prompts)
        self.max_length = max_length
        self.media_counts_as_one = bool(media_counts_as_one)
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
        self._check_images()
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
            options: ``tracker``, ``max_region_candidates``, ``key_frame_jitter``, ``mask_prompts``, ``max_length``,
                ``media_counts_as_one``,
                ``cache_dir``, ``model`` (see :class:`ReferringDataset`).
        """
        entries, skipped = load_entries(files, bad_records)
        if split is not None:
            if split not in ("train", "val"):
                raise ConfigError(f"split={split!r}; expected 'train', 'val' or None")
            entries = [e for e in entries if (_unit_hash(e.split_key) < val_fraction) == (split == "val")]
        return cls(entries, processor, config, weights=weights, seed=seed, skipped=skipped, **options)

    def _check_images(self) -> None:
        """Image samples as patch tokens need a processor sized for them, and features that keep the patches."""
        if self.config.image_tokens != "patches" or not any(e.kind == "image" for e in self.entries):
            return
        if self.processor.num_image_tokens != self.config.num_image_tokens:
            raise ConfigError(
                f"the processor expands an image to {self.processor.num_image_tokens} tokens but the model config "
                f"(image_tokens='patches') to {self.config.num_image_tokens}; build the processor from this config"
            )
        if self.features and self.config.video_layout != "pooled":
            raise ConfigError(
                f"the features cache {self.cache.root} holds pooled "
                f"'{self.config.video_layout}' features, which lose an image's patches (image_tokens='patches'); "
                "read the image records from their files (no cache_dir), or cache only the video records"
            )

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
        parts = [weighted_draw(positions, self.weights[source], rng) for source, positions in sorted(by_source.items())]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

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
                # The mask-or-box draws have their own stream, so mask_prompts changes no other draw.
                return self._referring(entry, rng, np.random.default_rng([self.seed, self.epoch, int(index), 1]))
            return self._conversation(entry)
        except AnnotationError:
            raise
        except (VideoError, BoxError) as error:  # name the record: the bare error names only the file
            raise entry.error("video", str(error)) from error
        except ArtemisError as error:
            raise entry.error(None, str(error)) from error

    def _open(self, entry: RecordEntry) -> VideoSource | CachedVideo:
        """The record's frames: the cached ones, or a source opened on its media (the caller closes it)."""
        if self.cache is not None:
            return self.cache.video(entry)
        return open_media(entry)

    def _referring(
        self, entry: RecordEntry, rng: np.random.Generator, mask_rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """A referring record, built as ``ask`` builds its prompt, about one region or several.

        Each region is laid on every frame (the annotation, the tracker filling frames the record does not
        annotate from that region's own key box; a cache stores those tracks), its key frame jittered with
        ``key_frame_jitter``, and the regions' key frames go to the processor as ``ask`` passes them: one
        frame when all are the same, else one per region (the key slot is then a frame showing every region).
        """
        sample = entry.sample
        # The paraphrase is drawn before the frames so both use the rng in a fixed order.
        question = sample.question
        if question is None:
            question = DESCRIBE_QUESTIONS[int(rng.integers(len(DESCRIBE_QUESTIONS)))]
        answer = sample.answer if sample.answer is not None else sample.caption
        regions, keys, masks = [], [], []
        views = entry.regions()
        with closing(self._open(entry)) as reader:
            if isinstance(reader, CachedVideo):
                tracks = reader.tracks  # stored with the frames
            else:
                tracks = [record_track(view, reader, self.tracker) for view in views]
            for view, (boxes, visible, key_frame) in zip(views, tracks, strict=True):  # (N, 4), (N,)
                candidates = region_candidates(visible, key_frame, self.max_region_candidates)
                own_key = key_frame
                if self.key_frame_jitter > 0.0 and rng.random() < self.key_frame_jitter:
                    key_frame = jittered_key_frame(candidates, key_frame, rng)
                masks.append(self._key_mask(view, key_frame == own_key, mask_rng))
                regions.append((boxes, candidates))
                keys.append(int(key_frame))
            key: int | list[int] = keys[0] if len(set(keys)) == 1 else keys
            item, plan = self.processor.referring_visuals(
                reader, regions, key, rng=rng, read_pixels=not self.features, key_masks=masks
            )
            if self.features:
                item["video_features"] = reader.video_features  # (N_v, C_v)
                item["region_hidden_states"] = reader.region_hidden_states(plan.region_frames)  # L x (K, P, C_v)
        if sample.conversations:  # several turns (SynthRef's videoref45k_chat.json): a loss on every answer
            turns = [
                (user["value"], reply["value"])
                for user, reply in zip(sample.conversations[::2], sample.conversations[1::2], strict=True)
            ]
            text = self.processor.referring_conversation_text(turns, len(regions))  # as chat builds its prompt
        else:
            text = self.processor.referring_text(question, len(regions), answer)
        item.update(self._text(entry, text))
        return item

    def _key_mask(self, view: RecordEntry, on_own_key_frame: bool, rng: np.random.Generator) -> np.ndarray | None:
        """The region's key-frame mask when this item gives it as a mask (``mask_prompts``), else None.

        Drawn (from ``rng``, the item's own mask stream) only for a record with a ``key_frame_mask`` whose key
        frame was kept.
        """
        rle = view.sample.metadata.get("key_frame_mask")
        if self.mask_prompts <= 0.0 or rle is None or not on_own_key_frame:
            return None
        return load_mask(rle) if rng.random() < self.mask_prompts else None

    def _conversation(self, entry: RecordEntry) -> dict[str, torch.Tensor]:
        image = entry.kind == "image" and self.config.image_tokens == "patches"  # the image's patch tokens
        encoded = self.processor.encode_conversation(conversation_turns(entry), media="image" if image else "video")
        item = self._text(entry, encoded)
        if entry.kind == "text":
            return item
        if image:
            item["image_mask"] = torch.tensor(True)
        with closing(self._open(entry)) as reader:
            if self.features:
                item["video_features"] = reader.video_features  # (N_v, C_v)
                return item
            frames = reader.get_frames(video_frame_indices(reader.num_frames, self.config.num_frames).tolist())
        pixels = self.processor.video_processor(frames)  # (T, 3, S, S)
        item["pixel_values"] = pixels
        item["frame_mask"] = torch.ones(len(pixels), dtype=torch.bool)
        return item

    def _text(self, entry: RecordEntry, encoded: EncodedText) -> dict[str, torch.Tensor]:
        """The item's ``input_ids`` and ``labels``, cut to ``max_length`` where no placeholder is lost.

        With ``media_counts_as_one`` the video's (or image's) ids count as one token against ``max_length``,
        as the original counted its one ``<image>``/``<video>`` id before expanding it; region ids count as
        they are (the original's ``<bbox>`` ids were one token each too).
        """
        ids, labels = encoded.input_ids, encoded.labels
        limit = self.max_length
        if limit is not None and self.media_counts_as_one:
            media = sum(token == self.config.video_token_id for token in ids)
            limit += max(media - 1, 0)
        if limit is not None and len(ids) > limit:
            slots = {self.config.video_token_id, self.config.region_token_id}
            if any(token in slots for token in ids[limit:]):
                raise entry.error(
                    "conversations" if entry.kind != "referring" else "caption",
                    f"{len(ids)} tokens exceed max_length={self.max_length} and truncation would cut a video or "
                    "region placeholder; raise max_length or shorten the text",
                )
            ids, labels = ids[:limit], labels[:limit]
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
