"""Read frames of a video file or a folder of frames, exactly and without holding the whole video.

:class:`VideoReader` is the one entry point; it hands the decoding to one of four decoders:

* ``decord`` — fast random access; its frame count comes from the container index, so the last frame
  is decoded once at open to prove it. A file whose last frame fails is damaged, and decord then fails at
  random near the damage, so it refuses the file (``"auto"`` moves on to pyav, which copes).
* ``pyav`` — the packets are demuxed once at open (cheap: no decoding) to learn every frame's
  presentation timestamp and the keyframes; the first and last frame are then decoded to prove the
  count (else the frames are counted by decoding them, skipping damaged packets). A frame is found by
  seeking to the keyframe at or before it and decoding forward until its timestamp comes out, so a seek
  never returns a neighbouring frame.
* ``opencv`` — counts frames by grabbing them all at open and reads by grabbing forward from the start;
  slow on long videos but exact whatever the codec (OpenCV's own seek is not).
* ``frames`` — a folder of ``.jpg``/``.jpeg``/``.png`` images in natural name order (``2`` before ``10``).

Header frame counts are never trusted: an AVI may claim 444 frames and hold 68.
"""

from __future__ import annotations

import bisect
import importlib
import itertools
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import numpy as np

from artemis.errors import VideoError

logger = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav", "opencv", "frames"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Frame rate of a frame folder, and of a video whose container has none, unless the caller gives one.
DEFAULT_FPS = 30.0

_FILE_BACKENDS = ("decord", "pyav", "opencv")
_OPENCV = ("cv2", "opencv-contrib-python-headless")
_PACKAGES = {"decord": ("decord", "decord"), "pyav": ("av", "av"), "opencv": _OPENCV, "frames": _OPENCV}  # module, pip

__all__ = ["DEFAULT_FPS", "IMAGE_SUFFIXES", "Backend", "VideoReader", "available_backends"]


def _import_backend(name: str) -> Any | None:
    try:
        return importlib.import_module(_PACKAGES[name][0])
    except ImportError:
        return None


def available_backends() -> list[str]:
    """Names of the backends whose package imports here, in the order ``"auto"`` prefers them."""
    return [name for name in (*_FILE_BACKENDS, "frames") if _import_backend(name) is not None]


def _require(name: str) -> Any:
    module = _import_backend(name)
    if module is None:
        raise VideoError(
            f"video backend {name!r} is not installed; install it with `pip install {_PACKAGES[name][1]}` "
            f"or pick one of {available_backends()}"
        )
    return module


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    # decord prefixes its messages with "[hh:mm:ss] /build/path/file.cc:123: "; the user needs the rest.
    return re.sub(r"^(\[[\d:]+\] \S+:\d+: )+", "", lines[0]) if lines else type(error).__name__


def _natural_key(name: str) -> list[int | str]:
    # re.split with a group alternates text and digit runs, so items at equal positions share a type.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class _Decoder(Protocol):
    """What :class:`VideoReader` needs from a backend."""

    num_frames: int
    width: int
    height: int
    fps: float | None

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, (H, W, 3) uint8 RGB)`` for increasing, valid ``indices``, one at a time."""
        ...

    def close(self) -> None: ...


class _DecordDecoder:
    def __init__(self, path: Path) -> None:
        self._decord = _require("decord")
        self._errors = (self._decord.DECORDError, RuntimeError)
        self._path = path
        try:
            self._reader = self._decord.VideoReader(str(path), ctx=self._decord.cpu(0))
        except self._errors as error:
            raise VideoError(f"decord cannot open {path}: {_first_line(error)}") from None
        self.fps = float(self._reader.get_avg_fps()) or None
        self.num_frames = self._count(len(self._reader))
        self.height, self.width = self._decode(0).shape[:2] if self.num_frames else (0, 0)

    def _decode(self, index: int) -> np.ndarray:
        return self._reader[index].asnumpy()

    def _count(self, claimed: int) -> int:
        """Frames that decode: the container index's count, once its last frame is proven to decode."""
        if claimed == 0:
            return 0
        try:
            self._decode(claimed - 1)
        except self._errors as error:
            # A damaged file. Counting with decord is no cure: its decoding thread runs ahead, so reads near
            # the damage fail at random (even frame 0 of a truncated 7-frame AVI, 6 times in 100).
            raise VideoError(
                f"decord cannot read {self._path} reliably: the last of its {claimed} frames does not decode "
                f"({_first_line(error)}); the file is damaged, use backend='pyav', which counts the frames that decode"
            ) from None
        return claimed

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            try:
                frame = self._decode(index)
            except self._errors as error:
                raise VideoError(
                    f"decord failed to decode frame {index} of {self._path}: {_first_line(error)}"
                ) from None
            yield index, frame

    def close(self) -> None:
        self._reader = None


class _PyAVDecoder:
    def __init__(self, path: Path) -> None:
        self._av = _require("pyav")
        self._path = path
        self._container: Any = None
        self._decoder: Iterator[tuple[int, Any]] | None = None
        self._last: int | None = None  # stamp of the frame the decoder produced last
        self._open()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        # Presentation timestamps of the frames in display order; None when the stream has no timestamps,
        # in which case frames are numbered as they come out of the decoder and reached by decoding forward.
        self._pts: list[int] | None = None
        self._keyframes: list[int] = []
        if not self._index_from_packets():
            self._index_by_decoding()
        self.num_frames = len(self._pts) if self._pts is not None else self._sequential_count
        first = self._frame(0) if self.num_frames else None
        self.width, self.height = (first.width, first.height) if first is not None else (0, 0)

    def _open(self) -> None:
        if self._container is not None:
            self._container.close()
        try:
            self._container = self._av.open(str(self._path))
        except (self._av.FFmpegError, OSError) as error:
            raise VideoError(f"pyav cannot open {self._path}: {_first_line(error)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self._path} has no video stream; expected a video file")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame threading: same frames, faster
        self._decoder, self._last = None, None

    def _index_from_packets(self) -> bool:
        """Learn the frames from the demuxed packets; return whether decoding confirmed them."""
        pts: list[int] = []
        keyframes: list[int] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.is_discard:  # end-of-stream flush or edit-list cut: no frame
                    continue
                if packet.pts is None:
                    return False
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
        except self._av.FFmpegError as error:
            logger.warning("demuxing %s stopped early (%s); counting frames by decoding", self._path, error)
            return False
        if not pts or len(set(pts)) != len(pts):
            return False
        self._pts, self._keyframes = sorted(pts), sorted(keyframes)
        try:
            # The first and last frames decode iff no packet at either end is undecodable or truncated.
            self._frame(0)
            self._frame(len(self._pts) - 1)
        except VideoError as error:
            logger.warning("%s: packets do not all decode (%s); counting frames by decoding", self._path, error)
            return False
        return True

    def _index_by_decoding(self) -> None:
        self._open()
        # Without frame threads an error surfaces at its own packet, not before earlier frames come out.
        self._stream.thread_type = "NONE"
        pts: list[int | None] = []
        keyframes: list[int] = []
        damaged = 0
        for packet in self._container.demux(self._stream):  # ends with an empty packet that flushes the decoder
            try:
                frames = packet.decode()
            except self._av.FFmpegError:
                damaged += 1  # skip the packet: its frame is not decodable, later ones may be
                continue
            for frame in frames:
                pts.append(frame.pts)
                if frame.key_frame and frame.pts is not None:
                    keyframes.append(frame.pts)
        if damaged:
            logger.warning("%s: %d packets do not decode; %d frames do", self._path, damaged, len(pts))
        if pts and None not in pts and len(set(pts)) == len(pts):
            self._pts, self._keyframes = sorted(pts), sorted(keyframes)  # type: ignore[arg-type]
        else:
            self._pts, self._keyframes = None, []
        self._sequential_count = len(pts)
        self._open()

    def _stamped(self) -> Iterator[tuple[int, Any]]:
        frames = self._container.decode(self._stream)
        if self._pts is None:
            yield from enumerate(frames)
        else:
            yield from ((frame.pts, frame) for frame in frames)

    def _keyframe_before(self, target: int) -> int | None:
        position = bisect.bisect_right(self._keyframes, target)
        return self._keyframes[position - 1] if position else None

    def _reposition(self, target: int) -> None:
        """Point the decoder at a frame at or before ``target``: its keyframe, an earlier one, or the start."""
        keyframe = self._keyframe_before(target) if self._pts is not None else None
        if keyframe is not None:
            start = bisect.bisect_left(self._keyframes, keyframe)
            for candidate in reversed(self._keyframes[max(0, start - 1) : start + 1]):
                self._container.seek(candidate, stream=self._stream, backward=True, any_frame=False)
                decoder = self._stamped()
                first = next(decoder, None)
                # A container's seek index may land past the keyframe asked for; then try the one before.
                if first is not None and first[0] is not None and first[0] <= target:
                    self._decoder = itertools.chain([first], decoder)
                    return
        self._open()
        self._decoder = self._stamped()

    def _frame(self, index: int) -> Any:
        target = self._pts[index] if self._pts is not None else index
        last = self._last
        keyframe = self._keyframe_before(target) if self._pts is not None else None
        # Decoding on from the current position is cheaper than a seek once past the target's keyframe.
        resume = self._decoder is not None and last is not None and last < target
        if resume and self._pts is not None:
            resume = keyframe is not None and keyframe <= last
        try:
            if not resume:
                self._reposition(target)
            for stamp, frame in self._decoder:  # type: ignore[union-attr]
                self._last = stamp
                if stamp == target:
                    return frame
                if stamp is not None and stamp > target:
                    break
        except self._av.FFmpegError as error:
            self._decoder = None
            raise VideoError(f"pyav failed to decode frame {index} of {self._path}: {_first_line(error)}") from None
        self._decoder = None
        raise VideoError(
            f"frame {index} of {self._path} did not decode (the file may be damaged); "
            "try backend='opencv' or re-encode it (ffmpeg -i in out.mp4)"
        )

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            yield index, self._frame(index).to_ndarray(format="rgb24")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container, self._decoder = None, None


class _OpenCVDecoder:
    def __init__(self, path: Path) -> None:
        self._cv2 = _require("opencv")
        self._path = path
        self._capture: Any = None
        self._open()
        self.fps = float(self._capture.get(self._cv2.CAP_PROP_FPS)) or None
        self.num_frames, self.width, self.height = 0, 0, 0
        # CAP_PROP_FRAME_COUNT is the header's claim, so count what grab() can actually decode.
        while self._capture.grab():
            if self.num_frames == 0:
                ok, first = self._capture.retrieve()
                if ok:
                    self.height, self.width = first.shape[:2]
            self.num_frames += 1
        self._open()

    def _open(self) -> None:
        cv2 = self._cv2
        if self._capture is not None:
            self._capture.release()
        self._capture = cv2.VideoCapture(str(self._path), cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise VideoError(f"opencv cannot open {self._path}; check that it is a complete video file")
        # The other backends return stored pixels; keep OpenCV from rotating by the container's metadata.
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        self._position = 0  # index of the frame the next grab() returns

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            if index < self._position:
                self._open()
            while self._position <= index:
                if not self._capture.grab():
                    raise VideoError(f"opencv failed to decode frame {self._position} of {self._path}")
                self._position += 1
            ok, frame = self._capture.retrieve()
            if not ok:
                raise VideoError(f"opencv failed to decode frame {index} of {self._path}")
            yield index, self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class _FrameFolderDecoder:
    def __init__(self, folder: Path) -> None:
        self._cv2 = _require("frames")
        self._folder = folder
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]  # skip .DS_Store, ._x.jpg
        if not entries:
            raise VideoError(f"frame folder {folder} is empty; expected .jpg/.jpeg/.png frames such as 00001.jpg")
        self._files = sorted(
            (p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: _natural_key(p.name),
        )
        if not self._files:
            shown = ", ".join(sorted(p.name for p in entries)[:5])
            raise VideoError(f"frame folder {folder} has no .jpg/.jpeg/.png images (found {shown}); expected frames")
        self.num_frames = len(self._files)
        self.fps = None
        self.height, self.width = 0, 0
        self.height, self.width = self._load(0).shape[:2]

    def _load(self, index: int) -> np.ndarray:
        path = self._files[index]
        data = np.fromfile(path, dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
        image = self._cv2.imdecode(data, self._cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise VideoError(f"cannot decode image {path} (frame {index} of {self._folder}); replace or remove it")
        height, width = image.shape[:2]
        if self.width and (width, height) != (self.width, self.height):
            raise VideoError(
                f"image {path} is {width}x{height} but {self._files[0].name} is {self.width}x{self.height}; "
                f"every frame in {self._folder} must have the same size"
            )
        return self._cv2.cvtColor(image, self._cv2.COLOR_BGR2RGB)

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            yield index, self._load(index)

    def close(self) -> None:
        pass


_DECODERS = {"decord": _DecordDecoder, "pyav": _PyAVDecoder, "opencv": _OpenCVDecoder, "frames": _FrameFolderDecoder}


class VideoReader:
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
        if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise VideoError(f"fps {fps!r} for {self.path} is invalid; expected a positive number such as 25.0")
        if not self.path.exists():
            raise VideoError(f"video {self.path} does not exist; expected a video file or a folder of frames")
        self._decoder: _Decoder | None = None
        self.backend, self._decoder = self._open(backend)
        decoder = self._decoder
        self.num_frames: int = decoder.num_frames
        self.width: int = decoder.width
        self.height: int = decoder.height
        if fps is None and decoder.fps is None:
            fps = DEFAULT_FPS
            if self.backend != "frames":
                logger.warning("%s reports no frame rate; assuming %.1f fps (pass fps= to set it)", self.path, fps)
        self.fps: float = float(fps if fps is not None else decoder.fps)  # type: ignore[arg-type]
        logger.debug(
            "opened %s with %s: %d frames, %dx%d, %.3f fps", self.path, self.backend, self.num_frames, self.width,
            self.height, self.fps,
        )  # fmt: skip

    def _open(self, backend: str) -> tuple[str, _Decoder]:
        if backend not in ("auto", *_DECODERS):
            raise VideoError(f"unknown video backend {backend!r}; expected 'auto' or one of {list(_DECODERS)}")
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
        candidates = [name for name in _FILE_BACKENDS if _import_backend(name) is not None]
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

    def _open_one(self, name: str) -> _Decoder:
        decoder: _Decoder = _DECODERS[name](self.path)
        if decoder.num_frames == 0:
            decoder.close()
            raise VideoError(f"{self.path} has no decodable frames ({name}); check that it plays, or re-encode it")
        return decoder

    # --- geometry and time ---------------------------------------------------------------------------

    @property
    def duration(self) -> float:
        """Length in seconds, ``num_frames / fps``."""
        return self.num_frames / self.fps

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (
            f"VideoReader({str(self.path)!r}, backend={self.backend!r}, num_frames={self.num_frames}, "
            f"size={self.width}x{self.height}, fps={self.fps:.3f})"
        )

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

    def _active(self) -> _Decoder:
        if self._decoder is None:
            raise VideoError(f"the reader of {self.path} is closed; open a new VideoReader")
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
        indices = range(start, min(self.num_frames if stop is None else stop, self.num_frames), step)
        decoder = self._active()

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            for index, frame in decoder.read(indices):
                yield index, self._checked(index, frame)

        return frames()

    # --- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the decoder; further reads raise :class:`VideoError`. Safe to call twice."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
