"""Shared by the single-object tracking formats (LaSOT, OTB): one text row of ``x, y, w, h`` per frame,
1-based pixels, for the frames of an ``img/`` folder."""

from __future__ import annotations

import math
from pathlib import Path

from artemis.boxes import clip_boxes, otb_to_xyxy, xyxy_to_otb
from artemis.data.formats._common import image_size, list_images, text_number
from artemis.data.records import Box, RefSample, record_error

FRAME_FOLDER = "img"


def sequence_sample(
    name: str,
    source: str,
    rows: list[list[float]],
    annotation: Path,
    sequence_dir: Path,
    *,
    hidden: list[bool] | None = None,
    out_of_view: list[bool] | None = None,
    caption: str | None = None,
) -> RefSample:
    """Build a checked :class:`RefSample` from a sequence's rows and flags.

    Args:
        name: Sequence name (the sample id).
        source: Format name.
        rows: ``[x, y, w, h]`` per frame, 1-based.
        annotation: The ground-truth file (named in errors).
        sequence_dir: The folder that may hold ``img/`` (frame size and frames come from it).
        hidden: Per frame, the target is there but not visible (box kept, ``visible`` False).
        out_of_view: Per frame, the target is outside the frame (no box).
        caption: A language description of the target (LaSOT ``nlp.txt``).

    A row with NaN, zero or negative size is an absent frame. Rows partly outside a frame of known size
    are clipped to it (LaSOT and OTB annotators sometimes overshoot by a pixel).
    """
    count = len(rows)
    hidden = hidden or [False] * count
    out_of_view = out_of_view or [False] * count
    frames_dir = sequence_dir / FRAME_FOLDER
    width = height = None
    video = None
    if frames_dir.is_dir():
        images = list_images(frames_dir)
        if images:
            if len(images) < count:
                raise record_error(
                    annotation,
                    name,
                    "groundtruth",
                    f"{count} boxes but {frames_dir} has {len(images)} frames (ids {len(images)}.. do not exist)",
                )
            width, height = image_size(images[0])
            video = FRAME_FOLDER
    boxes: list[Box | None] = []
    for i, row in enumerate(rows):
        box: Box | None = None
        if all(math.isfinite(v) for v in row) and row[2] > 0 and row[3] > 0 and not out_of_view[i]:
            xyxy = otb_to_xyxy(row)
            if width is not None and height is not None:
                xyxy = clip_boxes(xyxy, width, height)
            if xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1]:
                box = tuple(float(v) for v in xyxy)  # type: ignore[assignment]
        boxes.append(box)
    visible = [box is not None and not hide for box, hide in zip(boxes, hidden, strict=True)]
    if not any(visible):
        raise record_error(annotation, name, "groundtruth", "the track is empty: the target is visible on no frame")
    sample = RefSample(
        sample_id=name,
        source=source,
        video=video,
        frame_ids=list(range(count)),
        boxes=boxes,
        visible=visible,
        key_frame_id=visible.index(True),
        width=width,
        height=height,
        caption=caption,
        base_dir=sequence_dir,
    )
    sample.check(annotation, name)
    return sample


def dense_rows(sample: RefSample) -> tuple[list[str], list[bool], list[bool]]:
    """Rows ``x,y,w,h`` (1-based) for frames ``0..max(frame_ids)``, with hidden and out-of-view flags.

    Frames the sample does not annotate are written as absent (``0,0,0,0``, out of view).
    """
    by_frame = {f: (box, seen) for f, box, seen in zip(sample.frame_ids, sample.boxes, sample.visible, strict=True)}
    rows, hidden, out_of_view = [], [], []
    for frame in range(max(sample.frame_ids) + 1):
        box, seen = by_frame.get(frame, (None, False))
        if box is None:
            rows.append(["0", "0", "0", "0"])
            hidden.append(False)
            out_of_view.append(True)
        else:
            rows.append([text_number(v) for v in xyxy_to_otb(box)])
            hidden.append(not seen)
            out_of_view.append(False)
    return [",".join(r) for r in rows], hidden, out_of_view


def sequence_name(sample: RefSample) -> str:
    """A file-system-safe sequence name for writing."""
    name = Path(sample.sample_id).stem if "/" in sample.sample_id else sample.sample_id
    return name.replace("/", "_") or "sequence"
