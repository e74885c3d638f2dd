"""Referring: describe a target, or answer a question about one or several targets, given their tracks.

One request, given a model, its processor and an open video source: the processor builds the Artemis
prompt layout and the frames, :func:`artemis.model.generation.generate` writes the answer. Several
requests share one padded ``generate`` call with :func:`prepare` (one per request, while its video is
open) and :func:`answer_batch`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from artemis.errors import VideoError
from artemis.model.generation import ConversationCache, generate, stream
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.track import Track
from artemis.video import VideoSource

logger = logging.getLogger(__name__)

__all__ = [
    "Description",
    "DescriptionStream",
    "answer",
    "answer_batch",
    "answer_chat",
    "answer_stream",
    "chat",
    "check_tracks",
    "conversation_turns",
    "prepare",
    "prepare_chat",
]


@dataclass
class Description:
    """What ``describe`` and ``ask`` return."""

    text: str
    question: str
    tracks: list[Track]
    video_frames: list[int]
    region_frames: list[int]
    region_visible: list[list[bool]] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    """For :func:`chat`: the conversation, the new answer last (pass it back with the next question)."""

    @property
    def track(self) -> Track:
        """The track of the first (usually only) region."""
        return self.tracks[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "question": self.question,
            "video_frames": self.video_frames,
            "region_frames": self.region_frames,
            "region_visible": self.region_visible,
            "tracks": [track.to_json() for track in self.tracks],
            **({"messages": self.messages} if self.messages else {}),
        }


KeyFrames = int | Sequence[int]
"""The frame all regions were given on, or one frame per region."""


def key_frame_list(frame_index: KeyFrames, count: int) -> list[int]:
    """One key frame per region."""
    if isinstance(frame_index, (int, np.integer)):
        return [int(frame_index)] * count
    frames = [int(frame) for frame in frame_index]
    if len(frames) != count:
        raise ValueError(f"got {len(frames)} key frames for {count} regions; give one frame per region")
    return frames


def check_tracks(tracks: Sequence[Track], frame_index: KeyFrames) -> None:
    """Every track must see its target on its key frame."""
    for track, frame in zip(tracks, key_frame_list(frame_index, len(tracks)), strict=True):
        if not track.visible[frame]:
            raise VideoError(f"the given track has no visible box on its key frame {frame}")
        if track.visible.sum() <= 1:
            logger.warning("the target is visible on the key frame only; describing it from that frame")


def prepare(
    processor: ArtemisProcessor,
    source: VideoSource,
    tracks: Sequence[Track],
    question: str,
    frame_index: KeyFrames,
    masks: Sequence[np.ndarray | None] | None = None,
) -> tuple[dict, Description]:
    """The model inputs of one referring request (an item without a batch dimension, frames read here, once)
    and its description without text; :func:`answer_batch` answers several of them in one call.

    ``frame_index`` is the frame every region was given on, or one frame per region (the prompt's key slot
    is then a frame showing all regions: :func:`artemis.model.processing.shared_key_frame`). ``masks``: per
    region, its (H, W) bool mask on its frame, or None (a box); a model with ``region_key_mask`` encodes
    the key slot from the features inside the mask.
    """
    check_tracks(tracks, frame_index)
    keys = frame_index if isinstance(frame_index, (int, np.integer)) else key_frame_list(frame_index, len(tracks))
    item, plan = processor.referring_item(source, question, tracks, keys, key_masks=masks)
    description = Description(
        text="",
        question=question,
        tracks=list(tracks),
        video_frames=plan.video_frames.tolist(),
        region_frames=plan.region_frames.tolist(),
        region_visible=plan.region_visible.tolist(),
    )
    return item, description


def answer(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    source: VideoSource,
    tracks: Sequence[Track],
    question: str,
    frame_index: KeyFrames,
    *,
    masks: Sequence[np.ndarray | None] | None = None,
    **generation: Any,
) -> Description:
    """Answer ``question`` about the targets of ``tracks`` (given on ``frame_index``).

    Args:
        question: names the targets with ``<region>`` placeholders, one per track in order; with one
            track and no placeholder the question is asked as it is, about that target.
        masks: per region, its mask on its frame or None (see :func:`prepare`).
        generation: ``generate`` keyword arguments (``max_new_tokens``, ``do_sample``, ...).
    """
    prepared = prepare(processor, source, tracks, question, frame_index, masks)
    return answer_batch(model, processor, [prepared], **generation)[0]


def answer_batch(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    prepared: Sequence[tuple[dict, Description]],
    **generation: Any,
) -> list[Description]:
    """Answer several prepared requests (:func:`prepare`) in one padded ``generate`` call.

    The prompts are padded on the left, so greedy answers are those of :func:`answer` one by one (up to
    floating-point ties; the batch runs the same matrices with padding rows masked out).

    Args:
        prepared: ``(item, description)`` pairs from :func:`prepare`.
        generation: ``generate`` keyword arguments (``max_new_tokens``, ``do_sample``, ...).

    Returns:
        The descriptions, in order, with their text.
    """
    if not prepared:
        return []
    batch = processor.collate([item for item, _ in prepared], side="left")
    texts = generate(model, processor, batch, **generation)
    for (_, description), text in zip(prepared, texts, strict=True):
        description.text = text
    return [description for _, description in prepared]


class DescriptionStream:
    """A :class:`Description` whose text arrives piece by piece: iterate to receive the pieces; afterwards
    ``description.text`` holds the whole text (the frames were read before the first piece)."""

    def __init__(self, description: Description, pieces: Iterator[str]) -> None:
        self.description = description
        self._pieces = pieces

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.description.text += piece
            yield piece
        self.description.text = self.description.text.strip()


def answer_stream(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    source: VideoSource,
    tracks: Sequence[Track],
    question: str,
    frame_index: KeyFrames,
    *,
    masks: Sequence[np.ndarray | None] | None = None,
    **generation: Any,
) -> DescriptionStream:
    """:func:`answer`, with the text streamed as it is generated (:func:`artemis.model.generation.stream`).

    The video is read before this returns, so the source may be closed while the stream is consumed.
    """
    item, description = prepare(processor, source, tracks, question, frame_index, masks)
    batch = processor.collate([item], side="left")
    return DescriptionStream(description, stream(model, processor, batch, **generation))


def conversation_turns(messages: Sequence[Any]) -> list[tuple[str, str | None]]:
    """Chat messages as template turns ``[(user, answer | None), ...]``, the last one open.

    A message is ``{"role": "user" | "assistant", "content": str}`` (or a ``(role, content)`` pair); roles
    alternate, starting and ending with the user.
    """
    roles, contents = [], []
    for message in messages:
        role, content = (message["role"], message["content"]) if isinstance(message, dict) else message
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise ValueError(f"message {message!r}: expected {{'role': 'user' | 'assistant', 'content': str}}")
        roles.append(role)
        contents.append(content)
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(roles))]
    if not roles or roles != expected or roles[-1] != "user":
        raise ValueError(
            f"messages have roles {roles}; expected user, assistant, user, ... alternating and ending with the "
            "user's new question"
        )
    turns: list[tuple[str, str | None]] = []
    for i in range(0, len(contents), 2):
        turns.append((contents[i], contents[i + 1] if i + 1 < len(contents) else None))
    return turns


def prepare_chat(
    processor: ArtemisProcessor,
    source: VideoSource,
    tracks: Sequence[Track],
    messages: Sequence[Any],
    frame_index: KeyFrames,
    masks: Sequence[np.ndarray | None] | None = None,
) -> tuple[dict, Description, list[tuple[str, str | None]]]:
    """The model inputs of a conversation (frames read here, once), its description without text and its
    turns; :func:`answer_chat` answers it, with the video already closed if the caller wishes."""
    turns = conversation_turns(messages)
    check_tracks(tracks, frame_index)
    keys = frame_index if isinstance(frame_index, (int, np.integer)) else key_frame_list(frame_index, len(tracks))
    item, plan = processor.referring_conversation_item(source, turns, tracks, keys, key_masks=masks)
    description = Description(
        text="",
        question=turns[-1][0],
        tracks=list(tracks),
        video_frames=plan.video_frames.tolist(),
        region_frames=plan.region_frames.tolist(),
        region_visible=plan.region_visible.tolist(),
    )
    return item, description, turns


def answer_chat(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    prepared: tuple[dict, Description, list[tuple[str, str | None]]],
    *,
    conversation: ConversationCache | None = None,
    **generation: Any,
) -> Description:
    """Generate the answer of a conversation prepared by :func:`prepare_chat` (see :func:`chat`)."""
    item, description, turns = prepared
    batch = processor.collate([item], side="left")
    description.text = generate(model, processor, batch, conversation=conversation, **generation)[0]
    description.messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text}
        for i, text in enumerate(text for turn in turns for text in turn if text is not None)
    ] + [{"role": "assistant", "content": description.text}]
    return description


def chat(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    source: VideoSource,
    tracks: Sequence[Track],
    messages: Sequence[Any],
    frame_index: KeyFrames,
    *,
    masks: Sequence[np.ndarray | None] | None = None,
    conversation: ConversationCache | None = None,
    **generation: Any,
) -> Description:
    """Answer the last user message of a conversation about the targets of ``tracks``, earlier turns kept.

    The video and every region's tokens stand once, in the first user turn (which names the regions with
    ``<region>``). The returned description's ``messages`` is the conversation with the answer appended.

    Args:
        masks: per region, its mask on its frame or None (see :func:`prepare`).
        conversation: a :class:`~artemis.model.generation.ConversationCache`: when this call continues the
            conversation it last generated (same frames, tracks and model; the earlier turns and answer
            unchanged), generation starts from its KV cache and the language model prefills only the new
            turn; otherwise the whole conversation is encoded. None encodes it every call.
        generation: ``generate`` keyword arguments (``max_new_tokens``, ``do_sample``, ...).
    """
    prepared = prepare_chat(processor, source, tracks, messages, frame_index, masks)
    return answer_chat(model, processor, prepared, conversation=conversation, **generation)
