"""Data: the internal sample type, annotation formats and converters, and the SynthRef generator.

* :class:`RefSample` — one target in one video (frames, pixel boxes, visibility, key frame, text).
* :mod:`artemis.data.formats` — ``read``/``write`` for videoref45k, elysium, hcstvg, lasot, otb, llava.
* :func:`convert`, :func:`validate` — between formats; checks, optionally against the files named.
* :func:`generate_split` — SynthRef videos with annotations in every format.
"""

from artemis.data.convert import convert, validate
from artemis.data.formats import BOX_FORMATS, FORMATS, get_format, read, write
from artemis.data.records import RefSample
from artemis.data.synthref import SPLITS, SynthRefConfig, generate_scene
from artemis.data.synthref_writer import SynthRefSummary, generate_split

__all__ = [
    "BOX_FORMATS",
    "FORMATS",
    "SPLITS",
    "RefSample",
    "SynthRefConfig",
    "SynthRefSummary",
    "convert",
    "generate_scene",
    "generate_split",
    "get_format",
    "read",
    "validate",
    "write",
]
