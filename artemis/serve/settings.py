"""``ServeSettings``: what ``artemis serve`` runs with, and how it reaches uvicorn's worker processes."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from artemis.errors import ConfigError
from artemis.model.loading import DEFAULT_MODEL

__all__ = ["SETTINGS_ENV", "ServeSettings"]

# uvicorn starts each worker by importing the app factory; the settings travel in this variable.
SETTINGS_ENV = "ARTEMIS_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    """Settings of one ``artemis serve``; the limits apply per worker process."""

    # What answers.
    model: str = DEFAULT_MODEL  # a checkpoint directory or the name of a bundled model
    device: str = "cpu"

    # Where it listens. Loopback unless told otherwise.
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # processes behind the one port, each with its own model
    demo: bool = True  # the web demo at /

    # Limits.
    max_upload_mb: float = 200.0  # request bodies above this get 413 (uploads, data URLs)
    max_frames: int | None = None  # videos with more frames get 413; None: any length
    queue: int = 16  # requests that may wait for the model (beyond the one it runs); more get 429
    timeout: float = 120.0  # seconds a request may wait for and use the model; then 504

    def __post_init__(self) -> None:
        checks = {
            "workers": self.workers >= 1,
            "max_upload_mb": self.max_upload_mb > 0,
            "max_frames": self.max_frames is None or self.max_frames >= 1,
            "queue": self.queue >= 0,
            "timeout": self.timeout > 0,
            "port": 0 <= self.port <= 65535,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"serve setting {name}={getattr(self, name)!r} is out of range; see artemis serve -h")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def to_env(self) -> str:
        """The settings as the JSON :meth:`from_env` reads."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServeSettings:
        """Settings from :data:`SETTINGS_ENV` (defaults where it is unset)."""
        text = environ.get(SETTINGS_ENV)
        if not text:
            return cls()
        try:
            values = json.loads(text)
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{SETTINGS_ENV} is not valid serve settings JSON ({error}); unset it") from None
