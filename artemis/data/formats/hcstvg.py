"""HC-STVG (v1/v2) annotations: one JSON object keyed by video name.

``{video_name: {"bbox": [[x, y, w, h], ...], "st_frame", "st_time", "ed_time", "img_num", "caption",
"width", "height"}}``. ``bbox[i]`` is the box of frame ``st_frame + i`` (``st_frame`` is 1-based), so
artemis' 0-based frame id of ``bbox[i]`` is ``st_frame - 1 + i``.

Decisions:

* **Box origin.** HC-STVG boxes are read as 0-based ``x, y, w, h``: the real test set has ``y = 0`` and
  ``y + h == height``, which only a 0-based origin keeps inside the frame (OTB/LaSOT files are 1-based).
* **Tube length.** ``len(bbox)`` does not always equal ``(ed_time - st_time) * fps``; the boxes are
  authoritative: the tube covers exactly ``len(bbox)`` consecutive frames from ``st_frame``, and
  ``st_time``/``ed_time`` are kept in ``metadata`` untouched. A tube running past ``img_num`` frames is an
  error (frame ids that do not exist).
* HC-STVG has no absent frames: every frame of the tube must have a box when writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artemis.boxes import xywh_to_xyxy, xyxy_to_xywh
from artemis.data.formats._common import clean_number, load_json, optional, require
from artemis.data.records import RefSample, record_error
from artemis.io import write_json_atomic

NAME = "hcstvg"
HAS_BOXES = True


def parse_entry(video_name: str, entry: Any, path: Path) -> RefSample:
    """One ``video_name -> entry`` pair -> :class:`RefSample` (checked)."""
    if not isinstance(entry, dict):
        raise record_error(path, video_name, None, "expected a JSON object with bbox, st_frame, img_num, ...")
    bbox = require(entry, "bbox", list, path, video_name)
    st_frame = require(entry, "st_frame", int, path, video_name)
    img_num = require(entry, "img_num", int, path, video_name)
    caption = require(entry, "caption", str, path, video_name)
    width = require(entry, "width", int, path, video_name)
    height = require(entry, "height", int, path, video_name)
    if not bbox:
        raise record_error(path, video_name, "bbox", "the track is empty; expected one [x, y, w, h] per frame")
    if st_frame < 1:
        raise record_error(path, video_name, "st_frame", f"{st_frame}; expected a 1-based frame number >= 1")
    if st_frame - 1 + len(bbox) > img_num:
        raise record_error(
            path,
            video_name,
            "bbox",
            f"{len(bbox)} boxes from st_frame {st_frame} reach frame {st_frame - 1 + len(bbox)}, "
            f"but the video has img_num = {img_num} frames",
        )
    boxes = []
    for i, value in enumerate(bbox):
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            raise record_error(path, video_name, "bbox", f"entry {i} is {value!r}; expected [x, y, w, h]")
        boxes.append(tuple(float(v) for v in xywh_to_xyxy(value)))
    metadata = {"video_name": video_name, "img_num": img_num}
    for key in ("st_time", "ed_time"):
        value = optional(entry, key, (int, float), path, video_name)
        if value is not None:
            metadata[key] = value
    sample = RefSample(
        sample_id=video_name,
        source=NAME,
        video=video_name,
        frame_ids=[st_frame - 1 + i for i in range(len(bbox))],
        boxes=boxes,
        visible=[True] * len(boxes),
        key_frame_id=st_frame - 1,
        width=width,
        height=height,
        caption=caption,
        base_dir=path.parent,
        metadata=metadata,
    )
    sample.check(path, video_name)
    return sample


def read(path: str | Path) -> list[RefSample]:
    """Read an HC-STVG JSON file (``{video_name: entry}``).

    Raises:
        AnnotationError: naming the file, the video name and the field at fault.
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise record_error(
            path, None, None, f"expected a JSON object keyed by video name (HC-STVG), got a JSON {type(data).__name__}"
        )
    return [parse_entry(name, entry, path) for name, entry in data.items()]


def to_entry(sample: RefSample, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """:class:`RefSample` -> ``(video_name, entry)``."""
    if sample.caption is None:
        raise record_error(out_dir, sample.sample_id, "caption", f"{NAME} needs a caption; this sample has none")
    if sample.width is None or sample.height is None:
        raise record_error(out_dir, sample.sample_id, "width", f"{NAME} needs the frame size; this sample lacks it")
    ids = sample.frame_ids
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise record_error(out_dir, sample.sample_id, "bbox", f"{NAME} needs consecutive frames; got {ids[:5]}...")
    # The tube is the run from the first to the last frame with a box; a gap inside it cannot be written.
    present = [i for i, box in enumerate(sample.boxes) if box is not None]
    first, last = present[0], present[-1]
    for i in range(first, last + 1):
        if sample.boxes[i] is None:
            raise record_error(
                out_dir,
                sample.sample_id,
                "bbox",
                f"the target is absent on frame {ids[i]}, which {NAME} cannot express",
            )
    bbox = [[clean_number(v) for v in xyxy_to_xywh(box)] for box in sample.boxes[first : last + 1]]
    name = sample.metadata.get("video_name") or Path(sample.video or sample.sample_id).name
    entry: dict[str, Any] = {"bbox": bbox}
    for key in ("st_time", "ed_time"):
        if key in sample.metadata:
            entry[key] = sample.metadata[key]
    entry.update(
        {
            "img_num": sample.metadata.get("img_num", ids[-1] + 1),
            "caption": sample.caption,
            "width": sample.width,
            "height": sample.height,
            "st_frame": ids[first] + 1,
        }
    )
    return name, entry


def write(samples: list[RefSample], path: str | Path) -> Path:
    """Write samples as an HC-STVG JSON object, atomically."""
    path = Path(path)
    data: dict[str, Any] = {}
    for sample in samples:
        name, entry = to_entry(sample, path.parent)
        if name in data:
            raise record_error(path, sample.sample_id, "video_name", f"two samples share the video name {name!r}")
        data[name] = entry
    return write_json_atomic(path, data, indent=None)
