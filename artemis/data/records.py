"""The one internal sample type every annotation format is read into and written from.

A :class:`RefSample` is one target in one video: the frames it is annotated on, a pixel box and a
visibility flag per annotated frame, a key frame, and its text (caption, question, answer, or a whole
LLaVA conversation). Readers (``artemis.data.formats``) produce it; writers consume it; so a conversion
between two formats is always ``read -> list[RefSample] -> write``.

A record may be about several targets at once (a question about two objects: SynthRef's
``videoref45k_pairs.json``). The first target's track is the sample's own fields; each further one is a
:class:`RegionTrack` in ``other_regions``, aligned with the same ``frame_ids``, with a key frame of its own.
:meth:`RefSample.region` views any one of them as a single-target sample.

A :class:`RecordEntry` is a :class:`RefSample` as the data sets see it: read from one annotation file
(:func:`artemis.data.entries.load_entries`), checked, and classified into one of :data:`KINDS`.

Box conventions (see :mod:`artemis.boxes`): pixel ``xyxy``, 0-based, ``x2``/``y2`` exclusive, on the frame
of size ``width`` x ``height``. A frame where the target is absent has box ``None`` and ``visible`` False.
A frame may also carry a box with ``visible`` False: the target is there but fully hidden (SynthRef
occlusion, LaSOT ``full_occlusion``); formats without a visibility field write such frames as absent.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from artemis.errors import AnnotationError

Box = tuple[float, float, float, float]
Kind = Literal["referring", "video", "image", "text"]
KINDS: tuple[Kind, ...] = ("referring", "video", "image", "text")

__all__ = ["KINDS", "Box", "Kind", "RecordEntry", "RefSample", "RegionTrack", "record_error"]


def record_error(
    path: str | Path | None, record: int | str | None, field_name: str | None, message: str
) -> AnnotationError:
    """Build an :class:`AnnotationError` that names the file, the record and the field.

    Args:
        path: The annotation file (or directory) being read or written.
        record: The record's index in the file or its id.
        field_name: The record's field at fault (``None`` when the whole record or file is at fault).
        message: What is wrong and what was expected.
    """
    parts = [str(path) if path is not None else "<in memory>"]
    if record is not None:
        parts.append(f"record {record!r}" if isinstance(record, str) else f"record {record}")
    if field_name is not None:
        parts.append(f"field {field_name!r}")
    return AnnotationError(f"{': '.join(parts)}: {message}")


@dataclass
class RegionTrack:
    """A further target of a record about several: its boxes on the record's ``frame_ids`` and its key frame.

    Attributes:
        boxes: Pixel ``xyxy`` box per annotated frame of the record, ``None`` where the target is absent.
        visible: Visibility per annotated frame.
        key_frame_id: The frame (an element of the record's ``frame_ids``) this target is given on.
    """

    boxes: list[Box | None]
    visible: list[bool]
    key_frame_id: int | None = None


@dataclass
class RefSample:
    """One annotated target (or several, see ``other_regions``) in one video.

    Attributes:
        sample_id: Unique id of the sample within its file (record id, sequence name, ...).
        source: Where the sample comes from (``"synthref"``, ``"hcstvg"``, ``"lasot"``, ...).
        video: Path of the video file, when the frames live in one (relative to ``base_dir``).
        frame_paths: Paths of the annotated frames' image files, aligned with ``frame_ids``, when the
            frames are images (relative to ``base_dir``).
        frame_ids: 0-based indices of the annotated frames in the video (or frame folder).
        boxes: Pixel ``xyxy`` box per annotated frame, ``None`` where the target is absent.
        visible: Visibility per annotated frame.
        key_frame_id: The frame (an element of ``frame_ids``) on which the target is given.
        width: Frame width in pixels, when known.
        height: Frame height in pixels, when known.
        caption: Description of the target (Video-REG answer, RSOT expression).
        question: A question about the target (Artemis referring question).
        answer: The answer to ``question`` when it is not ``caption``.
        object_class: Category name of the target, when known.
        conversations: A LLaVA-style conversation, ``[{"from": ..., "value": ...}, ...]``.
        image: Path of the image of an image-level (LLaVA) sample.
        base_dir: Directory relative paths resolve against (the annotation file's directory).
        metadata: Anything else the source format carries, kept for writers of the same format.
        other_regions: The further targets of a record about several (region2, region3, ...); empty for
            a record about one target, which is every format's record but VideoRef45K's pair shape.
    """

    sample_id: str
    source: str = ""
    video: str | None = None
    frame_paths: list[str] | None = None
    frame_ids: list[int] = field(default_factory=list)
    boxes: list[Box | None] = field(default_factory=list)
    visible: list[bool] = field(default_factory=list)
    key_frame_id: int | None = None
    width: int | None = None
    height: int | None = None
    caption: str | None = None
    question: str | None = None
    answer: str | None = None
    object_class: str | None = None
    conversations: list[dict[str, str]] | None = None
    image: str | None = None
    base_dir: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    other_regions: list[RegionTrack] = field(default_factory=list)

    # --- derived views -----------------------------------------------------------------------------

    @property
    def has_boxes(self) -> bool:
        """Whether the sample carries a track (box formats) rather than only text (LLaVA)."""
        return bool(self.frame_ids)

    @property
    def num_regions(self) -> int:
        """How many targets the record is about (1 for every record but a multi-region one)."""
        return 1 + len(self.other_regions)

    def region(self, index: int) -> RefSample:
        """Target ``index`` (0-based, in the order the question names them) as a single-target sample."""
        if not 0 <= index < self.num_regions:
            raise IndexError(f"region {index} of a record about {self.num_regions} regions")
        if index == 0:
            return replace(self, other_regions=[])
        other = self.other_regions[index - 1]
        return replace(
            self,
            boxes=list(other.boxes),
            visible=list(other.visible),
            key_frame_id=other.key_frame_id,
            other_regions=[],
        )

    @property
    def key_index(self) -> int:
        """Position of the key frame in ``frame_ids`` (the first visible frame when none is set)."""
        if self.key_frame_id is not None and self.key_frame_id in self.frame_ids:
            return self.frame_ids.index(self.key_frame_id)
        for index, (box, seen) in enumerate(zip(self.boxes, self.visible, strict=True)):
            if box is not None and seen:
                return index
        raise record_error(self.base_dir, self.sample_id, "key_frame_id", "the target is visible on no frame")

    @property
    def key_box(self) -> Box:
        """The pixel box on the key frame."""
        box = self.boxes[self.key_index]
        if box is None:
            raise record_error(
                self.base_dir, self.sample_id, "key_frame_id", f"no box on key frame {self.key_frame_id}"
            )
        return box

    def boxes_array(self) -> tuple[np.ndarray, np.ndarray]:
        """Boxes as arrays.

        Returns:
            ``(boxes, visible)``: float64 ``(T, 4)`` pixel ``xyxy`` with NaN rows where absent, and a bool
            ``(T,)`` mask that is True where the box exists and the target is visible.
        """
        boxes = np.full((len(self.boxes), 4), np.nan, dtype=np.float64)  # (T, 4)
        for index, box in enumerate(self.boxes):
            if box is not None:
                boxes[index] = box
        visible = np.array(
            [box is not None and seen for box, seen in zip(self.boxes, self.visible, strict=True)], dtype=bool
        )
        return boxes, visible

    def resolve(self, path: str | None) -> Path | None:
        """Resolve a path of this sample against ``base_dir``."""
        if path is None:
            return None
        candidate = Path(path)
        if candidate.is_absolute() or self.base_dir is None:
            return candidate
        return self.base_dir / candidate

    # --- checks ------------------------------------------------------------------------------------

    def check(self, path: str | Path | None = None, record: int | str | None = None) -> None:
        """Check that the track is consistent: aligned lists, valid boxes inside the frame, key frame.

        Args:
            path: The file to name in errors (defaults to ``base_dir``).
            record: The record to name in errors (defaults to ``sample_id``).

        Raises:
            AnnotationError: naming the file, the record and the field at fault.
        """
        where = path if path is not None else self.base_dir
        rec = record if record is not None else self.sample_id
        if not self.has_boxes:
            return
        if len(self.boxes) != len(self.frame_ids) or len(self.visible) != len(self.frame_ids):
            raise record_error(
                where,
                rec,
                "boxes",
                f"{len(self.boxes)} boxes and {len(self.visible)} visibility flags for {len(self.frame_ids)} frames",
            )
        if self.frame_paths is not None and len(self.frame_paths) != len(self.frame_ids):
            raise record_error(
                where, rec, "frames", f"{len(self.frame_paths)} frame paths for {len(self.frame_ids)} boxes"
            )
        if any(f < 0 for f in self.frame_ids) or len(set(self.frame_ids)) != len(self.frame_ids):
            raise record_error(where, rec, "frame_id", "frame ids must be distinct and >= 0")
        if all(box is None for box in self.boxes):
            raise record_error(where, rec, "boxes", "the track is empty: no frame has a box")
        for frame_id, box in zip(self.frame_ids, self.boxes, strict=True):
            if box is not None:
                check_box(box, self.width, self.height, where, rec, frame_id)
        if self.key_frame_id is not None and self.key_frame_id not in self.frame_ids:
            raise record_error(
                where,
                rec,
                "key_frame_id",
                f"key frame {self.key_frame_id} is not an annotated frame; annotated frames are "
                f"{_span(self.frame_ids)}",
            )
        for index in range(1, self.num_regions):
            try:
                self.region(index).check(path, record)
            except AnnotationError as error:
                raise AnnotationError(f"{error} (region{index + 1})") from None


@dataclass
class RecordEntry:
    """One record of one annotation file, checked and classified (:func:`artemis.data.entries.load_entries`).

    Attributes:
        sample: the record as a :class:`RefSample`.
        path: the annotation file it was read from.
        index: its position in that file.
        fmt: the format name.
        kind: one of :data:`KINDS`.
        source: position of its file in the list given to the dataset (for mixing weights).
    """

    sample: RefSample
    path: Path
    index: int
    fmt: str
    kind: Kind
    source: int = 0
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def where(self) -> int | str:
        """The record as errors name it: its index, and its id when that is not the index."""
        sample_id = self.sample.sample_id
        return self.index if sample_id == str(self.index) else f"{self.index} ({sample_id})"

    @property
    def key(self) -> str:
        """A key unique across files: ``"<format>:<absolute file>#<index>"`` (the cache is indexed by it)."""
        return f"{self.fmt}:{self.path.resolve()}#{self.index}"

    @property
    def media(self) -> str | None:
        """What the record's pixels come from (an absolute video, image or frame list), or None for text.

        Absolute, so an annotation file named by a relative path in one run and an absolute one in
        another (``artemis data cache`` from one folder, training from another) is the same record.
        """
        sample = self.sample
        if sample.frame_paths is not None:
            return json.dumps([str(Path(sample.resolve(p)).resolve()) for p in sample.frame_paths])
        path = sample.resolve(sample.video if sample.video is not None else sample.image)
        return None if path is None else str(Path(path).resolve())

    @property
    def split_key(self) -> str:
        """The video's identity for the train/val split: the last folder and the file name of its media.

        Not the absolute path, so the split is the same wherever the data set is stored.
        """
        sample = self.sample
        if sample.frame_paths is not None and sample.frame_paths:
            media = Path(sample.resolve(sample.frame_paths[0])).parent
        else:
            path = sample.resolve(sample.video if sample.video is not None else sample.image)
            if path is None:
                return self.key
            media = Path(path)
        return "/".join(media.parts[-2:])

    def regions(self) -> list[RecordEntry]:
        """One single-target entry per region of the record, in order (just this one for one target)."""
        if not self.sample.other_regions:
            return [self]
        sample = self.sample
        return [replace(self, sample=sample.region(i), _fingerprint=None) for i in range(sample.num_regions)]

    @property
    def fingerprint(self) -> str:
        """Hash of everything that decides the record's pixels and track (stale-cache detection)."""
        if self._fingerprint is None:
            s = self.sample
            content = [self.kind, self.media, s.frame_ids, [list(b) if b else None for b in s.boxes], s.visible]
            content.append(s.key_frame_id)
            if s.other_regions:  # only then, so a one-target record keeps the fingerprint it always had
                content.append(
                    [[[list(b) if b else None for b in r.boxes], r.visible, r.key_frame_id] for r in s.other_regions]
                )
            self._fingerprint = hashlib.sha1(json.dumps(content).encode()).hexdigest()[:16]
        return self._fingerprint

    def error(self, field_name: str | None, message: str) -> AnnotationError:
        return record_error(self.path, self.where, field_name, message)


def _span(frame_ids: list[int]) -> str:
    if len(frame_ids) <= 6:
        return str(frame_ids)
    return f"[{frame_ids[0]}, {frame_ids[1]}, ..., {frame_ids[-1]}] ({len(frame_ids)} frames)"


# Boxes may stick out of the frame by rounding noise (a normalised box times the frame size); more than
# this many pixels is an error.
_OUTSIDE_TOLERANCE = 1e-3


def check_box(
    box: Box, width: int | None, height: int | None, path: str | Path | None, record: int | str | None, frame_id: int
) -> None:
    """Check one pixel ``xyxy`` box: finite, positive area, inside the frame when its size is known.

    Raises:
        AnnotationError: naming the file, the record, the frame and the box.
    """
    x1, y1, x2, y2 = box
    shown = f"box {[_short(v) for v in box]} on frame {frame_id}"
    if not all(math.isfinite(v) for v in box):
        raise record_error(path, record, "boxes", f"{shown} has non-finite values")
    if x2 <= x1 or y2 <= y1:
        raise record_error(path, record, "boxes", f"{shown} has zero or negative area; expected x1 < x2 and y1 < y2")
    if width is not None and height is not None:
        tol = _OUTSIDE_TOLERANCE
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            raise record_error(
                path,
                record,
                "boxes",
                f"{shown} lies outside the {width}x{height} frame; expected 0 <= x1 < x2 <= {width} and "
                f"0 <= y1 < y2 <= {height} (pixel xyxy)",
            )


def _short(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 3)
