"""LLaVA / Video-ChatGPT conversation records (a JSON list), for training stages 1 and 2.

Each record is ``{"id", "video" | "image", "conversations": [{"from": "human", "value": "<video>\\n..."},
{"from": "gpt", "value": "..."}, ...]}``; ``image`` and ``video`` are optional (text-only records have
neither). The records carry no boxes, so they convert only to and from ``llava`` itself.

The original Artemis stages 1 and 2 read a video's precomputed CLIP features instead of the video: a
``video`` record also names ``video_clip``, a pickle of the (100 + 256, 1024) pooled features, relative to
the data root like every media path. It is kept in the sample's metadata; :func:`artemis.data.cache.build_cache`
stores it as the video's features, so the video itself need not be on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artemis.data.formats._common import optional, read_record_list, relative_to, require
from artemis.data.records import RefSample, record_error
from artemis.io import write_json_atomic

NAME = "llava"
HAS_BOXES = False
ROLES = ("human", "gpt")


def parse_record(record: dict[str, Any], path: Path, index: int) -> RefSample:
    """One conversation record -> :class:`RefSample` with ``conversations`` (checked)."""
    record_id = require(record, "id", (str, int), path, index)
    turns = require(record, "conversations", list, path, index)
    video = optional(record, "video", str, path, index)
    image = optional(record, "image", str, path, index)
    clip = optional(record, "video_clip", str, path, index)
    if not turns:
        raise record_error(path, index, "conversations", "is empty; expected alternating human and gpt turns")
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise record_error(path, index, "conversations", f"turn {position} must be an object with a string 'value'")
        expected = ROLES[position % 2]
        if turn.get("from") != expected:
            raise record_error(
                path, index, "conversations", f"turn {position} is from {turn.get('from')!r}; expected {expected!r}"
            )
    first_answer = turns[1]["value"] if len(turns) > 1 else None
    return RefSample(
        sample_id=str(record_id),
        source=NAME,
        video=video,
        image=image,
        conversations=[{"from": t["from"], "value": t["value"]} for t in turns],
        question=turns[0]["value"],
        answer=first_answer,
        base_dir=path.parent,
        metadata={} if clip is None else {"video_clip": clip},
    )


def read(path: str | Path) -> list[RefSample]:
    """Read a LLaVA-style conversation JSON file.

    Raises:
        AnnotationError: naming the file, the record index and the field at fault.
    """
    return read_record_list(path, NAME, parse_record)


def to_record(sample: RefSample, out_dir: Path) -> dict[str, Any]:
    """:class:`RefSample` with ``conversations`` -> one record (paths relative to ``out_dir``)."""
    if not sample.conversations:
        raise record_error(out_dir, sample.sample_id, "conversations", "the sample has no conversation to write")
    record: dict[str, Any] = {"id": sample.sample_id}
    if sample.video is not None:
        record["video"] = relative_to(sample, sample.video, out_dir)
    if sample.image is not None:
        record["image"] = relative_to(sample, sample.image, out_dir)
    if "video_clip" in sample.metadata:
        record["video_clip"] = relative_to(sample, sample.metadata["video_clip"], out_dir)
    record["conversations"] = [dict(turn) for turn in sample.conversations]
    return record


def write(samples: list[RefSample], path: str | Path) -> Path:
    """Write conversation samples as a JSON list, atomically."""
    path = Path(path)
    return write_json_atomic(path, [to_record(s, path.parent) for s in samples], indent=None)
