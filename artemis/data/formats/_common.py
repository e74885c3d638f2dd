"""Helpers shared by the format readers and writers: loading JSON with errors that name the file, the
record and the field, and paths relative to the file being written."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artemis.data.records import RefSample, record_error
from artemis.errors import BoxError, VideoError
from artemis.regions import load_mask
from artemis.video import opened

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# Pixel boxes read from normalised floats are rounded to this many decimals, so a pixel box survives
# ``pixel -> normalised -> pixel`` exactly when it lies on a 1e-4 pixel grid (all integer boxes do).
PIXEL_DECIMALS = 4


def load_json(path: str | Path) -> Any:
    """Parse a JSON file.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        AnnotationError: if it is not valid JSON, naming the line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise record_error(
            path, None, None, f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None


def load_record_list(path: str | Path, what: str) -> list[dict[str, Any]]:
    """Load a JSON file that must hold a list of objects (records).

    Args:
        path: The file.
        what: The format's name, for the error message.
    """
    data = load_json(path)
    if not isinstance(data, list):
        raise record_error(path, None, None, f"expected a JSON list of {what} records, got a JSON {_json_type(data)}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise record_error(path, index, None, f"expected a JSON object, got a JSON {_json_type(record)}")
    return data


def read_record_list(
    path: str | Path, what: str, parse_record: Callable[[dict[str, Any], Path, int], RefSample]
) -> list[RefSample]:
    """The ``read`` of a format stored as a JSON list of records: load the list, parse each record.

    Args:
        path: The file.
        what: The format's name, for the error message.
        parse_record: The format's ``parse_record(record, path, index)``.
    """
    path = Path(path)
    return [parse_record(record, path, index) for index, record in enumerate(load_record_list(path, what))]


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def require(record: dict[str, Any], name: str, kind: type | tuple[type, ...], path: Path, index: int | str) -> Any:
    """Return ``record[name]``, checking that it is present and of type ``kind``."""
    if name not in record:
        raise record_error(path, index, name, "required field is missing")
    value = record[name]
    # bool is an int in Python; a JSON true where a number belongs is still an error.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        expected = " or ".join(t.__name__ for t in _as_tuple(kind))
        raise record_error(path, index, name, f"expected {expected}, got a JSON {_json_type(value)}")
    return value


def optional(record: dict[str, Any], name: str, kind: type | tuple[type, ...], path: Path, index: int | str) -> Any:
    """Like :func:`require`, but ``None`` when absent (or null)."""
    if record.get(name) is None:
        return None
    return require(record, name, kind, path, index)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def parse_box_values(value: Any, path: Path, index: int | str, name: str, frame: int) -> list[float] | None:
    """A JSON box: ``[]`` (absent) -> ``None``; four finite numbers -> a list; anything else an error."""
    if value is None or (isinstance(value, list) and len(value) == 0):
        return None
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise record_error(path, index, name, f"entry {frame} is {value!r}; expected [] or 4 numbers")
    if not all(math.isfinite(v) for v in value):
        raise record_error(path, index, name, f"entry {frame} is {value!r}; expected finite numbers")
    return [float(v) for v in value]


def key_frame_mask(
    value: Any, width: int | None, height: int | None, path: Path, index: int | str, field: str = "key_frame_mask"
) -> dict[str, Any]:
    """An optional ``key_frame_mask`` (artemis' own field, in VideoRef45K records and in Elysium's
    ``metadata``): the target's pixels on the key frame, as a COCO RLE dict of the frame's size. Checked here
    (decoded once), kept as given; ``field`` names it in errors."""
    try:
        mask = load_mask(value) if isinstance(value, dict) else None
    except BoxError as error:
        raise record_error(path, index, field, str(error)) from None
    if mask is None:
        raise record_error(path, index, field, f"{type(value).__name__}; expected a COCO RLE dict")
    if width is not None and mask.shape != (height, width):
        raise record_error(path, index, field, f"size {list(mask.shape)} (HxW) is not the frame's {[height, width]}")
    if not mask.any():
        raise record_error(path, index, field, "the mask is empty; drop the field or mark the target")
    return value


def clean_number(value: float) -> int | float:
    """An integral float as an int, so JSON and text files show ``12`` rather than ``12.0``."""
    return int(value) if float(value).is_integer() else float(value)


def text_number(value: float) -> str:
    """A number for a text annotation file: integers plain, others with up to 4 decimals."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


def relative_to(sample: RefSample, path: str | None, out_dir: Path) -> str | None:
    """``path`` (relative to the sample's ``base_dir``) rewritten relative to ``out_dir``."""
    if path is None:
        return None
    if Path(path).is_absolute() or sample.base_dir is None:
        return path
    resolved = os.path.normpath(os.path.abspath(sample.base_dir / path))
    return Path(os.path.relpath(resolved, os.path.abspath(out_dir))).as_posix()


_SEPARATORS = re.compile(r"[,\s]+")


def read_box_rows(path: Path) -> list[list[float]]:
    """Rows of 4 numbers from an OTB/LaSOT text file (tab, comma or space separated; blank lines skipped).

    ``NaN`` values are kept (some OTB files mark absent frames with them).

    Raises:
        AnnotationError: naming the file and the line that is not 4 numbers.
    """
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = [p for p in _SEPARATORS.split(line.strip()) if p]
        if not parts:
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise record_error(
                path, line_number - 1, None, f"line {line_number} is {line!r}; expected x,y,w,h"
            ) from None
        if len(values) != 4:
            raise record_error(path, line_number - 1, None, f"line {line_number} has {len(values)} values; expected 4")
        rows.append(values)
    if not rows:
        raise record_error(path, None, None, "the track is empty; expected one x,y,w,h line per frame")
    return rows


def read_flags(path: Path, count: int) -> list[bool]:
    """0/1 flags, one per frame, separated by commas or whitespace (LaSOT writes both layouts)."""
    parts = [p for p in _SEPARATORS.split(path.read_text(encoding="utf-8").strip()) if p]
    if len(parts) != count or any(p not in ("0", "1") for p in parts):
        raise record_error(
            path, None, None, f"expected {count} flags of 0 or 1 (one per frame), got {len(parts)} values"
        )
    return [p == "1" for p in parts]


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, opened as a one-frame video (decodes that image only)."""
    try:
        with opened([path]) as image:
            return image.width, image.height
    except VideoError as error:
        raise record_error(path, None, None, f"cannot read this image to get the frame size ({error})") from None


def list_images(folder: Path) -> list[Path]:
    """Image files of a frame folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
