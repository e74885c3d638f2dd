"""One way to read a video: the :class:`VideoSource` protocol and :func:`open_video`.

Everything that reads frames (trackers, model inputs, data sets, caches) takes a :class:`VideoSource`. Three
classes implement it:

* :class:`~artemis.video.VideoReader` — a video file or a folder of frames;
* :class:`ImageListVideo` — an explicit list of image files, read one at a time
  (an ElysiumTrack-1M record);
* :class:`ArrayVideo` — frames already decoded into memory.

:func:`open_video` turns any of those inputs into a source; :func:`opened` does the same in a ``with`` block
and closes the source afterwards only when it opened it (a source the caller passed in stays open).

>>> with opened("clip.mp4") as video:  # doctest: +SKIP
...     frames = video.get_frames([0, 10, 20])  # (3, H, W, 3) uint8 RGB
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
from typing_extensions import Self  # typing.Self is Python 3.11+; artemis supports 3.10

from artemis.errors import VideoError
from artemis.video.backends import ImageFilesDecoder
from artemis.video.reader import Backend, ClosesOnExit, DecodedVideo, VideoReader, check_fps

__all__ = ["ArrayVideo", "ImageListVideo", "VideoInput", "VideoSource", "open_video", "opened"]


@runtime_checkable
class VideoSource(Protocol):
    """Frames of one video, as ``uint8`` RGB arrays, read by index.

    A source is not thread-safe and may hold a decoder or file handles: use it in a ``with`` block or call
    :meth:`close`; reading a closed source raises :class:`~artemis.errors.VideoError`.
    """

    @property
    def num_frames(self) -> int:
        """Frames in the video."""
        ...

    @property
    def fps(self) -> float:
        """Frames per second (0.0 when unknown)."""
        ...

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        ...

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        ...

    @property
    def path(self) -> str | os.PathLike[str]:
        """Where the frames come from, for messages (a path, or a name such as ``"<frames>"``)."""
        ...

    def get_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` in ``0..num_frames-1``: ``(H, W, 3)`` uint8 RGB."""
        ...

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The frames at ``indices``, in the order asked (duplicates allowed): ``(N, H, W, 3)`` uint8 RGB."""
        ...

    def iter_frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(index, (H, W, 3) uint8 RGB)`` for ``range(start, stop, step)``, ``stop`` clipped to the end."""
        ...

    def close(self) -> None:
        """Release what the source holds; safe to call twice."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None: ...


# What open_video accepts.
VideoInput: TypeAlias = (
    VideoSource | str | os.PathLike[str] | np.ndarray | Sequence[str | os.PathLike[str]] | Sequence[np.ndarray]
)


class ArrayVideo(ClosesOnExit):
    """Frames already decoded into memory, as a :class:`VideoSource`.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB array, or a sequence of ``(H, W, 3)`` arrays of one size.
        fps: frames per second to report (0.0 when unknown).
        path: the name messages give the video.

    Raises:
        VideoError: ``frames`` is not ``(T, H, W, 3)`` with ``T >= 1``, or its frames differ in size.
    """

    backend = "array"

    def __init__(self, frames: np.ndarray | Sequence[np.ndarray], fps: float = 0.0, *, path: str = "<frames>") -> None:
        self.path = path
        try:
            array = np.asarray(frames)
        except ValueError:  # numpy refuses ragged input
            sizes = sorted({tuple(np.shape(frame)) for frame in frames})
            raise VideoError(
                f"frames of different shapes {sizes[:4]}; expected (H, W, 3) RGB frames that all have one size"
            ) from None
        if array.ndim != 4 or array.shape[-1] != 3 or len(array) == 0:
            raise VideoError(
                f"frames of shape {array.shape}; expected (T, H, W, 3) RGB with T >= 1 "
                "(add a leading axis for one frame: frame[None])"
            )
        self._frames: np.ndarray | None = array  # (T, H, W, 3)
        self.num_frames, self.height, self.width = (int(v) for v in array.shape[:3])
        self.fps = float(fps)

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return f"ArrayVideo({self.path!r}, num_frames={self.num_frames}, size={self.width}x{self.height})"

    def _active(self) -> np.ndarray:
        if self._frames is None:
            raise VideoError(f"the ArrayVideo {self.path} is closed; build a new one from the frames")
        return self._frames

    def _check(self, index: int) -> int:
        if not 0 <= index < self.num_frames:
            raise VideoError(f"frame {index} is past the end of {self.path}; expected 0..{self.num_frames - 1}")
        return int(index)

    def get_frame(self, index: int) -> np.ndarray:
        """Frame ``index``: ``(H, W, 3)``."""
        return self._active()[self._check(index)]

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The frames at ``indices``: ``(N, H, W, 3)``."""
        return self._active()[[self._check(i) for i in indices]]

    def iter_frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, (H, W, 3))`` for ``range(start, stop, step)``, ``stop`` clipped to the end."""
        if start < 0 or (stop is not None and stop < 0) or step < 1:
            raise VideoError(
                f"iter_frames(start={start}, stop={stop}, step={step}) is invalid for {self.path}; "
                "expected start >= 0, stop >= 0 and step >= 1"
            )
        frames = self._active()
        for index in range(start, self.num_frames if stop is None else min(stop, self.num_frames), step):
            yield index, frames[index]

    def close(self) -> None:
        """Drop the reference to the frames; further reads raise :class:`VideoError`."""
        self._frames = None


class ImageListVideo(DecodedVideo):
    """Frames given as an explicit list of image files (frame ``i`` is ``paths[i]``), read lazily.

    An ElysiumTrack-1M record lists its frames this way. Only the first image is decoded at open (for the
    frame size, and kept for the first read of frame 0); every other image is decoded when its frame is
    read, one at a time, so a long sequence is never held in memory.

    Args:
        paths: ``.jpg``/``.png`` files (any format OpenCV decodes), in frame order; at least one.
        fps: frames per second to report; defaults to 30 like a frame folder.

    Attributes:
        path: the folder of the first image (how messages name the video).
        backend: ``"images"``.
        num_frames, fps, width, height: as :class:`VideoReader`; every image must have the first one's size.

    Raises:
        VideoError: an empty list, or an image that is missing, cannot be decoded or has another size than
            the first (raised when that frame is read); the message names the file.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], *, fps: float | None = None) -> None:
        if isinstance(paths, (str, os.PathLike)) or len(paths) == 0:
            raise VideoError(
                f"image list {paths!r} is empty or not a list; expected a list of image paths, one per frame"
            )
        files = [Path(p) for p in paths]
        self.path = files[0].parent
        self.backend = "images"
        check_fps(fps, self.path)
        self._decoder = None
        self._start(ImageFilesDecoder(files, f"an image list of {len(files)} files"), fps)

    def __repr__(self) -> str:
        return (
            f"ImageListVideo({self.num_frames} images in {str(self.path)!r}, size={self.width}x{self.height}, "
            f"fps={self.fps:.3f})"
        )


def open_video(source: VideoInput, *, backend: Backend = "auto", fps: float | None = None) -> VideoSource:
    """A :class:`VideoSource` for ``source``; the caller closes it (or use :func:`opened`).

    Args:
        source: a video file or frame folder (:class:`~artemis.video.VideoReader`), a list or tuple of image
            paths (:class:`~artemis.video.ImageListVideo`), a ``(T, H, W, 3)`` uint8 array or a list of
            ``(H, W, 3)`` frames (:class:`ArrayVideo`), or a :class:`VideoSource`, which is returned as it is.
        backend: the decoder of a video file (see :class:`~artemis.video.VideoReader`); a list of images
            takes ``"auto"`` or ``"frames"``, decoded frames only ``"auto"``.
        fps: frames per second, overriding the container's rate (and the 30 of frame folders and image
            lists, the 0.0 of decoded frames); ignored for a source passed in.

    Raises:
        VideoError: an input of another kind, an empty list, a list mixing paths and frames, a backend that
            does not apply to the input, or any error of the reader it opens.
    """
    if isinstance(source, VideoSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        return VideoReader(source, backend, fps=fps)
    if isinstance(source, np.ndarray):
        _only_auto(backend, "decoded frames")
        return ArrayVideo(source, fps=fps or 0.0)
    if isinstance(source, (list, tuple)):
        if len(source) == 0:
            raise VideoError(
                "the list of frames is empty; expected image paths (one per frame) or (H, W, 3) RGB frames"
            )
        if all(isinstance(item, (str, os.PathLike)) for item in source):
            if backend not in ("auto", "frames"):
                raise VideoError(f"backend={backend!r} reads video files; a list of images takes 'auto' or 'frames'")
            return ImageListVideo(source, fps=fps)
        if all(isinstance(item, np.ndarray) for item in source):
            _only_auto(backend, "decoded frames")
            return ArrayVideo(source, fps=fps or 0.0)
        kinds = sorted({type(item).__name__ for item in source})
        raise VideoError(
            f"a list of {', '.join(kinds)}; expected only image paths (str or Path) or only (H, W, 3) RGB arrays"
        )
    raise VideoError(
        f"cannot open a {type(source).__name__} as a video; expected a video file or frame folder path, a list "
        "of image paths, a (T, H, W, 3) uint8 array or a VideoSource (VideoReader, ImageListVideo, ArrayVideo)"
    )


def _only_auto(backend: str, what: str) -> None:
    if backend != "auto":
        raise VideoError(f"backend={backend!r} reads video files; {what} take backend='auto'")


@contextmanager
def opened(source: VideoInput, *, backend: Backend = "auto", fps: float | None = None) -> Iterator[VideoSource]:
    """:func:`open_video` in a ``with`` block: closes the source on exit only when it opened it.

    A :class:`VideoSource` passed in belongs to the caller and is left open; a path, image list or array
    gets a source that is closed when the block ends, also on an error.
    """
    video = open_video(source, backend=backend, fps=fps)
    try:
        yield video
    finally:
        if video is not source:
            video.close()
