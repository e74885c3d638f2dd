"""A video source that keeps the frames a later step will need while an earlier step reads the video.

``describe`` tracks the target first (a forward pass over the video that decodes every frame, keeping every
8th) and then shows the model about fifteen frames spread over the video. Read afterwards, each of those
costs a seek and a decode from its keyframe; read during the tracking pass, the decoder is there anyway
and only the conversion to RGB is extra. :class:`FrameKeeper` wraps the source the tracker reads: frames
whose index it was asked to keep are stored as they pass (the tracker's stream is widened to include
them when the source can stream arbitrary indices, :meth:`VideoReader.iter_indices`), and ``get_frames``
serves stored frames without decoding them again. Frames are stored only inside
:meth:`FrameKeeper.keeping` (the tracking pass) and all dropped at the first read after it (the model's), so
it holds at most the frames it was asked to keep, and none once they are served: memory stays independent
of the video's length.

No library does this: decoders cache by position (decord keeps one), not by a set of frames named in
advance.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from artemis.video.reader import ClosesOnExit
from artemis.video.source import VideoSource

__all__ = ["FrameKeeper"]


class FrameKeeper(ClosesOnExit):
    """``source`` (a :class:`VideoSource`) that stores the frames at ``keep`` as any read passes them.

    Thread use: one reader at a time (as for every source); the stored frames are read after the pass that
    stored them. Closing the keeper drops the stored frames, not the inner source (its owner closes it).
    """

    def __init__(self, source: VideoSource, keep: Iterable[int] = ()) -> None:
        self.source = source
        self._keep = {int(i) for i in keep if 0 <= int(i) < source.num_frames}
        self._stored: dict[int, np.ndarray] = {}
        self._keeping = False

    # --- what the source says about itself ---------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return self.source.num_frames

    @property
    def fps(self) -> float:
        return self.source.fps

    @property
    def width(self) -> int:
        return self.source.width

    @property
    def height(self) -> int:
        return self.source.height

    @property
    def path(self) -> str | os.PathLike[str]:
        return self.source.path

    @property
    def stored(self) -> list[int]:
        """Indices of the frames held now, ascending."""
        return sorted(self._stored)

    # --- frames ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def keeping(self) -> Iterator[FrameKeeper]:
        """Store the kept frames that reads pass inside this block (the pass that comes first)."""
        self._keeping = True
        try:
            yield self
        finally:
            self._keeping = False

    def _store(self, index: int, frame: np.ndarray) -> None:
        if self._keeping and index in self._keep:
            self._stored[index] = frame

    def get_frame(self, index: int) -> np.ndarray:
        return self.get_frames([index])[0]

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The frames at ``indices`` (``(N, H, W, 3)``): stored ones without decoding, the rest from the source
        (and stored when kept, inside :meth:`keeping`).

        The first read after the pass is the one the frames were kept for: it takes the stored frames it
        asks for and every stored frame is dropped (a frame read again is decoded again). Held on through
        the model's forward pass, even four stored frames (decoded on the tracker's thread) raised
        describe's peak RSS on a 3,000-frame video by about 300 MB, measured with benchmarks/memory.py.
        """
        wanted = [int(i) for i in np.asarray(indices).reshape(-1)]
        served = {i: self._stored[i] for i in set(wanted) if i in self._stored}
        if not self._keeping:
            self._stored.clear()
        missing = sorted({i for i in wanted if i not in served})
        read = dict(zip(missing, self.source.get_frames(missing), strict=True)) if missing else {}
        for index, frame in read.items():
            self._store(index, frame)
        if not wanted:
            return np.zeros((0, self.height, self.width, 3), dtype=np.uint8)
        return np.stack([served[i] if i in served else read[i] for i in wanted])  # (N, H, W, 3)

    def iter_frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """The inner source's ``iter_frames``; kept frames between ``start`` and ``stop`` off the step are
        decoded in the same pass when the source streams arbitrary indices, and stored, not yielded."""
        end = min(self.num_frames if stop is None else stop, self.num_frames)
        grid = range(start, end, step)
        extra = (
            [i for i in sorted(self._keep) if start <= i < end and (i - start) % step and i not in self._stored]
            if self._keeping
            else []
        )
        iter_indices = getattr(self.source, "iter_indices", None)
        if not extra or iter_indices is None:
            frames = self.source.iter_frames(start, stop, step)
        else:
            frames = iter_indices(sorted({*grid, *extra}))
        for index, frame in frames:
            self._store(index, frame)
            if (index - start) % step == 0:
                yield index, frame

    # --- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        self._stored.clear()
