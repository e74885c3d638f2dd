"""Frames for the two tracking passes, decoded once and never all held: :class:`FrameFeed`.

The forward pass (key frame to the end) streams. The backward pass (key frame to frame 0) needs frames in
reverse, which decoders cannot produce, so it is fed in chunks: the last chunk before the key frame is
decoded in increasing order, handed out in reverse, dropped, then the chunk before it, and so on. A chunk
holds at most ``chunk_bytes`` of frames at working resolution, so memory does not grow with the video's
length nor with where the key frame is.

With ``threaded=True`` one thread decodes (and resizes) for both passes, alternating a backward chunk with
as many forward frames, into two bounded queues; the passes consume them, so decoding overlaps tracking.
A source is not thread-safe, which is why a single thread reads it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from artemis.errors import VideoError
from artemis.video import VideoSource

__all__ = ["FrameFeed", "chunk_backward"]

# Frames of one backward chunk at working resolution: bounds what the backward pass holds.
DEFAULT_CHUNK_BYTES = 48 * 2**20
_MIN_CHUNK = 8  # frames; fewer makes every chunk pay a decoder seek for little work
_POLL = 0.1  # seconds between checks for a stopped feed while a queue is full or empty
_END = object()


def chunk_backward(backward: list[int], chunk: int) -> list[list[int]]:
    """Split the descending ``backward`` indices into runs of at most ``chunk``, each in ascending order."""
    return [sorted(backward[start : start + chunk]) for start in range(0, len(backward), chunk)]


class FrameFeed:
    """The frames of a forward and a backward tracking pass over one source.

    Args:
        reader: the open source (read by one thread only).
        forward: ascending frame indices of the forward pass, starting at the key frame.
        backward: descending indices of the backward pass, starting at the key frame.
        anchor / stride: the tracking grid ``anchor + j * stride`` (frames off it, the ends, are read alone).
        prepare: turns a decoded frame into the tracker's input (the working-resolution resize).
        frame_bytes: bytes of one prepared frame, to size the backward chunks.
        threaded: decode on a thread of its own, ahead of the passes.
        chunk_bytes: most bytes of prepared frames in one backward chunk.
    """

    def __init__(
        self,
        reader: VideoSource,
        forward: list[int],
        backward: list[int],
        *,
        anchor: int,
        stride: int,
        prepare: Callable[[np.ndarray], np.ndarray],
        frame_bytes: int,
        threaded: bool,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self._reader = reader
        self._forward, self._backward = forward, backward
        self._anchor, self._stride = anchor, stride
        self._prepare = prepare
        self._chunk = max(_MIN_CHUNK, chunk_bytes // max(frame_bytes, 1))
        self._threaded = threaded
        self._queues = {"forward": queue.Queue(self._chunk), "backward": queue.Queue(self._chunk)}
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._produce, name="artemis-track-decode", daemon=True)
            self._thread.start()

    # --- what the passes call ----------------------------------------------------------------------

    def frames(self, direction: str) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, prepared frame)`` in the pass's order: ``"forward"`` or ``"backward"``."""
        if not self._threaded:
            return self._forward_frames() if direction == "forward" else self._backward_frames()
        return self._drain(self._queues[direction])

    def stop(self) -> None:
        """Tell the decoding thread to stop (a pass failed); :meth:`close` waits for it."""
        self._stop.set()

    def close(self) -> None:
        """Stop the decoding thread (if any) and wait for it; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # --- decoding ----------------------------------------------------------------------------------

    def _read(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Prepared frames at the ascending ``indices``, checked to be the frames asked for."""
        for position, (index, frame) in enumerate(_frames_at(self._reader, indices, self._anchor, self._stride)):
            if index != indices[position]:  # a reader that skips frames would silently misalign boxes
                raise VideoError(
                    f"{self._reader.path} returned frame {index} where frame {indices[position]} was expected"
                )
            yield index, self._prepare(frame)

    def _forward_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        return self._read(self._forward) if len(self._forward) > 1 else iter(())

    def _backward_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        if len(self._backward) < 2:
            return
        for chunk in chunk_backward(self._backward, self._chunk):
            held = list(self._read(chunk))  # (chunk, h, w, 3) at working resolution, dropped after the loop
            while held:
                yield held.pop()

    def _produce(self) -> None:
        forward, backward = self._forward_frames(), self._backward_frames()
        try:
            ends = {"forward": False, "backward": False}
            while not all(ends.values()):
                for direction, frames in (("backward", backward), ("forward", forward)):
                    if ends[direction]:
                        continue
                    # A whole backward chunk, then as many forward frames, so both passes stay busy.
                    for _ in range(self._chunk):
                        item = next(frames, _END)
                        if item is _END:
                            ends[direction] = True
                            self._put(self._queues[direction], _END)
                            break
                        self._put(self._queues[direction], item)
        except _Stopped:
            pass
        except BaseException as error:  # handed to the passes, which raise it in their own thread
            self._error = error
            self._stop.set()

    def _put(self, target: queue.Queue, item: object) -> None:
        while not self._stop.is_set():
            try:
                target.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _drain(self, source: queue.Queue) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            try:
                item = source.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    if self._error is not None:
                        raise self._error from None
                    return
                continue
            if item is _END:
                return
            yield item  # type: ignore[misc]


class _Stopped(Exception):
    """The feed was closed while the decoding thread waited on a full queue."""


def _frames_at(reader: VideoSource, indices: list[int], anchor: int, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for ascending ``indices``: the grid ``anchor + j * stride`` is streamed with
    ``iter_frames``; an end frame off that grid (0 or T-1) is read on its own."""
    regular = [i for i in indices if (i - anchor) % stride == 0]
    extra = [i for i in indices if (i - anchor) % stride != 0]
    for i in extra:
        if not regular or i < regular[0]:
            yield i, reader.get_frame(i)
    if regular:
        yield from reader.iter_frames(regular[0], regular[-1] + 1, stride)
    for i in extra:
        if regular and i > regular[-1]:
            yield i, reader.get_frame(i)
