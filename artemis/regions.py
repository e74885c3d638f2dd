"""A region a user points at: a box or a mask on one frame of the video (:class:`Region`).

Several regions of one question may each be given on a frame of their own; each is tracked from its
own frame (``docs/regions.md``). A mask is turned into its tight box here, since the tracker and the
region encoder start from a box.

Masks (``Region(mask=..., frame=...)``) are a boolean ``(H, W)`` array, a PNG path (non-zero pixels are
the mask) or a COCO RLE dict (``{"size": [H, W], "counts": ...}``, compressed (a string, as
``pycocotools.mask.encode`` writes it) or not (a list of run lengths)). :func:`mask_to_rle` writes the
uncompressed form (SynthRef's ``key_frame_mask``).
Bad masks are refused with a :class:`~artemis.errors.BoxError`: an empty mask, a mask whose size is not
the video's, and a mask with several sizeable parts far apart (the user meant several objects: give one
region per object). Small specks are kept in the tight box.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artemis.errors import BoxError, is_int

__all__ = ["MaskInput", "Region", "load_mask", "mask_box", "mask_to_rle", "parse_region_arg", "rle_runs"]

MaskInput = np.ndarray | str | Path | Mapping[str, Any]

# A part of a mask counts as an object of its own when it holds at least this share of the mask's pixels,
# and two such parts are "far apart" when the gap between their boxes exceeds this share of the larger
# part's box diagonal (a hand-drawn mask with a small break stays one object).
PART_SHARE = 0.05
FAR_GAP = 0.5


@dataclass
class Region:
    """A target given on ``frame``: a pixel ``xyxy`` box, or a mask whose tight box is used.

    Exactly one of ``box`` and ``mask`` is given; :meth:`resolve` returns the box (checked against the
    video's size for a mask).
    """

    box: Sequence[float] | np.ndarray | None = None
    frame: int = 0
    mask: MaskInput | None = None

    def __post_init__(self) -> None:
        if (self.box is None) == (self.mask is None):
            raise BoxError(f"a Region takes a box or a mask (exactly one); got box={self.box!r}, mask given: "
                           f"{self.mask is not None}")  # fmt: skip
        if not is_int(self.frame):
            raise BoxError(f"region frame {self.frame!r} is not a frame index; expected an integer >= 0")

    def resolve(self, width: int, height: int) -> np.ndarray:
        """The region's pixel ``xyxy`` box (the tight box of its mask when it has one)."""
        if self.mask is None:
            return np.asarray(self.box, dtype=np.float64)
        return mask_box(load_mask(self.mask), width, height)


def load_mask(mask: MaskInput) -> np.ndarray:
    """A mask as a boolean ``(H, W)`` array: a boolean/0-1 array, a PNG path or a COCO RLE dict."""
    if isinstance(mask, (str, Path)):
        from PIL import Image

        path = Path(mask)
        if not path.is_file():
            raise FileNotFoundError(
                f"mask file {str(path)!r} does not exist; give a PNG whose non-zero pixels mark the target"
            )
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("L"))
        except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
            raise BoxError(f"mask file {str(path)!r} is not an image PIL can read ({error}); give a PNG") from None
        return array > 0
    if isinstance(mask, Mapping):
        return _decode_rle(mask)
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise BoxError(f"a mask is a (H, W) array; got shape {array.shape}")
    return array.astype(bool)


# COCO's RLE is a list of run lengths over the mask in column-major order, starting with a run of zeros
# (the compressed form packs that list into a string: rle_runs). Reading and writing it is a few lines of
# numpy, checked run by run, so SynthRef and the readers of masks need no pycocotools.


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """A (H, W) bool mask as an uncompressed COCO RLE dict ``{"size": [H, W], "counts": [...]}``."""
    mask = np.asarray(mask, dtype=bool)
    flat = mask.flatten(order="F").astype(np.int8)  # (H*W,) column-major
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1] if flat.size else 0]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def _decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise BoxError(f"RLE mask size {size!r} is not [height, width] of positive integers")
    height, width = size
    if isinstance(counts, bytes):  # pycocotools.mask.encode gives bytes
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        counts = rle_runs(counts)
        if counts is None:
            raise BoxError("the RLE mask's counts string is malformed; give pycocotools.mask.encode's output")
    if not isinstance(counts, list):
        raise BoxError(f"RLE mask counts {type(counts).__name__}: expected a string or a list of run lengths")
    if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
        total = sum(c for c in counts if isinstance(c, int))
        raise BoxError(
            f"RLE mask counts sum to {total} for a {height}x{width} mask (HxW): the runs cover {total} pixels of its "
            f"{height * width}; give non-negative integer run lengths summing to height * width "
            "(pycocotools.mask.encode writes them)"
        )
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    flat = np.repeat(values, counts)  # (H*W,)
    return flat.reshape((height, width), order="F")


def rle_runs(counts: str) -> list[int] | None:
    """The run lengths of COCO's compressed RLE string (5 bits per character, the runs after the first two
    stored as differences), or ``None`` when it is malformed. Read here rather than by pycocotools, which
    decodes without checking that the runs cover the mask (it then returns uninitialised memory as mask
    pixels) and does not expose its reader."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return None
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def mask_box(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """The tight pixel ``xyxy`` box of ``mask`` (edges: a pixel ``x`` spans ``x .. x + 1``).

    Raises:
        BoxError: the mask is empty, not ``height x width``, or has several sizeable parts far apart.
    """
    if mask.shape != (height, width):
        raise BoxError(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the video is {width}x{height}; "
            "give a mask of the video's frame size"
        )
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise BoxError("the mask is empty (no pixel set); mark the target's pixels or give a box")
    _check_one_object(mask, int(xs.size))
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def _check_one_object(mask: np.ndarray, area: int) -> None:
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    parts = [stats[i] for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= PART_SHARE * area]
    boxes = [(s[0], s[1], s[0] + s[2], s[1] + s[3]) for s in parts]  # x1, y1, x2, y2
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            gap_x = max(b[0] - a[2], a[0] - b[2], 0)
            gap_y = max(b[1] - a[3], a[1] - b[3], 0)
            larger = max(np.hypot(a[2] - a[0], a[3] - a[1]), np.hypot(b[2] - b[0], b[3] - b[1]))
            if np.hypot(gap_x, gap_y) > FAR_GAP * larger:
                raise BoxError(
                    f"the mask has {len(parts)} separate parts far apart (e.g. at x={a[0]}..{a[2]} and "
                    f"x={b[0]}..{b[2]}); give one region per object, or join the parts"
                )


_REGION_ARG = re.compile(r"^(?P<value>.+)@(?P<frame>[^@]*)$")


def parse_region_arg(text: str, kind: str = "box") -> Region:
    """Parse a command-line region ``"X1,Y1,X2,Y2@FRAME"`` (``kind="box"``) or ``"mask.png@FRAME"``.

    Without ``@FRAME`` the region is on frame 0.
    """
    from artemis.boxes import parse_box_arg

    match = _REGION_ARG.match(text.strip())
    value, frame_text = (match["value"], match["frame"]) if match else (text.strip(), "0")
    try:
        frame = int(frame_text)
    except ValueError:
        raise BoxError(
            f"{kind} {text!r}: frame {frame_text!r} after '@' is not a frame index; expected e.g. "
            f"{'10,20,110,220@30' if kind == 'box' else 'mask.png@30'} (0-based frame)"
        ) from None
    if frame < 0:
        raise BoxError(f"{kind} {text!r}: frame {frame} is negative; frames are 0-based (0, 1, 2, ...)")
    if kind == "box":
        return Region(box=parse_box_arg(value), frame=frame)
    return Region(mask=value, frame=frame)
