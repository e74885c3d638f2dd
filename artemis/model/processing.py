"""``ArtemisProcessor``: frames to pixel values, conversations to token ids with exact placeholder counts.

Frames are padded to a square (with the mean colour, as LLaVA's ``expand2square``) and resized, never
centre-cropped, so the whole frame reaches the model and :class:`artemis.boxes.SquareTransform` maps
boxes with the same offsets. Text is rendered with one conversation template (Vicuna v1) for training
and inference; each ``<video>`` becomes ``num_video_tokens`` placeholder ids and each ``<region>``
``num_region_tokens``, and labels are -100 everywhere but on the answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from artemis.boxes import SquareTransform
from artemis.errors import CheckpointError
from artemis.io import write_json_atomic
from artemis.model.configuration import ArtemisConfig
from artemis.templates import (
    REGION_KEY_SLOT,
    REGION_TOKEN,
    REGION_TRACK_SLOT,
    VICUNA_V1,
    VIDEO_TOKEN,
    ConversationTemplate,
)

IGNORE_INDEX = -100
PROCESSOR_FILE = "processor_config.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_PLACEHOLDER = re.compile(
    "(" + "|".join(map(re.escape, (VIDEO_TOKEN, REGION_TOKEN, REGION_KEY_SLOT, REGION_TRACK_SLOT))) + ")"
)


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
        count, height, width, _ = frames.shape
        transform = self.transform_for(width, height)
        side = transform.side
        fill = np.array(self.image_mean) * 255.0
        canvas = np.empty((count, side, side, 3), dtype=np.uint8)
        canvas[:] = np.round(fill).astype(np.uint8)
        canvas[:, transform.pad_y : transform.pad_y + height, transform.pad_x : transform.pad_x + width] = frames
        size = self.image_size
        resized = np.stack([cv2.resize(frame, (size, size), interpolation=cv2.INTER_CUBIC) for frame in canvas])
        pixels = torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, S, S)
        mean = torch.tensor(self.image_mean)[None, :, None, None]
        std = torch.tensor(self.image_std)[None, :, None, None]
        return (pixels - mean) / std


@dataclass
class EncodedText:
    input_ids: list[int]
    labels: list[int]


@dataclass
class ArtemisProcessor:
    """Tokenizer + frame preprocessing + the conversation template, sized for one model config."""

    tokenizer: PreTrainedTokenizerBase
    num_video_tokens: int
    num_region_tokens: int
    video_processor: VideoProcessor = field(default_factory=VideoProcessor)
    template: ConversationTemplate = VICUNA_V1
    add_bos: bool = True

    @classmethod
    def from_config(cls, config: ArtemisConfig, tokenizer: PreTrainedTokenizerBase) -> ArtemisProcessor:
        processor = cls(
            tokenizer=tokenizer,
            num_video_tokens=config.num_video_tokens,
            num_region_tokens=config.num_region_tokens,
            video_processor=VideoProcessor(image_size=config.vision_config.image_size),
        )
        processor.check_tokenizer(config)
        return processor

    def check_tokenizer(self, config: ArtemisConfig) -> None:
        """The placeholder strings must map to the ids the model looks for."""
        for text, expected in ((VIDEO_TOKEN, config.video_token_id), (REGION_TOKEN, config.region_token_id)):
            actual = self.tokenizer.convert_tokens_to_ids(text)
            if actual != expected:
                raise CheckpointError(
                    f"the tokenizer maps {text} to id {actual} but the model config expects {expected}; "
                    f"add {text} as a special token and set the config's token id to match"
                )

    # --- text -----------------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        """Token ids of ``text`` with every placeholder expanded to its exact count."""
        ids: list[int] = []
        for piece in _PLACEHOLDER.split(text):
            if piece == VIDEO_TOKEN:
                ids += [self.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)] * self.num_video_tokens
            elif piece in (REGION_TOKEN, REGION_KEY_SLOT, REGION_TRACK_SLOT):
                # A full region, or its key token / tracked tokens when the prompt splits them (the
                # tokens of one region are scattered in order, key first, so the split is exact).
                count = {REGION_TOKEN: self.num_region_tokens, REGION_KEY_SLOT: 1}.get(
                    piece, self.num_region_tokens - 1
                )
                ids += [self.tokenizer.convert_tokens_to_ids(REGION_TOKEN)] * count
            elif piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return ids

    def encode_conversation(self, turns: Sequence[tuple[str, str | None]]) -> EncodedText:
        """Token ids and labels of a conversation ``[(user, answer | None), ...]``.

        Each segment is tokenised on its own, so the prompt of a training example and of the same
        question at inference are the same ids. Labels cover each answer and its end-of-turn separator.
        """
        template = self.template
        ids: list[int] = []
        labels: list[int] = []
        if self.add_bos and self.tokenizer.bos_token_id is not None:
            ids.append(self.tokenizer.bos_token_id)
            labels.append(IGNORE_INDEX)
        prompt = template.system + template.sep
        for user, answer in turns:
            prompt += f"{template.roles[0]}: {user}{template.sep}{template.roles[1]}:"
            prompt_ids = self._ids(prompt)
            ids += prompt_ids
            labels += [IGNORE_INDEX] * len(prompt_ids)
            prompt = ""
            if answer is not None:
                answer_ids = self._ids(f" {answer}{template.sep2}")
                ids += answer_ids
                labels += answer_ids
        return EncodedText(ids, labels)

    def pad(self, encoded: Sequence[EncodedText], side: str = "right") -> dict[str, torch.Tensor]:
        """Pad a batch: ``input_ids``, ``attention_mask`` and ``labels`` (B, L)."""
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id or 0
        length = max(len(item.input_ids) for item in encoded)
        ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
        labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, item in enumerate(encoded):
            n = len(item.input_ids)
            span = slice(length - n, length) if side == "left" else slice(0, n)
            ids[row, span] = torch.tensor(item.input_ids)
            labels[row, span] = torch.tensor(item.labels)
            mask[row, span] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
        return text.strip()

    # --- persistence ----------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(directory)
        write_json_atomic(
            directory / PROCESSOR_FILE,
            {
                "num_video_tokens": self.num_video_tokens,
                "num_region_tokens": self.num_region_tokens,
                "image_size": self.video_processor.image_size,
                "image_mean": list(self.video_processor.image_mean),
                "image_std": list(self.video_processor.image_std),
                "template": self.template.name,
                "add_bos": self.add_bos,
            },
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: ArtemisConfig | None = None) -> ArtemisProcessor:
        directory = Path(directory)
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"no usable tokenizer in {directory}: {error}") from error
        settings_path = directory / PROCESSOR_FILE
        settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
        if config is not None:
            settings.setdefault("num_video_tokens", config.num_video_tokens)
            settings.setdefault("num_region_tokens", config.num_region_tokens)
            settings.setdefault("image_size", config.vision_config.image_size)
        if settings.get("template", VICUNA_V1.name) != VICUNA_V1.name:
            raise CheckpointError(f"unknown conversation template {settings['template']!r} in {settings_path}")
        processor = cls(
            tokenizer=tokenizer,
            num_video_tokens=settings["num_video_tokens"],
            num_region_tokens=settings["num_region_tokens"],
            video_processor=VideoProcessor(
                image_size=settings["image_size"],
                image_mean=tuple(settings.get("image_mean", CLIP_MEAN)),
                image_std=tuple(settings.get("image_std", CLIP_STD)),
            ),
            add_bos=settings.get("add_bos", True),
        )
        if config is not None:
            processor.check_tokenizer(config)
        return processor
