"""Regions as requests give them: boxes and masks in JSON, each on a frame of its own (docs/serve.md).

``POST /v1/ask`` takes a ``regions`` form field, a JSON list in the order the question names the regions::

    [{"box": [280, 100, 360, 170], "frame": 10},
     {"mask": "mask1", "frame": 200},
     {"mask": {"size": [272, 640], "counts": "..."}, "frame": 30}]

A ``mask`` is the name of an uploaded PNG's file field (``mask``, ``mask1``, ``mask_left``...) or a COCO RLE
dict. The chat endpoint's ``box`` and ``mask`` content parts have the same keys (a mask there is a RLE dict
or a ``data:image/png;base64,...`` URL). :func:`parse_region` reads one such object into a
:class:`RegionSpec`; :func:`read_regions` reads the form field. Checks against the video (frame range,
box inside the frame, mask size, empty masks) are the service's, before the model is taken.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artemis.errors import BoxError, is_int, is_real
from artemis.regions import Region, load_mask
from artemis.serve.errors import ServeError
from artemis.serve.uploads import Upload

__all__ = ["MASK_FIELD", "MAX_REGIONS", "RegionSpec", "check_rle", "parse_region", "read_regions"]

MAX_REGIONS = 16
"""Regions one request may name (each is tracked through the whole video)."""

MASK_FIELD = re.compile(r"mask[A-Za-z0-9_-]{0,32}")
"""File fields that carry mask PNGs in ``/v1/ask``: ``mask``, ``mask1``, ``mask_left``..."""

EXAMPLE = '[{"box": [10, 20, 110, 220], "frame": 5}, {"mask": "mask1", "frame": 30}]'


@dataclass
class RegionSpec:
    """One region of a request: ``box`` (4 pixel numbers) or ``mask`` (a RLE dict, or a string naming a file:
    an upload's field name or a data URL) on ``frame``; ``where`` names it in messages (``regions[1]``)."""

    where: str
    frame: int
    box: list[float] | None = None
    mask: dict[str, Any] | str | None = None

    def region(self, mask_file: Callable[[RegionSpec, str], Path]) -> Region:
        """The :class:`~artemis.regions.Region`; ``mask_file(self, text)`` gives the file a string mask names."""
        if self.box is not None:
            return Region(box=self.box, frame=self.frame)
        if isinstance(self.mask, str):
            return Region(mask=mask_file(self, self.mask), frame=self.frame)
        return Region(mask=self.mask, frame=self.frame)


def _error(where: str, problem: str) -> ServeError:
    return ServeError(400, f"{where}: {problem}"[:400])


def _is_number(value: Any) -> bool:
    return is_real(value) and math.isfinite(value)


def parse_region(spec: Any, where: str, *, ignore: tuple[str, ...] = ()) -> RegionSpec:
    """One region object ``{"box": [x1, y1, x2, y2], "frame": N}`` or ``{"mask": ..., "frame": N}``.

    Args:
        spec: the decoded JSON object.
        where: how messages name it (``regions[1]``, ``content part 3 (mask)``).
        ignore: keys allowed beside ``box``/``mask``/``frame`` (the chat part's ``type``).
    """
    if not isinstance(spec, dict):
        shown = json.dumps(spec)[:80]
        raise _error(
            where, f'expected {{"box": [x1, y1, x2, y2], "frame": N}} or {{"mask": ..., "frame": N}}, got {shown}'
        )
    unknown = sorted(set(spec) - {"box", "mask", "frame", *ignore})
    if unknown:
        raise _error(where, f"unknown keys {unknown}; a region has 'box' or 'mask', and 'frame'")
    if ("box" in spec) == ("mask" in spec):
        raise _error(where, "give 'box' or 'mask' (exactly one of them)")
    frame = spec.get("frame", 0)
    if not is_int(frame, minimum=0):
        raise _error(where, f"'frame' must be a frame index (an integer >= 0), got {json.dumps(frame)[:40]}")
    if "box" in spec:
        box = spec["box"]
        if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
            raise _error(where, f"'box' must be 4 numbers [x1, y1, x2, y2] in pixels, got {json.dumps(box)[:80]}")
        return RegionSpec(where, frame, box=[float(v) for v in box])
    mask = spec["mask"]
    if isinstance(mask, dict):
        return RegionSpec(where, frame, mask=check_rle(mask, where))
    if isinstance(mask, str) and mask:
        return RegionSpec(where, frame, mask=mask)
    raise _error(where, '\'mask\' must be a COCO RLE {"size": [H, W], "counts": ...} or name a PNG upload')


def read_regions(text: str, files: Mapping[str, Upload]) -> list[Region]:
    """The ``regions`` form field of ``/v1/ask``, its masks taken from the uploaded mask files.

    Every uploaded mask must be named by a region, and every region's mask must be uploaded.
    """
    try:
        specs = json.loads(text)
    except json.JSONDecodeError as error:
        raise ServeError(400, f"form field 'regions' is not JSON ({error.msg}); expected e.g. {EXAMPLE}") from None
    if not isinstance(specs, list) or not specs:
        raise ServeError(400, f"form field 'regions' must be a non-empty JSON list of regions, e.g. {EXAMPLE}")
    if len(specs) > MAX_REGIONS:
        raise ServeError(
            400, f"form field 'regions' names {len(specs)} regions; the server takes at most {MAX_REGIONS}"
        )
    parsed = [parse_region(spec, f"regions[{index}]") for index, spec in enumerate(specs)]
    used: set[str] = set()

    def mask_file(spec: RegionSpec, name: str) -> Path:
        upload = files.get(name)
        if upload is None or not MASK_FIELD.fullmatch(name):
            field_name = name if MASK_FIELD.fullmatch(name) else "mask1"
            raise _error(spec.where, f"mask {name!r} names no uploaded file; send it: -F {field_name}=@mask.png")
        used.add(name)
        return upload.path

    regions = [spec.region(mask_file) for spec in parsed]
    unused = sorted(name for name in files if MASK_FIELD.fullmatch(name) and name not in used)
    if unused:
        name = unused[0]
        raise ServeError(400, f"uploaded mask {name!r} is named by no region; add it to 'regions' or leave it out")
    return regions


def check_rle(rle: dict[str, Any], where: str) -> dict[str, Any]:
    """A COCO RLE dict whose runs cover its ``size`` exactly (checked by decoding it as the library does).

    Raises:
        ServeError: 400 naming ``where`` and what is wrong (unknown keys, size, counts, runs that do not add up).
    """
    unknown = sorted(set(rle) - {"size", "counts"})
    if unknown:
        raise _error(where, f'the RLE mask has unknown keys {unknown}; expected {{"size": [H, W], "counts": ...}}')
    try:
        load_mask(rle)
    except BoxError as error:
        raise _error(where, str(error)) from None
    return dict(rle)
