"""Read frames of a video file or a folder of frames, exactly and without holding the whole video.

:class:`VideoReader` opens a path and hands the decoding to one of four decoders
(:mod:`artemis.video.backends`): ``decord``, ``pyav``, ``opencv`` or ``frames`` (a folder of
``.jpg``/``.jpeg``/``.png`` images in natural name order). :class:`DecodedVideo` is the frame access it
shares with :class:`~artemis.video.ImageListVideo` (an explicit list of images).

Header frame counts are never trusted: an AVI may claim 444 frames and hold 68.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
from typing_extensions import Self  # typing.Self is Python 3.11+; artemis supports 3.10

from artemis.errors import VideoError
from artemis.video.backends import (
    DECODERS,
    FILE_BACKENDS,
    IMAGE_SUFFIXES,
    Decoder,
    available_backends,
    import_backend,
)

logger = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav", "opencv", "frames"]

# Frame rate of a frame folder, and of a video whose container has none, unless the caller gives one.
DEFAULT_FPS = 30.0

__all__ = ["DEFAULT_FPS", "IMAGE_SUFFIXES", "Backend", "DecodedVideo", "VideoReader", "available_backends", "check_fps"]


class ClosesOnExit:
    """``with source:`` closes the source at the end of the block (every source has a ``close``)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class DecodedVideo(ClosesOnExit):
    """A :class:`~artemis.video.VideoSource` over one :class:`~artemis.video.backends.Decoder`.

    What :class:`VideoReader` and :class:`~artemis.video.ImageListVideo` share: a subclass sets ``path`` and
    ``backend`` and calls :meth:`_start` with its decoder.
    """

    path: Path
    backend: str
    _decoder: Decoder | None

    def _start(self, decoder: Decoder, fps: float | None) -> None:
        self._decoder = decoder
        self.num_frames: int = decoder.num_frames
        self.width: int = decoder.width
        self.height: int = decoder.height
        self.fps: float = float(fps if fps is not None else decoder.fps or DEFAULT_FPS)
        logger.debug(
            "opened %s with %s: %d frames, %dx%d, %.3f fps", self.path, self.backend, self.num_frames, self.width,
            self.height, self.fps,
        )  # fmt: skip

    # --- geometry and time ---------------------------------------------------------------------------

    @property
    def duration(self) -> float:
        """Length in seconds, ``num_frames / fps``."""
        return self.num_frames / self.fps

    def __len__(self) -> int:
        return self.num_frames

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        array = np.asarray(indices)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise VideoError(
                f"frame indices must be a 1-D sequence of integers, got {array.dtype} array of shape {array.shape}"
            )
        low, high, last = int(array.min()), int(array.max()), self.num_frames - 1
        if low < 0:
            raise VideoError(f"frame index {low} is negative; expected 0..{last} for {self.path.name}")
        if high > last:
            raise VideoError(f"frame index {high} is past the end of {self.path.name} ({last + 1} frames, 0..{last})")
        return array.astype(np.int64)

    def timestamps(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Times of frames in seconds, ``index / fps``, as an ``(N,)`` float64 array (all frames when ``None``)."""
        array = np.arange(self.num_frames) if indices is None else self._check_indices(indices)
        return array.astype(np.float64) / self.fps

    # --- frames --------------------------------------------------------------------------------------

    def _active(self) -> Decoder:
        if self._decoder is None:
            raise VideoError(f"the {type(self).__name__} of {self.path} is closed; open a new one")
        return self._decoder

    def _checked(self, index: int, frame: np.ndarray) -> np.ndarray:
        if frame.shape != (self.height, self.width, 3):
            raise VideoError(
                f"frame {index} of {self.path} has shape {frame.shape} but the video is {self.width}x{self.height}; "
                "videos whose frame size changes are not supported, re-encode at one size"
            )
        return frame

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decode the frames at ``indices``, in the order asked (duplicates allowed).

        Only the requested frames are kept in memory; each distinct frame is decoded once, in increasing
        order, whatever order they were asked in.

        Args:
            indices: frame indices in ``0..num_frames-1``.

        Returns:
            ``(N, H, W, 3)`` uint8 RGB array.
        """
        wanted = self._check_indices(indices)  # (N,)
        frames = np.empty((len(wanted), self.height, self.width, 3), dtype=np.uint8)  # (N, H, W, 3)
        if len(wanted) == 0:
            return frames
        unique, inverse = np.unique(wanted, return_inverse=True)  # (U,), (N,)
        slots = np.argsort(inverse, kind="stable")  # positions grouped by unique index
        starts = np.searchsorted(inverse[slots], np.arange(len(unique) + 1))
        for k, (index, frame) in enumerate(self._active().read(unique.tolist())):
            frames[slots[starts[k] : starts[k + 1]]] = self._checked(index, frame)
        return frames

    def get_frame(self, index: int) -> np.ndarray:
        """Decode one frame; returns ``(H, W, 3)`` uint8 RGB."""
        return self.get_frames([index])[0]

    def iter_frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(index, (H, W, 3) uint8 RGB)`` for ``range(start, stop, step)``, one frame held at a time.

        ``stop`` defaults to ``num_frames`` and, like a slice, is clipped to it.
        """
        if start < 0 or (stop is not None and stop < 0) or step < 1:
            raise VideoError(
                f"iter_frames(start={start}, stop={stop}, step={step}) is invalid for {self.path.name}; "
                "expected start >= 0, stop >= 0 and step >= 1"
            )
        return self.iter_indices(range(start, min(self.num_frames if stop is None else stop, self.num_frames), step))

    def iter_indices(self, indices: Sequence[int] | np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(index, (H, W, 3) uint8 RGB)`` for strictly increasing ``indices`` in one forward pass
        of the decoder (no frame decoded twice), one frame held at a time."""
        wanted = self._check_indices(indices)
        if len(wanted) > 1 and not bool(np.all(np.diff(wanted) > 0)):
            raise VideoError(f"iter_indices needs strictly increasing frame indices, got {wanted.tolist()[:8]}...")
        decoder = self._active()

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            for index, frame in decoder.read(wanted.tolist()):
                yield index, self._checked(index, frame)

        return frames()

    # --- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the decoder; further reads raise :class:`VideoError`. Safe to call twice."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None


class VideoReader(DecodedVideo):
    """Frames of a video file or of a folder of frames, as ``uint8`` RGB arrays.

    Args:
        source: a video file, or a folder of ``.jpg``/``.jpeg``/``.png`` frames sorted by name in natural
            order (``2.jpg`` before ``10.jpg``; hidden files are ignored).
        backend: ``"auto"`` picks, for a file, decord if importable, else pyav, else opencv, moving on to the
            next when one cannot open the file; for a folder, ``"frames"``.
        fps: frames per second; overrides the container's rate. Frame folders default to 30.

    Attributes:
        path: the source.
        backend: the backend in use (``"decord"``, ``"pyav"``, ``"opencv"`` or ``"frames"``).
        num_frames: frames that actually decode (never the header's claim).
        fps, width, height: frame rate and frame size in pixels.

    Raises:
        VideoError: the source is missing, empty, corrupt, has no decodable frame, or the backend is
            not installed; the message names the path and the fix.

    A reader is not thread-safe: give each thread or data-loader worker its own.
    """

    def __init__(self, source: str | os.PathLike[str], backend: Backend = "auto", *, fps: float | None = None) -> None:
        self.path = Path(source)
        check_fps(fps, self.path)
        if not self.path.exists():
            raise VideoError(f"video {self.path} does not exist; expected a video file or a folder of frames")
        self._decoder = None
        self.backend, decoder = self._open(backend)
        if fps is None and decoder.fps is None and self.backend != "frames":
            logger.warning("%s reports no frame rate; assuming %.1f fps (pass fps= to set it)", self.path, DEFAULT_FPS)
        self._start(decoder, fps)

    def __repr__(self) -> str:
        return (
            f"VideoReader({str(self.path)!r}, backend={self.backend!r}, num_frames={self.num_frames}, "
            f"size={self.width}x{self.height}, fps={self.fps:.3f})"
        )

    def _open(self, backend: str) -> tuple[str, Decoder]:
        if backend not in ("auto", *DECODERS):
            raise VideoError(f"unknown video backend {backend!r}; expected 'auto' or one of {list(DECODERS)}")
        if self.path.is_dir():
            if backend not in ("auto", "frames"):
                raise VideoError(f"{self.path} is a folder of frames; use backend='frames' or 'auto', not {backend!r}")
            return "frames", self._open_one("frames")
        if backend == "frames":
            raise VideoError(f"{self.path} is a file, not a folder of frames; use backend='auto' for a video")
        if self.path.stat().st_size == 0:
            raise VideoError(f"video {self.path} is empty (0 bytes); re-export or re-download it")
        if backend != "auto":
            return backend, self._open_one(backend)
        candidates = [name for name in FILE_BACKENDS if import_backend(name) is not None]
        if not candidates:
            raise VideoError("no video backend is installed; `pip install decord`, `pip install av` or opencv")
        errors: list[VideoError] = []
        for name in candidates:
            try:
                return name, self._open_one(name)
            except VideoError as error:
                logger.info("backend %s cannot read %s: %s", name, self.path, error)
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        reasons = "; ".join(f"{name}: {error}" for name, error in zip(candidates, errors, strict=True))
        raise VideoError(f"cannot read {self.path} as a video with any installed backend ({reasons})")

    def _open_one(self, name: str) -> Decoder:
        decoder: Decoder = DECODERS[name](self.path)
        if decoder.num_frames == 0:
            decoder.close()
            raise VideoError(f"{self.path} has no decodable frames ({name}); check that it plays, or re-encode it")
        return decoder


def check_fps(fps: float | None, path: Path) -> None:
    """Refuse an ``fps`` that is not a positive finite number, naming the video."""
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise VideoError(f"fps {fps!r} for {path} is invalid; expected a positive number such as 25.0")
