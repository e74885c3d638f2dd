"""The OpenAI chat-completions format: requests read into one referring question, answers written back.

The last ``user`` message carries the request: ``text`` parts (joined) with one ``<region>`` per box,
one ``video_url`` part with a ``data:`` URL, and ``box`` parts ``{"type": "box", "box": [x1, y1, x2, y2],
"frame": N}`` in the order of the ``<region>`` placeholders. Earlier turns are not used (the model answers
one question at a time).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from artemis.prompts import REGION_TOKEN
from artemis.serve.errors import ServeError

__all__ = ["ChatQuestion", "ChatRequest", "completion", "completion_chunk", "read_question"]

PART_TYPES = ("text", "video_url", "box")


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; fields OpenAI clients send and artemis does not use are accepted."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="the served model's id (GET /v1/models)")
    messages: list[dict[str, Any]] = Field(description="chat messages; the last user message holds the request")
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=1024, description="maps to max_new_tokens")
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1024, description="same as max_tokens")
    temperature: float | None = Field(default=None, description="ignored: answers are greedy")


@dataclass
class ChatQuestion:
    """What a chat request asks: the text, the video's data URL and the boxes, on one frame."""

    text: str
    video_url: str
    video_part: int
    boxes: list[list[float]] = field(default_factory=list)
    frame: int = 0


def _part_error(index: int, kind: str, problem: str) -> ServeError:
    return ServeError(400, f"content part {index} ({kind}): {problem}")


def _read_box(index: int, part: dict[str, Any]) -> tuple[list[float], int]:
    box = part.get("box")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    ):
        raise _part_error(index, "box", f"'box' must be 4 numbers [x1, y1, x2, y2] in pixels, got {box!r}"[:200])
    frame = part.get("frame", 0)
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        raise _part_error(index, "box", f"'frame' must be a frame index (an integer >= 0), got {frame!r}"[:200])
    return [float(v) for v in box], frame


def read_question(request: ChatRequest) -> ChatQuestion:
    """The question of the last user message; 400 naming the part for anything malformed or unknown."""
    users = [message for message in request.messages if isinstance(message, dict) and message.get("role") == "user"]
    if not users:
        raise ServeError(400, "messages has no user message; send the video, the box and the question as one")
    content = users[-1].get("content")
    if isinstance(content, str) or not isinstance(content, list):
        raise ServeError(
            400,
            "the last user message must be a list of content parts: text, video_url (a data: URL) and box parts",
        )
    texts: list[str] = []
    video: tuple[int, str] | None = None
    boxes: list[tuple[list[float], int]] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ServeError(400, f"content part {index} is not an object with a 'type'")
        kind = part["type"]
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _part_error(index, kind, "'text' must be a string")
            texts.append(part["text"])
        elif kind == "video_url":
            inner = part.get("video_url")
            url = inner.get("url") if isinstance(inner, dict) else None
            if not isinstance(url, str):
                raise _part_error(index, kind, "expected {'video_url': {'url': 'data:video/mp4;base64,...'}}")
            if video is not None:
                raise _part_error(index, kind, f"a second video (part {video[0]} is one); send one video")
            video = (index, url)
        elif kind == "box":
            boxes.append(_read_box(index, part))
        else:
            shown = kind[:40]
            raise ServeError(
                400, f"content part {index} has unknown type {shown!r}; expected one of {', '.join(PART_TYPES)}"
            )
    if video is None:
        raise ServeError(400, "the last user message has no video_url part; add the video as a data: URL")
    if not boxes:
        raise ServeError(400, "the last user message has no box part; add {'type': 'box', 'box': [...], 'frame': N}")
    text = " ".join(part.strip() for part in texts if part.strip())
    if not text:
        raise ServeError(400, "the last user message has no text; ask a question naming the target <region>")
    regions = text.count(REGION_TOKEN)
    if regions != len(boxes) and not (regions == 0 and len(boxes) == 1):
        raise ServeError(
            400, f"the text has {regions} {REGION_TOKEN} placeholders for {len(boxes)} box parts; give one box each"
        )
    frames = sorted({frame for _, frame in boxes})
    if len(frames) > 1:
        raise ServeError(400, f"the boxes are on frames {frames}; all boxes must be on one frame for now")
    return ChatQuestion(text, video[1], video[0], [box for box, _ in boxes], frames[0])


def _envelope(kind: str, completion_id: str, model: str) -> dict[str, Any]:
    return {"id": completion_id, "object": kind, "created": int(time.time()), "model": model}


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(completion_id: str, model: str, text: str) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice."""
    return {
        **_envelope("chat.completion", completion_id, model),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
    }


def completion_chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object (one streamed piece)."""
    return {
        **_envelope("chat.completion.chunk", completion_id, model),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
