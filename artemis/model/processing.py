"""``ArtemisProcessor``: videos, regions and text to model inputs, for training and inference alike.

A transformers processor (``ProcessorMixin``; ``AutoProcessor.from_pretrained(dir)`` loads it). It owns
the tokenizer, the frame preprocessing (:class:`~artemis.model.video_processing.VideoProcessor`) and the
conversation template, and it chooses the prompt layout from the task:

* ``"describe"`` (Artemis referring; also any question about regions): ``<video>`` expands to the
  model's video tokens, each ``<region>`` to ``1 + k`` region tokens; the frames and boxes come from
  :func:`~artemis.model.video_processing.plan_frames`.
* ``"sot"`` / ``"rsot"`` (Elysium box output): ``"Frame 1: <frame>, ..."`` with ``tokens_per_frame``
  tokens per frame, then the SOT question (the target's box on frame 1) or the RSOT question (a
  referring expression).

Each placeholder becomes exactly the number of ids the model scatters features into, and labels are
-100 everywhere but on the answers. Datasets build their items with :meth:`ArtemisProcessor.referring_item`,
:meth:`~ArtemisProcessor.box_output_item` and :meth:`~ArtemisProcessor.text_item`; ``__call__`` builds the
same items and collates them into a ``BatchFeature``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase
from transformers.processing_utils import ProcessorMixin

from artemis.errors import CheckpointError, ConfigError, VideoError
from artemis.io import write_json_atomic
from artemis.model.collate import IGNORE_INDEX, collate, pad_text
from artemis.model.configuration import ArtemisConfig
from artemis.model.video_processing import (
    CLIP_MEAN,
    CLIP_STD,
    FramePlan,
    VideoProcessor,
    plan_frames,
    read_plan_pixels,
)
from artemis.prompts import (
    REGION_KEY_SLOT,
    REGION_TOKEN,
    REGION_TRACK_SLOT,
    VICUNA_V1,
    VIDEO_FRAME_SLOT,
    VIDEO_TOKEN,
    ConversationTemplate,
    format_box_answer,
    frames_prompt,
    referring_prompt,
    rsot_question,
    sot_question,
)

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IGNORE_INDEX",
    "PROCESSOR_FILE",
    "TASKS",
    "ArtemisProcessor",
    "EncodedText",
    "VideoProcessor",
    "shared_key_frame",
]

PROCESSOR_FILE = "processor_config.json"
TASKS = ("describe", "sot", "rsot")
"""Prompt layouts the processor builds: Artemis referring, Elysium single-object tracking and grounding."""
_PLACEHOLDER = re.compile(
    "("
    + "|".join(map(re.escape, (VIDEO_TOKEN, VIDEO_FRAME_SLOT, REGION_TOKEN, REGION_KEY_SLOT, REGION_TRACK_SLOT)))
    + ")"
)
_TEMPLATES = {VICUNA_V1.name: VICUNA_V1}


@dataclass
class EncodedText:
    input_ids: list[int]
    labels: list[int]


def _region_arrays(region: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (T, 4), visible (T,))`` of a region given as a track (``.boxes``, ``.visible``) or a pair."""
    if hasattr(region, "boxes") and hasattr(region, "visible"):
        return np.asarray(region.boxes, dtype=np.float64), np.asarray(region.visible, dtype=bool)
    boxes, visible = region
    return np.asarray(boxes, dtype=np.float64), np.asarray(visible, dtype=bool)


def shared_key_frame(regions: Sequence[Any], key_frames: Sequence[int]) -> int:
    """The one key frame of a sample whose regions were each given on a frame of their own.

    The model reads one set of region frames for all regions of a sample (its first is the key slot),
    so the key slot needs a frame where every region is seen: the first of the regions' key frames (in
    order) where all are visible, else, of the frames where all are visible, the one nearest the first
    region's key frame.

    Raises:
        VideoError: no frame shows every region (ask about them one at a time).
    """
    if len(key_frames) != len(regions):
        raise ValueError(f"got {len(key_frames)} key frames for {len(regions)} regions; give one per region")
    visible = np.stack([_region_arrays(region)[1] for region in regions])  # (R, T)
    together = visible.all(axis=0)  # (T,)
    for frame in key_frames:
        if together[int(frame)]:
            return int(frame)
    shared = np.flatnonzero(together)
    if shared.size == 0:
        raise VideoError(
            f"no frame shows all {len(regions)} regions at once (key frames {list(key_frames)}); a question "
            "about several regions needs one frame where every region is visible: ask about them one at a time"
        )
    return int(shared[np.argmin(np.abs(shared - int(key_frames[0])))])


class ArtemisProcessor(ProcessorMixin):
    """Tokenizer + frame preprocessing + the conversation template, sized for one model config.

    Args:
        tokenizer: a tokenizer that knows ``<video>`` and ``<region>`` as special tokens.
        num_video_tokens: ids one ``<video>`` expands to (``config.num_video_tokens``).
        num_image_tokens: ids the ``<video>`` of an image sample expands to (``config.num_image_tokens``;
            default ``num_video_tokens``: an image is a one-frame video). See :meth:`encode_conversation`.
        num_region_tokens: ids one ``<region>`` expands to (``1 + num_selected``).
        num_frames: frames the video tokens cover (``config.num_frames``).
        num_track_boxes: tracked frames of a region besides the key frame.
        tokens_per_frame: video ids of one frame in the ``"frames"`` layout (box output).
        image_size / image_mean / image_std: the frame preprocessing.
        add_bos: start every sequence with the BOS id.
        template: the conversation template's name (``vicuna_v1``).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        num_video_tokens: int,
        num_region_tokens: int,
        num_image_tokens: int | None = None,
        num_frames: int = 100,
        num_track_boxes: int = 8,
        tokens_per_frame: int | None = None,
        image_size: int = 224,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        add_bos: bool = True,
        template: str = VICUNA_V1.name,
        chat_template: str | None = None,
    ) -> None:
        super().__init__(tokenizer, chat_template=chat_template)
        if template not in _TEMPLATES:
            raise CheckpointError(f"unknown conversation template {template!r}; expected one of {list(_TEMPLATES)}")
        self.num_video_tokens = int(num_video_tokens)
        self.num_image_tokens = self.num_video_tokens if num_image_tokens is None else int(num_image_tokens)
        self.num_region_tokens = int(num_region_tokens)
        self.num_frames = int(num_frames)
        self.num_track_boxes = int(num_track_boxes)
        self.tokens_per_frame = None if tokens_per_frame is None else int(tokens_per_frame)
        self.video_processor = VideoProcessor(int(image_size), tuple(image_mean), tuple(image_std))
        self.add_bos = bool(add_bos)
        self.template: ConversationTemplate = _TEMPLATES[template]

    @classmethod
    def from_config(cls, config: ArtemisConfig, tokenizer: PreTrainedTokenizerBase) -> ArtemisProcessor:
        processor = cls(tokenizer, **cls._sizes(config))
        processor.check_tokenizer(config)
        return processor

    def with_sizes_of(self, config: ArtemisConfig) -> ArtemisProcessor:
        """This processor (tokenizer, template, image statistics) with the token counts of ``config``, for a
        model whose config gained tokens (``artemis.model.loading.extend_model``)."""
        settings = {**self.to_settings(), **self._sizes(config)}
        settings.pop("processor_class")
        return type(self)(self.tokenizer, **settings)

    @staticmethod
    def _sizes(config: ArtemisConfig) -> dict[str, Any]:
        return {
            "num_video_tokens": config.num_video_tokens,
            "num_image_tokens": config.num_image_tokens,
            "num_region_tokens": config.num_region_tokens,
            "num_frames": config.num_frames,
            "num_track_boxes": config.num_track_boxes,
            "tokens_per_frame": config.tokens_per_frame if config.video_layout == "frames" else None,
            "image_size": config.vision_config.image_size,
        }

    def check_tokenizer(self, config: ArtemisConfig) -> None:
        """The placeholder strings must map to the ids the model looks for."""
        for text, expected in ((VIDEO_TOKEN, config.video_token_id), (REGION_TOKEN, config.region_token_id)):
            actual = self.tokenizer.convert_tokens_to_ids(text)
            if actual != expected:
                raise CheckpointError(
                    f"the tokenizer maps {text} to id {actual} but the model config expects {expected}; "
                    f"add {text} as a special token and set the config's token id to match"
                )

    @property
    def num_region_frames(self) -> int:
        """Frames of one region: the key frame plus the tracked frames."""
        return 1 + self.num_track_boxes

    @property
    def pad_id(self) -> int:
        pad_id = self.tokenizer.pad_token_id
        return pad_id if pad_id is not None else (self.tokenizer.eos_token_id or 0)

    # --- text -----------------------------------------------------------------------------------

    def _ids(self, text: str, media: str = "video") -> list[int]:
        """Token ids of ``text`` with every placeholder expanded to its exact count (``<video>`` of an
        ``media="image"`` sample: ``num_image_tokens``)."""
        ids: list[int] = []
        media_tokens = self.num_image_tokens if media == "image" else self.num_video_tokens
        video_id = self.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        region_id = self.tokenizer.convert_tokens_to_ids(REGION_TOKEN)
        for piece in _PLACEHOLDER.split(text):
            if piece == VIDEO_TOKEN:
                ids += [video_id] * media_tokens
            elif piece == VIDEO_FRAME_SLOT:
                if self.tokens_per_frame is None:
                    raise ConfigError(
                        "a box-output prompt needs per-frame video tokens, but this processor was built for a "
                        "model with pooled video tokens (video_layout='pooled'); use a model trained for boxes"
                    )
                ids += [video_id] * self.tokens_per_frame
            elif piece in (REGION_TOKEN, REGION_KEY_SLOT, REGION_TRACK_SLOT):
                # A full region, or its key token / tracked tokens when the prompt splits them (the
                # tokens of one region are scattered in order, key first, so the split is exact).
                count = {REGION_TOKEN: self.num_region_tokens, REGION_KEY_SLOT: 1}.get(
                    piece, self.num_region_tokens - 1
                )
                ids += [region_id] * count
            elif piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return ids

    def encode_conversation(self, turns: Sequence[tuple[str, str | None]], media: str = "video") -> EncodedText:
        """Token ids and labels of a conversation ``[(user, answer | None), ...]``.

        Each segment is tokenised on its own, so the prompt of a training example and of the same
        question at inference are the same ids. Labels cover each answer and its end-of-turn separator.
        ``media="image"``: the conversation is about one image, whose ``<video>`` expands to
        ``num_image_tokens`` ids (the model is told by ``image_mask``).
        """
        if media not in ("video", "image"):
            raise ValueError(f"media={media!r}; expected 'video' or 'image'")
        template = self.template
        ids: list[int] = []
        labels: list[int] = []
        if self.add_bos and self.tokenizer.bos_token_id is not None:
            ids.append(self.tokenizer.bos_token_id)
            labels.append(IGNORE_INDEX)
        prompt = template.system + template.sep
        for user, answer in turns:
            prompt += f"{template.roles[0]}: {user}{template.sep}{template.roles[1]}:"
            prompt_ids = self._ids(prompt, media)
            ids += prompt_ids
            labels += [IGNORE_INDEX] * len(prompt_ids)
            prompt = ""
            if answer is not None:
                answer_ids = self._ids(f" {answer}{template.sep2}", media)
                ids += answer_ids
                labels += answer_ids
        return EncodedText(ids, labels)

    def pad(self, encoded: Sequence[EncodedText], side: str = "right") -> dict[str, torch.Tensor]:
        """Pad a batch: ``input_ids``, ``attention_mask`` and ``labels`` (B, L)."""
        return pad_text([e.input_ids for e in encoded], [e.labels for e in encoded], self.pad_id, side)

    def decode(self, ids: Sequence[int] | torch.Tensor, **kwargs: Any) -> str:
        """Text of generated ids, special tokens dropped and surrounding spaces stripped."""
        kwargs = {"skip_special_tokens": True, "clean_up_tokenization_spaces": True, **kwargs}
        return self.tokenizer.decode(ids, **kwargs).strip()

    def batch_decode(self, ids: Sequence[Sequence[int]] | torch.Tensor, **kwargs: Any) -> list[str]:
        return [self.decode(row, **kwargs) for row in ids]

    # --- samples ----------------------------------------------------------------------------------

    @staticmethod
    def _text_tensors(encoded: EncodedText) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.tensor(encoded.input_ids, dtype=torch.long),
            "labels": torch.tensor(encoded.labels, dtype=torch.long),
        }

    def text_item(self, turns: Sequence[tuple[str, str | None]]) -> dict[str, torch.Tensor]:
        """A conversation without regions: ``input_ids`` and ``labels`` (L,)."""
        return self._text_tensors(self.encode_conversation(turns))

    def plan(
        self,
        num_frames_total: int,
        width: int,
        height: int,
        key_frame: int,
        regions: Sequence[Any],
        rng: np.random.Generator | None = None,
    ) -> FramePlan:
        """The frames and boxes of one referring sample (see :func:`plan_frames`)."""
        arrays = [_region_arrays(region) for region in regions]
        return plan_frames(
            num_frames_total, key_frame, [b for b, _ in arrays], [v for _, v in arrays],
            num_video_frames=self.num_frames, num_track_boxes=self.num_track_boxes,
            transform=self.video_processor.transform_for(width, height), rng=rng,
        )  # fmt: skip

    def referring_visuals(
        self,
        source: Any,
        regions: Sequence[Any],
        key_frame: int | Sequence[int],
        *,
        rng: np.random.Generator | None = None,
        read_pixels: bool = True,
        key_masks: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[dict[str, torch.Tensor], FramePlan]:
        """The visual tensors of one referring sample (no batch dimension) and its frame plan.

        Args:
            source: an open video source (``num_frames``, ``width``, ``height``, ``get_frames``).
            regions: per region, a track (``.boxes`` (T, 4) pixel xyxy, ``.visible`` (T,)) or such a pair.
            key_frame: the frame the regions were given on, or one frame per region (regions given on
                frames of their own share one key slot frame: :func:`shared_key_frame`).
            rng: training-time jitter of the tracked frames.
            read_pixels: False reads no frame (for a caller with cached vision features).
            key_masks: per region, its (H, W) bool mask on its own key frame, or None for a region given by
                its box; adds ``region_masks`` (R, S, S), NaN rows for the boxes (used by a model with
                ``region_key_mask``). A region whose own frame is not the shared key slot is given by its box.
        """
        if key_masks is not None and len(key_masks) != len(regions):
            raise ValueError(f"{len(key_masks)} key masks for {len(regions)} regions; give one or None per region")
        if not isinstance(key_frame, (int, np.integer)):
            own_frames = [int(frame) for frame in key_frame]
            key_frame = shared_key_frame(regions, key_frame)
            if key_masks is not None:
                key_masks = [mask if f == key_frame else None for mask, f in zip(key_masks, own_frames, strict=True)]
        plan = self.plan(source.num_frames, source.width, source.height, key_frame, regions, rng)
        tensors = plan.tensors()
        if key_masks is not None and any(mask is not None for mask in key_masks):
            size = self.video_processor.image_size
            tensors["region_masks"] = torch.stack(
                [
                    torch.full((size, size), float("nan")) if mask is None else self.video_processor.mask(mask)
                    for mask in key_masks
                ]
            )  # (R, S, S)
        if read_pixels:
            tensors.update(read_plan_pixels(source, plan, self.video_processor))
        return tensors, plan

    def referring_item(
        self,
        source: Any,
        question: str,
        regions: Sequence[Any],
        key_frame: int | Sequence[int],
        *,
        answer: str | None = None,
        rng: np.random.Generator | None = None,
        read_pixels: bool = True,
        key_masks: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[dict[str, torch.Tensor], FramePlan]:
        """One referring sample (Artemis layout) without a batch dimension, and its frame plan.

        ``question`` names the regions with ``<region>`` placeholders, one per region in order (with one
        region and none, the question is asked about it as it is); ``answer`` is the training target (None
        leaves the prompt open for generation). See :meth:`referring_visuals` for the other arguments.
        """
        item, plan = self.referring_visuals(
            source, regions, key_frame, rng=rng, read_pixels=read_pixels, key_masks=key_masks
        )
        item.update(self._text_tensors(self.referring_text(question, len(regions), answer)))
        return item, plan

    def referring_text(self, question: str, num_regions: int, answer: str | None = None) -> EncodedText:
        """Token ids and labels of a referring question about ``num_regions`` regions (Artemis layout)."""
        return self.encode_conversation([(referring_prompt(question, num_regions=num_regions), answer)])

    def referring_conversation_text(self, turns: Sequence[tuple[str, str | None]], num_regions: int) -> EncodedText:
        """Token ids and labels of a conversation about ``num_regions`` regions: ``[(user, answer | None), ...]``.

        The first turn is the referring prompt (the video and every region's tokens, once); later turns are
        plain text and name the regions in words (region1, region2, ...; "it" with one region), since their
        tokens are already in the conversation.

        Raises:
            ValueError: no turn, or a later turn with a ``<video>``/``<region>`` placeholder.
        """
        if not turns:
            raise ValueError("a conversation needs at least one user turn")
        for user, _ in turns[1:]:
            if REGION_TOKEN in user or VIDEO_TOKEN in user:
                raise ValueError(
                    f"turn {user!r} has a {REGION_TOKEN} or {VIDEO_TOKEN} placeholder; only the first turn names the "
                    "regions with <region>; later turns name them in words (region1, region2, ...)"
                )
        first, answer = turns[0]
        return self.encode_conversation([(referring_prompt(first, num_regions=num_regions), answer), *turns[1:]])

    def referring_conversation_item(
        self,
        source: Any,
        turns: Sequence[tuple[str, str | None]],
        regions: Sequence[Any],
        key_frame: int | Sequence[int],
        *,
        key_masks: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[dict[str, torch.Tensor], FramePlan]:
        """:meth:`referring_item` for a conversation of several turns (:meth:`referring_conversation_text`)."""
        text = self.referring_conversation_text(turns, len(regions))  # a bad turn fails before any frame is read
        item, plan = self.referring_visuals(source, regions, key_frame, key_masks=key_masks)
        item.update(self._text_tensors(text))
        return item, plan

    def box_output_item(
        self,
        frames: np.ndarray,
        *,
        box: Sequence[float] | np.ndarray | None = None,
        expression: str | None = None,
        answer_boxes: np.ndarray | None = None,
        history_moves: np.ndarray | None = None,
        query_box: Sequence[float] | np.ndarray | None = None,
    ) -> dict[str, torch.Tensor]:
        """One box-output clip (Elysium layout) without a batch dimension.

        Args:
            frames: (n, H, W, 3) uint8 RGB, the clip's frames in the order shown (n <= ``num_frames``).
            box: SOT: the target's pixel xyxy box on the clip's first frame.
            expression: RSOT: a referring expression (used when ``box`` is None).
            answer_boxes: the training target, (n, 4) pixel xyxy, NaN rows where the target is absent.
            history_moves: with ``answer_boxes``, (n, 2) whole moves ``(dx, dy)`` in the answer's 0..100
                units: the answer's input ids spell each present box moved by its row (clipped to 0..100), the
                boxes the LLM reads back under teacher forcing, while the labels stay ``answer_boxes``'. Used
                only when both answers encode to the same number of tokens (always with a word-level
                tokenizer; a digit-splitting one may differ where a number gains a digit), else ignored.
            query_box: SOT: the pixel xyxy box the frame selector's query reads on frame 1 (``query_boxes``),
                when it is not the prompt's ``box`` (training with ``sot_query_exact``: the prompt's box is
                jittered, the query's exact). Default: ``box``.
        """
        frames = np.asarray(frames)
        count, height, width = frames.shape[:3]
        if not 1 <= count <= self.num_frames:
            raise ConfigError(f"a clip of {count} frames does not fit the model's num_frames={self.num_frames}")
        if (box is None) == (expression is None):
            raise ConfigError("give either box= (SOT: the target on the clip's first frame) or expression= (RSOT)")
        transform = self.video_processor.transform_for(width, height)
        query = None  # the target's box on frame 1, for a selector that scores tokens against it
        if box is not None:
            shown = transform.boxes_to_model(np.asarray(box, dtype=np.float64))
            question = sot_question(shown)
            query = shown if query_box is None else transform.boxes_to_model(np.asarray(query_box, dtype=np.float64))
        else:
            question = rsot_question(expression)
        model_boxes = None if answer_boxes is None else transform.boxes_to_model(answer_boxes)  # (n, 4), NaN: absent
        answer = None if model_boxes is None else format_box_answer(model_boxes)
        prompt = frames_prompt(count, question, padding_frames=self.num_frames - count)
        item = self._text_tensors(self.encode_conversation([(prompt, answer)]))
        if model_boxes is not None and history_moves is not None:
            units = np.round(np.clip(model_boxes, 0.0, 1.0) * 100)  # (n, 4) the numbers written; NaN: absent
            moved = np.clip(units + np.tile(np.asarray(history_moves, dtype=np.float64), 2), 0, 100)  # (n, 4)
            shown = format_box_answer(moved / 100)
            ids = self._text_tensors(self.encode_conversation([(prompt, shown)]))["input_ids"]
            if ids.shape == item["input_ids"].shape:
                item["input_ids"] = ids
        item["pixel_values"] = self.video_processor(frames)  # (n, 3, S, S)
        item["frame_mask"] = torch.ones(count, dtype=torch.bool)
        if query is not None:
            item["query_boxes"] = torch.as_tensor(np.clip(query, 0.0, 1.0), dtype=torch.float32)  # (4,)
        if model_boxes is not None:  # the target on every frame, for a selector trained on it (NaN: absent)
            item["frame_boxes"] = torch.as_tensor(np.clip(model_boxes, 0.0, 1.0), dtype=torch.float32)  # (n, 4)
        return item

    def collate(self, items: Sequence[dict[str, torch.Tensor]], side: str = "right") -> dict[str, torch.Tensor]:
        """Pad and stack samples into a batch (text on ``side``); see :mod:`artemis.model.collate`."""
        size = self.video_processor.image_size
        return collate(
            items, pad_id=self.pad_id, num_region_frames=self.num_region_frames, frame_shape=(3, size, size), side=side
        )

    def __call__(
        self,
        videos: Any = None,
        text: str | Sequence[str] | None = None,
        *,
        task: str = "describe",
        regions: Sequence[Any] | Sequence[Sequence[Any]] | None = None,
        key_frame: int | Sequence[int] = 0,
        box: Any = None,
        expression: str | Sequence[str] | None = None,
        padding_side: str = "left",
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Model inputs for one sample or a batch, ready for ``model.generate(**inputs)``.

        Args:
            videos: ``"describe"``: an open video source (or a list, one per sample). ``"sot"`` /
                ``"rsot"``: a clip's frames, (n, H, W, 3) uint8 (or a list of clips).
            text: ``"describe"``: the question (or a list), regions named ``<region>``.
            task: ``"describe"``, ``"sot"`` or ``"rsot"``; the processor builds that task's prompt layout.
            regions: ``"describe"``: per sample, the regions (tracks or ``(boxes, visible)`` pairs).
            key_frame: ``"describe"``: the frame the regions were given on (or one per sample).
            box: ``"sot"``: the target's pixel box on each clip's first frame (or a list).
            expression: ``"rsot"``: the referring expression (or a list).
            padding_side: ``"left"`` for generation (default), ``"right"`` for training.

        Returns:
            A ``BatchFeature`` with ``input_ids``, ``attention_mask`` and the visual tensors (see
            :func:`artemis.model.collate.collate`); no ``labels``.
        """
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}; see ArtemisProcessor.__call__")
        if task not in TASKS:
            raise ConfigError(f"task={task!r}; expected one of {', '.join(TASKS)}")
        single = isinstance(text, str) or (task != "describe" and isinstance(videos, np.ndarray))
        listed = (lambda value: [value]) if single else list
        items = []
        if task == "describe":
            if text is None or videos is None or regions is None:
                raise ConfigError("task 'describe' needs videos=, text= (the question) and regions=")
            keys = [key_frame] * len(listed(text)) if isinstance(key_frame, int) else list(key_frame)
            for source, question, own, key in zip(listed(videos), listed(text), listed(regions), keys, strict=True):
                items.append(self.referring_item(source, question, own, key)[0])
        else:
            clips = listed(videos)
            if task == "sot":
                given = listed(box) if single else list(box)
                items = [self.box_output_item(clip, box=b) for clip, b in zip(clips, given, strict=True)]
            else:
                given = listed(expression)
                items = [self.box_output_item(clip, expression=e) for clip, e in zip(clips, given, strict=True)]
        batch = self.collate(items, side=padding_side)
        batch.pop("labels")
        return BatchFeature(batch, tensor_type=return_tensors)

    # --- persistence ----------------------------------------------------------------------------

    def to_settings(self) -> dict[str, Any]:
        """What ``processor_config.json`` holds."""
        return {
            "processor_class": type(self).__name__,
            "num_video_tokens": self.num_video_tokens,
            "num_image_tokens": self.num_image_tokens,
            "num_region_tokens": self.num_region_tokens,
            "num_frames": self.num_frames,
            "num_track_boxes": self.num_track_boxes,
            "tokens_per_frame": self.tokens_per_frame,
            "image_size": self.video_processor.image_size,
            "image_mean": list(self.video_processor.image_mean),
            "image_std": list(self.video_processor.image_std),
            "template": self.template.name,
            "add_bos": self.add_bos,
        }

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> list[str]:
        """Write the tokenizer and ``processor_config.json`` to ``save_directory``."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = list(self.tokenizer.save_pretrained(directory))
        write_json_atomic(directory / PROCESSOR_FILE, self.to_settings())
        return [*files, str(directory / PROCESSOR_FILE)]

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, config: ArtemisConfig | None = None, **kwargs: Any
    ) -> ArtemisProcessor:
        """Load from a local directory (what :meth:`save_pretrained` or ``ArtemisModel.save_pretrained`` wrote).

        Sizes missing from an older ``processor_config.json`` are taken from ``config`` (read from the same
        directory when not given). Hub keyword arguments (``trust_remote_code``, ...) are accepted and unused:
        nothing is downloaded.
        """
        directory = Path(pretrained_model_name_or_path)
        if not directory.is_dir():
            raise CheckpointError(
                f"{directory} is not a directory; pass a local model directory (nothing is downloaded)"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"no usable tokenizer in {directory}: {error}") from error
        if config is None and (directory / "config.json").exists():
            try:
                config = ArtemisConfig.from_pretrained(directory, local_files_only=True)
            except (OSError, ValueError, KeyError) as error:
                raise CheckpointError(f"{directory / 'config.json'} is not an artemis config: {error}") from error
        settings_path = directory / PROCESSOR_FILE
        try:
            settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{settings_path} is not valid JSON ({error}); save the processor again") from None
        settings.pop("processor_class", None)
        if config is not None:
            for key, value in cls._sizes(config).items():
                settings.setdefault(key, value)
        missing = [key for key in ("num_video_tokens", "num_region_tokens") if key not in settings]
        if missing:
            raise CheckpointError(f"{directory} has neither {PROCESSOR_FILE} with {missing} nor an artemis config.json")
        processor = cls(tokenizer, **settings)
        if config is not None:
            processor.check_tokenizer(config)
        return processor
