"""Readers and writers of every annotation format artemis knows, by name.

Each format module exposes ``NAME``, ``HAS_BOXES``, ``read(path) -> list[RefSample]`` and
``write(samples, path) -> Path``; :func:`read` and :func:`write` dispatch on the format's name.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from artemis.data.records import RefSample
from artemis.errors import AnnotationError

FORMATS = ("videoref45k", "elysium", "hcstvg", "lasot", "otb", "llava")
"""Every format name, as the CLI's ``--from``/``--to`` accept them."""

BOX_FORMATS = ("videoref45k", "elysium", "hcstvg", "lasot", "otb")
"""Formats that carry a target's boxes (and so convert into one another)."""


def get_format(name: str) -> ModuleType:
    """The module of format ``name``.

    Raises:
        AnnotationError: for an unknown name, listing the valid ones.
    """
    if name not in FORMATS:
        raise AnnotationError(f"unknown annotation format {name!r}; expected one of: {', '.join(FORMATS)}")
    return importlib.import_module(f"artemis.data.formats.{name}")


def read(name: str, path: str | Path) -> list[RefSample]:
    """Read the annotations at ``path`` in format ``name``."""
    return get_format(name).read(Path(path))


def write(name: str, samples: list[RefSample], path: str | Path) -> Path:
    """Write ``samples`` to ``path`` in format ``name`` (atomically).

    Raises:
        AnnotationError: a sample is about several regions and the format holds one (only videoref45k holds
            several), rather than dropping all but the first.
    """
    several = next((s for s in samples if s.other_regions), None)
    if several is not None and name != "videoref45k":
        raise AnnotationError(
            f"record {several.sample_id!r} is about {1 + len(several.other_regions)} regions and {name} holds one "
            "per record; write it as videoref45k, or leave multi-region files (videoref45k_pairs.json) out"
        )
    return get_format(name).write(samples, Path(path))


__all__ = ["BOX_FORMATS", "FORMATS", "get_format", "read", "write"]
