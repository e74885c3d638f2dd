"""Error types raised by artemis.

Every error names the bad value and says how to fix it. They derive from ``ValueError`` (or
``FileNotFoundError``) so callers that already catch the built-in types keep working, and the CLI
turns any ``ArtemisError`` into one line on stderr and a non-zero exit.
"""

from __future__ import annotations


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
