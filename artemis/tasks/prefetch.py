"""Read the frames a referring request will show the model while its targets are being tracked.

A describe call decodes the video twice: the tracker streams it, then the model reads its own frames (the
video frames, the key frame and the tracked frames). The video frames do not depend on the track, and the
tracked frames are spread over the frames where the target is visible, which is every frame unless the
tracker loses it; so both can be decoded on a thread of their own, from a second reader on the same file,
while the tracker runs. :class:`PrefetchedSource` then serves them and reads any frame the final plan needs
that the guess missed. The frames are the same frames either way, so the answer is too; only the time
moves (on bikes.mp4 the model's frames take about 0.13 s to read, next to 0.5 s of tracking).

Written by hand: the readers (decord, PyAV, OpenCV) decode; nothing else knows which frames a referring
plan will ask for.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from artemis.model.processing import ArtemisProcessor, shared_key_frame
from artemis.video import VideoSource, opened

logger = logging.getLogger(__name__)

__all__ = ["FramePrefetch", "PrefetchedSource", "planned_frames"]


def planned_frames(processor: ArtemisProcessor, source: VideoSource, key_frames: Sequence[int]) -> np.ndarray:
    """The frames a request with regions given on ``key_frames`` reads when every target stays visible.

    Returns:
        (U,) sorted frame indices: the video frames and the region frames of that plan.
    """
    num_frames = int(source.num_frames)
    everywhere = (np.zeros((num_frames, 4)), np.ones(num_frames, dtype=bool))  # boxes do not choose frames
    regions = [everywhere] * len(key_frames)
    key = int(key_frames[0]) if len(set(key_frames)) == 1 else shared_key_frame(regions, key_frames)
    plan = processor.plan(num_frames, int(source.width), int(source.height), key, regions)
    return np.union1d(plan.video_frames, plan.region_frames).astype(np.int64)


class FramePrefetch:
    """Decode ``indices`` of the video at ``path`` on a thread of its own (see the module docstring).

    A failure on the thread is only logged: the frames are then read on the calling thread, where a
    broken video raises its usual error.
    """

    def __init__(self, path: str | os.PathLike[str], indices: Sequence[int], backend: str = "auto") -> None:
        self._indices = [int(index) for index in indices]
        self._frames: dict[int, np.ndarray] = {}
        self._thread = threading.Thread(
            target=self._read, args=(path, backend), name="artemis-frame-prefetch", daemon=True
        )
        self._thread.start()

    def _read(self, path: str | os.PathLike[str], backend: str) -> None:
        try:
            with opened(Path(path), backend=backend) as reader:
                frames = reader.get_frames(self._indices)  # (U, H, W, 3)
        except Exception as error:  # the calling thread reads the frames again, and raises there
            logger.debug("prefetching frames of %s failed (%s); they are read when needed", path, error)
            return
        self._frames = {index: frame for index, frame in zip(self._indices, frames, strict=True)}

    def source(self, source: VideoSource) -> PrefetchedSource:
        """``source`` serving the prefetched frames (waits for the thread)."""
        self._thread.join()
        return PrefetchedSource(source, self._frames)


class PrefetchedSource:
    """A :class:`~artemis.video.VideoSource` that answers from ``frames`` (index -> (H, W, 3)) what it can,
    and reads the rest from ``source``; closing it leaves ``source`` to its owner.

    Attributes:
        read_through: the frames it had to read from ``source`` (the prefetch's misses), in order.
    """

    def __init__(self, source: VideoSource, frames: dict[int, np.ndarray]) -> None:
        self._source = source
        self._frames = dict(frames)
        self.read_through: list[int] = []

    def __getattr__(self, name: str) -> Any:  # num_frames, fps, width, height, path, iter_frames
        return getattr(self._source, name)

    def get_frame(self, index: int) -> np.ndarray:
        return self.get_frames([index])[0]

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        wanted = [int(index) for index in indices]
        missing = sorted({index for index in wanted if index not in self._frames})
        if missing:
            self._frames.update(zip(missing, self._source.get_frames(missing), strict=True))
            self.read_through += missing
        if not wanted:
            return self._source.get_frames([])
        return np.stack([self._frames[index] for index in wanted])  # (N, H, W, 3)

    def iter_frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        return self._source.iter_frames(start, stop, step)

    def close(self) -> None:
        self._frames = {}

    def __enter__(self) -> PrefetchedSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
