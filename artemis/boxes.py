"""Every box conversion artemis needs, in one place.

Conventions:

* A *pixel* box is ``xyxy`` in 0-based pixel coordinates of the frame it belongs to, with ``x2``/``y2``
  exclusive: a box covering the single pixel (0, 0) is ``(0, 0, 1, 1)``. Its width is ``x2 - x1``.
* A *normalised* box is the pixel box divided by the frame (or model input) width and height, so it lies
  in ``[0, 1]``.
* OTB and LaSOT text files store ``x, y, w, h`` with ``x, y`` 1-based: the top-left pixel of the image
  is ``(1, 1)``. ``otb_to_xyxy`` subtracts one from ``x, y``. HC-STVG's ``x, y, w, h`` are 0-based (its
  boxes reach ``y = 0`` and ``y + h = height``), so they go through ``xywh_to_xyxy``.
* Elysium writes a normalised box as text, ``[x1,y1,x2,y2]`` with each value ``round(v * 100)``.

:class:`SquareTransform` maps boxes through the frame preprocessing (pad to a square, then resize) with
exactly the offsets and scale used for the pixels, so the model sees boxes on the target. (The original
Artemis normalised boxes by the raw frame size but centre-cropped the pixels, which misaligns every box
on a non-square video.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from artemis.errors import BoxError

BoxFormat = Literal["xyxy", "xywh"]

__all__ = [
    "BoxFormat",
    "SquareTransform",
    "as_boxes",
    "box_area",
    "box_iou",
    "clip_boxes",
    "denormalize",
    "format_elysium_box",
    "format_elysium_frames",
    "normalize",
    "otb_to_xyxy",
    "parse_box_arg",
    "parse_elysium_box",
    "parse_elysium_frames",
    "to_xyxy",
    "validate_box",
    "xywh_to_xyxy",
    "xyxy_to_otb",
    "xyxy_to_xywh",
]


def as_boxes(boxes: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Return ``boxes`` as a float64 array of shape ``(..., 4)``.

    Raises:
        BoxError: if the last dimension is not 4.
    """
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 4:
        raise BoxError(f"expected boxes with 4 values each, got an array of shape {array.shape}")
    return array


def xywh_to_xyxy(boxes: np.ndarray | Sequence[float]) -> np.ndarray:
    """``(x, y, w, h)`` -> ``(x1, y1, x2, y2)``, any leading shape."""
    b = as_boxes(boxes)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def xyxy_to_xywh(boxes: np.ndarray | Sequence[float]) -> np.ndarray:
    """``(x1, y1, x2, y2)`` -> ``(x, y, w, h)``, any leading shape."""
    b = as_boxes(boxes)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def to_xyxy(boxes: np.ndarray | Sequence[float], box_format: BoxFormat) -> np.ndarray:
    """Convert boxes given in ``box_format`` to ``xyxy``."""
    if box_format == "xyxy":
        return as_boxes(boxes).copy()
    if box_format == "xywh":
        return xywh_to_xyxy(boxes)
    raise BoxError(f"unknown box_format {box_format!r}; expected 'xyxy' or 'xywh'")


def otb_to_xyxy(boxes: np.ndarray | Sequence[float]) -> np.ndarray:
    """OTB/LaSOT 1-based ``(x, y, w, h)`` -> 0-based pixel ``xyxy``."""
    b = as_boxes(boxes).copy()
    b[..., :2] -= 1.0
    return xywh_to_xyxy(b)


def xyxy_to_otb(boxes: np.ndarray | Sequence[float]) -> np.ndarray:
    """0-based pixel ``xyxy`` -> OTB/LaSOT 1-based ``(x, y, w, h)``."""
    b = xyxy_to_xywh(boxes)
    b[..., :2] += 1.0
    return b


def normalize(boxes: np.ndarray | Sequence[float], width: float, height: float) -> np.ndarray:
    """Pixel ``xyxy`` -> ``xyxy`` divided by the frame size."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    return as_boxes(boxes) / scale


def denormalize(boxes: np.ndarray | Sequence[float], width: float, height: float) -> np.ndarray:
    """Normalised ``xyxy`` -> pixel ``xyxy`` of a ``width`` x ``height`` frame."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    return as_boxes(boxes) * scale


def clip_boxes(boxes: np.ndarray | Sequence[float], width: float, height: float) -> np.ndarray:
    """Clip pixel ``xyxy`` boxes to the frame."""
    b = as_boxes(boxes).copy()
    b[..., 0::2] = np.clip(b[..., 0::2], 0.0, width)
    b[..., 1::2] = np.clip(b[..., 1::2], 0.0, height)
    return b


def box_area(boxes: np.ndarray | Sequence[float]) -> np.ndarray:
    """Area of ``xyxy`` boxes; zero for empty or inverted boxes."""
    b = as_boxes(boxes)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_iou(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> np.ndarray:
    """Element-wise IoU of two broadcastable sets of ``xyxy`` boxes."""
    a, b = as_boxes(a), as_boxes(b)
    lt = np.maximum(a[..., :2], b[..., :2])
    rb = np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    union = box_area(a) + box_area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _describe_frame(frame_index: int | None, width: float, height: float) -> str:
    where = f"frame {frame_index}" if frame_index is not None else "the frame"
    return f"{where} ({int(width)}x{int(height)})"


def validate_box(
    box: Sequence[float] | np.ndarray,
    width: float,
    height: float,
    *,
    box_format: BoxFormat = "xyxy",
    frame_index: int | None = None,
) -> np.ndarray:
    """Check a user's pixel box against its frame and return it as ``xyxy`` float64.

    A box that overlaps the frame but sticks out of it is clipped to the frame; a box with no overlap,
    of zero area, inverted, or with non-finite values is an error.

    Raises:
        BoxError: naming the box, the frame and what a valid box looks like.
    """
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    where = _describe_frame(frame_index, width, height)
    if values.shape != (4,):
        raise BoxError(f"box {tuple(values.tolist())} has {values.size} values; expected 4 ({box_format})")
    if not np.all(np.isfinite(values)):
        raise BoxError(f"box {tuple(values.tolist())} has non-finite values; expected 4 numbers in pixels")
    shown = tuple(float(v) for v in values)
    xyxy = to_xyxy(values, box_format)
    x1, y1, x2, y2 = xyxy
    if box_format == "xywh" and (values[2] <= 0 or values[3] <= 0):
        raise BoxError(f"box {shown} (xywh) has zero or negative size; expected w > 0 and h > 0 on {where}")
    if x2 < x1 or y2 < y1:
        axis = "x2 < x1" if x2 < x1 else "y2 < y1"
        raise BoxError(f"box {shown} has {axis}; expected x1 < x2 and y1 < y2 in pixels of {where}")
    if x2 == x1 or y2 == y1:
        raise BoxError(f"box {shown} has zero area; expected x1 < x2 and y1 < y2 in pixels of {where}")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise BoxError(
            f"box {shown} lies outside {where}; expected pixel coordinates within 0..{int(width)} (x) "
            f"and 0..{int(height)} (y)"
        )
    return clip_boxes(xyxy, width, height)


def parse_box_arg(text: str) -> tuple[float, float, float, float]:
    """Parse a command-line box ``"X1,Y1,X2,Y2"`` (commas or spaces)."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise BoxError(f"box {text!r} is not 4 numbers; expected X1,Y1,X2,Y2 such as 10,20,110,220") from None
    if len(values) != 4:
        raise BoxError(f"box {text!r} has {len(values)} values; expected X1,Y1,X2,Y2 such as 10,20,110,220")
    return values  # type: ignore[return-value]


# --- Elysium's text boxes -------------------------------------------------------------------------

_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_ELYSIUM_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")
_ELYSIUM_FRAME = re.compile(r"Frame\s+(\d+)\s*:\s*(\[[^\]]*\])")


def format_elysium_box(box: Sequence[float] | np.ndarray) -> str:
    """Normalised ``xyxy`` -> ``"[x1,y1,x2,y2]"`` with each value ``round(v * 100)``, no spaces.

    Python's ``round`` (half to even) is what Elysium uses, so ``0.125`` becomes ``12``.
    """
    b = as_boxes(box).reshape(4)
    return "[" + ",".join(str(round(float(v) * 100)) for v in b) + "]"


def parse_elysium_box(text: str) -> np.ndarray | None:
    """``"[x1,y1,x2,y2]"`` (values 0..100) -> normalised ``xyxy``; ``None`` when it does not parse."""
    match = _ELYSIUM_BOX.search(text)
    if match is None:
        return None
    values = np.array([float(g) for g in match.groups()], dtype=np.float64) / 100.0
    if not all(math.isfinite(v) for v in values):
        return None
    return values


def format_elysium_frames(boxes: Sequence[Sequence[float]] | np.ndarray, start: int = 1) -> str:
    """Normalised boxes per frame -> ``"Frame 1: [..], Frame 2: [..], ..."``."""
    return ", ".join(f"Frame {start + i}: {format_elysium_box(b)}" for i, b in enumerate(boxes))


def parse_elysium_frames(text: str, num_frames: int, start: int = 1) -> list[np.ndarray | None]:
    """Parse an Elysium SOT answer into one normalised box (or ``None``) per frame.

    Frames are matched by their ``Frame N:`` label; where no label is present the boxes are taken in
    order. Frames that are missing or fail to parse come back as ``None``, never an exception, so a
    model's malformed answer cannot crash an evaluation.
    """
    result: list[np.ndarray | None] = [None] * num_frames
    labelled = _ELYSIUM_FRAME.findall(text)
    if labelled:
        for label, box_text in labelled:
            index = int(label) - start
            if 0 <= index < num_frames and result[index] is None:
                result[index] = parse_elysium_box(box_text)
        return result
    for index, match in enumerate(_ELYSIUM_BOX.finditer(text)):
        if index >= num_frames:
            break
        result[index] = parse_elysium_box(match.group(0))
    return result


# --- preprocessing transform ------------------------------------------------------------------------


@dataclass(frozen=True)
class SquareTransform:
    """Pad a ``width`` x ``height`` frame to a square, then resize it to ``size`` x ``size``.

    The padding is split as LLaVA's ``expand2square`` splits it: the frame is pasted at
    ``((side - width) // 2, (side - height) // 2)`` on a ``side = max(width, height)`` canvas. Boxes go
    through the same offsets and scale as the pixels.
    """

    width: int
    height: int
    size: int

    @property
    def side(self) -> int:
        """Side of the padded square, in source pixels."""
        return max(self.width, self.height)

    @property
    def pad_x(self) -> int:
        return (self.side - self.width) // 2

    @property
    def pad_y(self) -> int:
        return (self.side - self.height) // 2

    @property
    def scale(self) -> float:
        """Output pixels per source pixel."""
        return self.size / self.side

    def boxes_to_model(self, boxes: np.ndarray | Sequence[float]) -> np.ndarray:
        """Pixel ``xyxy`` on the source frame -> normalised ``xyxy`` on the model's square input."""
        b = as_boxes(boxes).copy()
        b[..., 0::2] += self.pad_x
        b[..., 1::2] += self.pad_y
        return b / self.side

    def boxes_from_model(self, boxes: np.ndarray | Sequence[float]) -> np.ndarray:
        """Normalised ``xyxy`` on the model's square input -> pixel ``xyxy`` on the source frame."""
        b = as_boxes(boxes) * self.side
        b[..., 0::2] -= self.pad_x
        b[..., 1::2] -= self.pad_y
        return b
