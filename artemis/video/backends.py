"""The four decoders behind :class:`~artemis.video.VideoReader`, one per backend.

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
* ``frames`` — a folder of ``.jpg``/``.jpeg``/``.png`` images in natural name order (``2`` before ``10``);
  :class:`ImageFilesDecoder` reads such images from an explicit list (:class:`~artemis.video.ImageListVideo`).

Each decoder satisfies :class:`Decoder`; the backend packages are imported when a decoder is built, so
importing this module needs none of them.
"""

from __future__ import annotations

import bisect
import importlib
import itertools
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from artemis.errors import VideoError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# File backends in the order ``"auto"`` tries them.
FILE_BACKENDS = ("decord", "pyav", "opencv")
_OPENCV = ("cv2", "opencv-contrib-python-headless")
_PACKAGES = {"decord": ("decord", "decord"), "pyav": ("av", "av"), "opencv": _OPENCV, "frames": _OPENCV}  # module, pip

__all__ = [
    "DECODERS",
    "FILE_BACKENDS",
    "IMAGE_SUFFIXES",
    "Decoder",
    "DecordDecoder",
    "FrameFolderDecoder",
    "ImageFilesDecoder",
    "OpenCVDecoder",
    "PyAVDecoder",
    "available_backends",
    "import_backend",
]


def import_backend(name: str) -> Any | None:
    try:
        return importlib.import_module(_PACKAGES[name][0])
    except ImportError:
        return None


def available_backends() -> list[str]:
    """Names of the backends whose package imports here, in the order ``"auto"`` prefers them."""
    return [name for name in (*FILE_BACKENDS, "frames") if import_backend(name) is not None]


def _require(name: str) -> Any:
    module = import_backend(name)
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


class Decoder(Protocol):
    """What :class:`~artemis.video.VideoReader` needs from a backend."""

    num_frames: int
    width: int
    height: int
    fps: float | None

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, (H, W, 3) uint8 RGB)`` for increasing, valid ``indices``, one at a time."""
        ...

    def close(self) -> None: ...


class DecordDecoder:
    def __init__(self, path: Path) -> None:
        self._decord = _require("decord")
        self._errors = (self._decord.DECORDError, RuntimeError)
        self._path = path
        try:
            self._reader = self._decord.VideoReader(str(path), ctx=self._decord.cpu(0))
        except self._errors as error:
            raise VideoError(f"decord cannot open {path}: {_first_line(error)}") from None
        self.fps = float(self._reader.get_avg_fps()) or None
        self._next: int | None = None  # the frame decord's next() returns, when known
        self.num_frames = self._count(len(self._reader))
        self._keyframes = sorted(int(k) for k in self._reader.get_key_indices()) if self.num_frames else []
        self.height, self.width = self._decode(0).shape[:2] if self.num_frames else (0, 0)

    def _decode(self, index: int) -> np.ndarray:
        # decord's reader[index] seeks to the keyframe before index and decodes forward, even when the
        # current position is a few frames before index; skipping from there decodes no frame twice. Skip
        # while no keyframe lies between (a seek would decode from it, which is shorter).
        position = self._next
        if (
            position is not None
            and position <= index
            and bisect.bisect_right(self._keyframes, position) == (bisect.bisect_right(self._keyframes, index))
        ):
            if index > position:
                self._reader.skip_frames(index - position)
            frame = self._reader.next()
        else:
            frame = self._reader[index]
        self._next = index + 1
        return frame.asnumpy()

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
                self._next = None
                raise VideoError(
                    f"decord failed to decode frame {index} of {self._path}: {_first_line(error)}"
                ) from None
            yield index, frame

    def close(self) -> None:
        self._reader = None


class PyAVDecoder:
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


class OpenCVDecoder:
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


class ImageFilesDecoder:
    """Frame ``i`` is the image file ``files[i]``, decoded when it is read (one image held at a time).

    Args:
        files: the images, in frame order (at least one).
        where: how errors name the whole, e.g. the frame folder or ``"an image list of 40 files"``.
    """

    def __init__(self, files: Sequence[Path], where: str) -> None:
        self._cv2 = _require("frames")
        self._files = list(files)
        self._where = where
        self.num_frames = len(self._files)
        self.fps = None
        self.height, self.width = 0, 0
        first = self._load(0)
        self.height, self.width = first.shape[:2]
        self._held: tuple[int, np.ndarray] | None = (0, first)  # decoded at open, served to the first read of 0

    def _first_name(self) -> str:
        return str(self._files[0])

    def _load(self, index: int) -> np.ndarray:
        path = self._files[index]
        try:
            data = np.fromfile(path, dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
        except FileNotFoundError:
            raise VideoError(
                f"image {path} (frame {index} of {self._where}) does not exist; check the path, or remove the frame"
            ) from None
        except OSError as error:
            raise VideoError(f"cannot read image {path} (frame {index} of {self._where}): {error}") from None
        image = self._cv2.imdecode(data, self._cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise VideoError(f"cannot decode image {path} (frame {index} of {self._where}); replace or remove it")
        height, width = image.shape[:2]
        if self.width and (width, height) != (self.width, self.height):
            raise VideoError(
                f"image {path} is {width}x{height} but {self._first_name()} is {self.width}x{self.height}; "
                f"every frame in {self._where} must have the same size"
            )
        return self._cv2.cvtColor(image, self._cv2.COLOR_BGR2RGB)

    def read(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        for index in indices:
            held, self._held = self._held, None
            yield index, held[1] if held is not None and held[0] == index else self._load(index)

    def close(self) -> None:
        self._held = None


class FrameFolderDecoder(ImageFilesDecoder):
    """The ``.jpg``/``.jpeg``/``.png`` images of a folder, in natural name order, as frames."""

    def __init__(self, folder: Path) -> None:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]  # skip .DS_Store, ._x.jpg
        if not entries:
            raise VideoError(f"frame folder {folder} is empty; expected .jpg/.jpeg/.png frames such as 00001.jpg")
        files = sorted(
            (p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: _natural_key(p.name),
        )
        if not files:
            shown = ", ".join(sorted(p.name for p in entries)[:5])
            raise VideoError(f"frame folder {folder} has no .jpg/.jpeg/.png images (found {shown}); expected frames")
        super().__init__(files, str(folder))

    def _first_name(self) -> str:
        return self._files[0].name  # the folder is named already


DECODERS = {"decord": DecordDecoder, "pyav": PyAVDecoder, "opencv": OpenCVDecoder, "frames": FrameFolderDecoder}
