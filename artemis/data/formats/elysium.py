"""ElysiumTrack-1M records (a JSON list), one per target: SOT, RSOT and Video-REG.

Fields: ``source``, ``id``, ``vid``, ``metadata`` (a free object), ``frames`` (one entry per frame),
``object_class``, ``box`` (normalised ``[x1, y1, x2, y2]`` floats per frame, ``[]`` where the target is
absent), ``object_description`` and ``frame_size`` ``[w, h]``.

A ``frames`` entry is the path of an image, or, for frames inside a video file, ``"<video>#<index>"``
with the 0-based frame index (artemis' convention; paths are relative to the JSON file). Elysium has no
key frame or question: artemis keeps them in ``metadata`` (``key_frame_id``, ``question``, and a
``key_frame_mask`` when the target has one) and the frame
indices of image frames in ``metadata.frame_ids``.

Precision: boxes are written as full-precision floats (``pixel / size``) and read back as
``round(normalised * size, 4)`` pixels, so ``internal -> elysium -> internal`` restores every box on a
1e-4 pixel grid (all integer boxes) exactly, and others to within 5e-5 pixels. Like VideoRef45K, a frame
carries a box only where the target is visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artemis.boxes import denormalize, normalize
from artemis.data.formats._common import (
    PIXEL_DECIMALS,
    key_frame_mask,
    optional,
    parse_box_values,
    read_record_list,
    relative_to,
    require,
)
from artemis.data.records import RefSample, record_error
from artemis.io import write_json_atomic

NAME = "elysium"
HAS_BOXES = True


def _split_frame_ref(entry: str) -> tuple[str, int] | None:
    """``"videos/a.mp4#12"`` -> ``("videos/a.mp4", 12)``; ``None`` for an image path."""
    head, sep, tail = entry.rpartition("#")
    if sep and tail.isdigit():
        return head, int(tail)
    return None


def parse_record(record: dict[str, Any], path: Path, index: int) -> RefSample:
    """One ElysiumTrack-1M record -> :class:`RefSample` (checked)."""
    record_id = require(record, "id", (str, int), path, index)
    where: int | str = index
    frames = require(record, "frames", list, path, where)
    box_list = require(record, "box", list, path, where)
    size = require(record, "frame_size", list, path, where)
    metadata = optional(record, "metadata", dict, path, where) or {}
    if len(size) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in size):
        raise record_error(path, where, "frame_size", f"{size!r}; expected [width, height] in pixels")
    width, height = int(size[0]), int(size[1])
    if not frames or not box_list:
        raise record_error(
            path, where, "box" if frames else "frames", "the track is empty; expected one entry per frame"
        )
    if len(frames) != len(box_list):
        raise record_error(
            path, where, "box", f"{len(box_list)} boxes for {len(frames)} frames; expected one per frame"
        )
    if not all(isinstance(f, str) for f in frames):
        raise record_error(path, where, "frames", "expected a list of frame paths (strings)")

    refs = [_split_frame_ref(f) for f in frames]
    video: str | None = None
    frame_paths: list[str] | None = None
    if all(r is not None for r in refs) and len({r[0] for r in refs}) == 1:  # type: ignore[index]
        video = refs[0][0]  # type: ignore[index]
        frame_ids = [r[1] for r in refs]  # type: ignore[index]
    else:
        frame_paths = list(frames)
        frame_ids = metadata.get("frame_ids", list(range(len(frames))))
        if not isinstance(frame_ids, list) or len(frame_ids) != len(frames):
            raise record_error(path, where, "metadata", "frame_ids must list one frame index per entry of frames")

    boxes: list[tuple[float, float, float, float] | None] = []
    for i, value in enumerate(box_list):
        normalised = parse_box_values(value, path, where, "box", i)
        if normalised is None:
            boxes.append(None)
            continue
        if min(normalised) < 0.0 or max(normalised) > 1.0:
            raise record_error(path, where, "box", f"entry {i} is {value!r}; normalised coordinates must lie in [0, 1]")
        pixel = denormalize(normalised, width, height)
        boxes.append(tuple(round(float(v), PIXEL_DECIMALS) for v in pixel))  # type: ignore[arg-type]
    extra = {}
    if "key_frame_mask" in metadata:
        extra["key_frame_mask"] = key_frame_mask(
            metadata["key_frame_mask"], width, height, path, where, "metadata.key_frame_mask"
        )
    key_frame_id = metadata.get("key_frame_id")
    if key_frame_id is not None and key_frame_id not in frame_ids:
        raise record_error(path, where, "metadata", f"key_frame_id {key_frame_id} is not one of the record's frames")
    sample = RefSample(
        sample_id=str(record_id),
        source=str(record.get("source", NAME)),
        video=video,
        frame_paths=frame_paths,
        frame_ids=list(frame_ids),
        boxes=boxes,
        visible=[b is not None for b in boxes],
        key_frame_id=key_frame_id,
        width=width,
        height=height,
        caption=record.get("object_description"),
        question=metadata.get("question"),
        object_class=record.get("object_class"),
        base_dir=path.parent,
        metadata={"vid": record.get("vid"), "elysium_metadata": metadata, **extra},
    )
    sample.check(path, where)
    return sample


def read(path: str | Path) -> list[RefSample]:
    """Read an ElysiumTrack-1M JSON file.

    Raises:
        AnnotationError: naming the file, the record index and the field at fault.
    """
    return read_record_list(path, NAME, parse_record)


def to_record(sample: RefSample, out_dir: Path) -> dict[str, Any]:
    """:class:`RefSample` -> one ElysiumTrack-1M record (paths relative to ``out_dir``)."""
    if sample.width is None or sample.height is None:
        raise record_error(
            out_dir,
            sample.sample_id,
            "frame_size",
            f"{NAME} boxes are normalised by the frame size, which this sample lacks (read the source with its "
            "frames, or give videoref45k records a frame_size)",
        )
    metadata = dict(sample.metadata.get("elysium_metadata", {}))
    if sample.frame_paths is not None:
        frames = [relative_to(sample, p, out_dir) for p in sample.frame_paths]
        metadata["frame_ids"] = list(sample.frame_ids)
    elif sample.video is not None:
        video = relative_to(sample, sample.video, out_dir)
        frames = [f"{video}#{frame_id}" for frame_id in sample.frame_ids]
    else:
        raise record_error(out_dir, sample.sample_id, "frames", "the sample has no video or frame paths")
    metadata["key_frame_id"] = sample.frame_ids[sample.key_index]
    if sample.question is not None:
        metadata["question"] = sample.question
    if "key_frame_mask" in sample.metadata:
        metadata["key_frame_mask"] = sample.metadata["key_frame_mask"]
    boxes = [
        [float(v) for v in normalize(box, sample.width, sample.height)] if box is not None and seen else []
        for box, seen in zip(sample.boxes, sample.visible, strict=True)
    ]
    vid = sample.metadata.get("vid") or Path(sample.video or sample.sample_id).stem
    return {
        "source": sample.source or NAME,
        "id": sample.sample_id,
        "vid": vid,
        "metadata": metadata,
        "frames": frames,
        "object_class": sample.object_class,
        "box": boxes,
        "object_description": sample.caption,
        "frame_size": [sample.width, sample.height],
    }


def write(samples: list[RefSample], path: str | Path) -> Path:
    """Write samples as an ElysiumTrack-1M JSON list, atomically."""
    path = Path(path)
    return write_json_atomic(path, [to_record(s, path.parent) for s in samples], indent=None)
