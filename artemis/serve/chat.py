"""The OpenAI chat-completions format: requests read into a referring question or conversation, answers
written back.

The last ``user`` message with a ``video_url`` part carries the video and the regions: ``text`` parts
(joined) naming the regions with one ``<region>`` each, one ``video_url`` part with a ``data:`` URL, and
``box`` parts ``{"type": "box", "box": [x1, y1, x2, y2], "frame": N}`` and ``mask`` parts
``{"type": "mask", "mask": <COCO RLE> | "data:image/png;base64,...", "frame": N}`` in the order of the
``<region>`` placeholders, each on a frame of its own. The messages after it (assistant answers and user
questions, text only, naming the regions in words: region1, region2, ...) continue the conversation;
messages before it and ``system`` messages are not used.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from artemis.prompts import REGION_TOKEN
from artemis.serve.errors import ServeError
from artemis.serve.regions import MAX_REGIONS, RegionSpec, parse_region

__all__ = ["ChatQuestion", "ChatRequest", "completion", "completion_chunk", "read_question"]

PART_TYPES = ("text", "video_url", "box", "mask")
IGNORED_ROLES = ("system", "developer")


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; fields OpenAI clients send and artemis does not use are accepted."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="the served model's id (GET /v1/models)")
    messages: list[dict[str, Any]] = Field(
        description="chat messages; the last user message with a video_url part holds the video and the regions"
    )
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=1024, description="maps to max_new_tokens")
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1024, description="same as max_tokens")
    temperature: float | None = Field(default=None, description="ignored: answers are greedy")


@dataclass
class ChatQuestion:
    """What a chat request asks: the video's data URL, the regions, and the conversation from the message
    that carries them on (``messages``: user and assistant turns as text, the user's new question last;
    ``text`` is the first one's text, which names the regions)."""

    text: str
    video_url: str
    video_part: int
    regions: list[RegionSpec] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)


def _part_error(index: int, kind: str, problem: str) -> ServeError:
    return ServeError(400, f"content part {index} ({kind}): {problem}")


def _has_video(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "video_url" for p in content)


def _text_of(message: dict[str, Any], number: int) -> str:
    """A later message's text: a string, or text parts only (the video and regions stand once)."""
    content = message.get("content")
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ServeError(
                    400,
                    f"message {number}, content part {index} ({str(kind)[:40]}): after the message with the video "
                    "only text is taken; the video and the regions go in one user message",
                )
            texts.append(part["text"].strip())
        return " ".join(text for text in texts if text)
    raise ServeError(400, f"message {number} has no text content; give a string or text parts")


def _read_parts(content: list[Any]) -> tuple[str, tuple[int, str], list[RegionSpec]]:
    """The text, the video part and the region parts of the message that carries the video."""
    texts: list[str] = []
    video: tuple[int, str] | None = None
    regions: list[RegionSpec] = []
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
        elif kind in ("box", "mask"):
            if kind not in part:
                wanted = "[x1, y1, x2, y2] in pixels" if kind == "box" else "a COCO RLE or a data:image/png URL"
                raise _part_error(index, kind, f"a {kind} part needs {kind!r}: {wanted}")
            regions.append(parse_region(part, f"content part {index} ({kind})", ignore=("type",)))
        else:
            shown = kind[:40]
            raise ServeError(
                400, f"content part {index} has unknown type {shown!r}; expected one of {', '.join(PART_TYPES)}"
            )
    assert video is not None
    return " ".join(part.strip() for part in texts if part.strip()), video, regions


def read_question(request: ChatRequest) -> ChatQuestion:
    """The video, the regions and the conversation; 400 naming the part for anything malformed or unknown."""
    messages = [m for m in request.messages if not (isinstance(m, dict) and m.get("role") in IGNORED_ROLES)]
    users = [message for message in messages if isinstance(message, dict) and message.get("role") == "user"]
    if not users:
        raise ServeError(400, "messages has no user message; send the video, the regions and the question as one")
    anchors = [i for i, message in enumerate(messages) if _has_video(message) and message.get("role") == "user"]
    if not anchors:
        if isinstance(users[-1].get("content"), list):
            raise ServeError(400, "no user message has a video_url part; add the video as a data: URL")
        raise ServeError(
            400,
            "the user message must be a list of content parts: text, video_url (a data: URL) and box or mask parts",
        )
    anchor = anchors[-1]
    text, video, regions = _read_parts(messages[anchor]["content"])
    if not regions:
        raise ServeError(
            400, "the message with the video has no box or mask part; add {'type': 'box', 'box': [...], 'frame': N}"
        )
    if len(regions) > MAX_REGIONS:
        raise ServeError(400, f"{len(regions)} box and mask parts; this server takes at most {MAX_REGIONS} regions")
    if not text:
        raise ServeError(400, "the message with the video has no text; ask a question naming the target <region>")
    count = text.count(REGION_TOKEN)
    if count != len(regions) and not (count == 0 and len(regions) == 1):
        raise ServeError(
            400,
            f"the text has {count} {REGION_TOKEN} placeholders for {len(regions)} box and mask parts; give one "
            "region part per placeholder, in order",
        )
    conversation = [{"role": "user", "content": text}]
    for number, message in enumerate(messages[anchor + 1 :], anchor + 1):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise ServeError(400, f"message {number} has role {str(role)[:20]!r}; expected user or assistant")
        conversation.append({"role": role, "content": _text_of(message, number)})
    return ChatQuestion(text, video[1], video[0], regions, conversation)


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
