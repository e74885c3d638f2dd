"""Error types raised by artemis.

Every error names the bad value and says how to fix it. They derive from ``ValueError`` (or
``FileNotFoundError``) so callers that already catch the built-in types keep working, and the CLI
turns any ``ArtemisError`` into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import math
import numbers


class ArtemisError(Exception):
    """Base class of every error artemis raises on purpose."""


class VideoError(ArtemisError, ValueError):
    """A video or frame folder is missing, empty, corrupt or indexed past its end."""


class BoxError(ArtemisError, ValueError):
    """A box is malformed, of zero area, or outside its frame."""


class AnnotationError(ArtemisError, ValueError):
    """An annotation file or record is malformed."""


class CheckpointError(ArtemisError, ValueError):
    """A checkpoint is missing, of the wrong architecture, or of the wrong shape."""


class ConfigError(ArtemisError, ValueError):
    """A configuration value or key is invalid."""


class TrackingError(ArtemisError, RuntimeError):
    """A tracker could not be created or initialised."""


class OutputError(ArtemisError, OSError):
    """An output cannot be written where the user asked."""


def is_int(value: object, minimum: int | None = None, maximum: int | None = None) -> bool:
    """True for an integer (Python's or numpy's) that is not a bool, within ``[minimum, maximum]`` where
    given: the check every count, index and size setting makes before its own error names the value.
    ``True`` is an int to Python but never a count to a user, so it is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return False
    return bool((minimum is None or value >= minimum) and (maximum is None or value <= maximum))


def is_real(value: object, minimum: float | None = None, maximum: float | None = None) -> bool:
    """True for a real number (int or float, Python's or numpy's) that is not a bool and not NaN, within
    ``[minimum, maximum]`` where given. Infinity passes unless a bound excludes it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return False
    return bool((minimum is None or value >= minimum) and (maximum is None or value <= maximum))
