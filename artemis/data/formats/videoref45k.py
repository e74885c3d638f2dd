"""Artemis' VideoRef45K records (a JSON list), one per target.

Fields: ``video_name``, ``caption``, ``question`` (optional), ``track_list`` (pixel ``[x1, y1, x2, y2]``
per annotated frame, ``[]`` where the target is absent), ``frame_path`` (the video file or frame folder,
relative to the JSON file), ``frame_id`` (0-based frame indices that ``track_list`` is aligned with),
``key_frame_box`` and ``key_frame_id`` (a member of ``frame_id``). artemis also writes an optional
``frame_size`` ``[w, h]``: readers of the original ignore it, and it lets boxes be checked against the frame
and normalised without opening the video.

VideoRef45K has no visibility field: a frame is written with its box exactly when the target is visible,
so a fully hidden target (SynthRef occlusion) is written as ``[]``. Pixel values are written as they are
(integers without ``.0``), so ``internal -> videoref45k -> internal`` is exact for visible frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artemis.data.formats._common import (
    clean_number,
    optional,
    parse_box_values,
    read_record_list,
    relative_to,
    require,
)
from artemis.data.records import RefSample, record_error
from artemis.io import write_json_atomic

NAME = "videoref45k"
HAS_BOXES = True


def parse_record(record: dict[str, Any], path: Path, index: int) -> RefSample:
    """One VideoRef45K record -> :class:`RefSample` (checked)."""
    video_name = require(record, "video_name", str, path, index)
    caption = require(record, "caption", str, path, index)
    question = optional(record, "question", str, path, index)
    track = require(record, "track_list", list, path, index)
    frame_path = require(record, "frame_path", str, path, index)
    frame_ids = require(record, "frame_id", list, path, index)
    key_box = require(record, "key_frame_box", list, path, index)
    key_frame_id = require(record, "key_frame_id", int, path, index)
    if not track:
        raise record_error(path, index, "track_list", "the track is empty; expected one box (or []) per frame_id")
    if len(track) != len(frame_ids):
        raise record_error(
            path, index, "track_list", f"{len(track)} entries for {len(frame_ids)} frame ids; expected one per frame"
        )
    if not all(isinstance(f, int) and not isinstance(f, bool) for f in frame_ids):
        raise record_error(path, index, "frame_id", "expected a list of integer frame indices")
    width = height = None
    size = optional(record, "frame_size", list, path, index)
    if size is not None:
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise record_error(path, index, "frame_size", f"{size!r}; expected [width, height] in pixels")
        width, height = size
    boxes = [parse_box_values(v, path, index, "track_list", i) for i, v in enumerate(track)]
    key_values = parse_box_values(key_box, path, index, "key_frame_box", 0)
    if key_values is None:
        raise record_error(path, index, "key_frame_box", "is empty; expected the target's box on the key frame")
    if key_frame_id not in frame_ids:
        raise record_error(
            path, index, "key_frame_id", f"frame {key_frame_id} is not one of the record's frame ids (frame_id)"
        )
    # The key-frame box is the one the user gives; where the track has no box there, take it.
    key_index = frame_ids.index(key_frame_id)
    if boxes[key_index] is None:
        boxes[key_index] = key_values
    sample = RefSample(
        sample_id=str(record.get("id", index)),
        source=str(record.get("source", NAME)),
        video=frame_path,
        frame_ids=list(frame_ids),
        boxes=[tuple(b) if b is not None else None for b in boxes],
        visible=[b is not None for b in boxes],
        key_frame_id=key_frame_id,
        width=width,
        height=height,
        caption=caption,
        question=question,
        base_dir=path.parent,
        metadata={"video_name": video_name},
    )
    sample.check(path, index)
    return sample


def read(path: str | Path) -> list[RefSample]:
    """Read a VideoRef45K JSON file.

    Raises:
        AnnotationError: naming the file, the record index and the field at fault.
    """
    return read_record_list(path, NAME, parse_record)


def to_record(sample: RefSample, out_dir: Path) -> dict[str, Any]:
    """:class:`RefSample` -> one VideoRef45K record (paths relative to ``out_dir``)."""
    if sample.caption is None:
        raise record_error(
            out_dir, sample.sample_id, "caption", f"{NAME} needs a caption for every target; this sample has none"
        )
    video = sample.video
    if video is None:
        raise record_error(out_dir, sample.sample_id, "frame_path", "the sample has no video file or frame folder")
    track = [
        [clean_number(v) for v in box] if box is not None and seen else []
        for box, seen in zip(sample.boxes, sample.visible, strict=True)
    ]
    record: dict[str, Any] = {
        "video_name": sample.metadata.get("video_name", Path(video).name),
        "caption": sample.caption,
    }
    if sample.question is not None:
        record["question"] = sample.question
    key_index = sample.key_index
    record.update(
        {
            "track_list": track,
            "frame_path": relative_to(sample, video, out_dir),
            "frame_id": list(sample.frame_ids),
            "key_frame_box": [clean_number(v) for v in sample.key_box],
            "key_frame_id": sample.frame_ids[key_index],
        }
    )
    if sample.width is not None and sample.height is not None:
        record["frame_size"] = [sample.width, sample.height]
    return record


def write(samples: list[RefSample], path: str | Path) -> Path:
    """Write samples as a VideoRef45K JSON list, atomically."""
    path = Path(path)
    return write_json_atomic(path, [to_record(s, path.parent) for s in samples], indent=None)
