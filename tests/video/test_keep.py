"""FrameKeeper: the frames a later step needs, kept while an earlier pass decodes the video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from artemis.errors import VideoError
from artemis.video import ArrayVideo, VideoReader
from artemis.video.keep import FrameKeeper


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 40-frame mp4 whose frames differ (a bar moving across a gradient)."""
    path = tmp_path_factory.mktemp("keep") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for t in range(40):
        frame = np.tile(np.linspace(0, 200, 64, dtype=np.uint8)[None, :, None], (48, 1, 3))
        frame[:, t : t + 8] = (255, 40, 40)
        writer.write(frame)
    writer.release()
    return path


class Counting:
    """A source that counts the frames it decodes, by index; ``iter_indices`` only when ``streams``."""

    def __init__(self, source, streams: bool) -> None:
        self.source = source
        self.reads: list[int] = []
        if streams:
            self.iter_indices = self._iter_indices

    num_frames = property(lambda self: self.source.num_frames)
    width = property(lambda self: self.source.width)
    height = property(lambda self: self.source.height)

    def get_frames(self, indices):
        self.reads += [int(i) for i in indices]
        return self.source.get_frames(indices)

    def iter_frames(self, start=0, stop=None, step=1):
        for index, frame in self.source.iter_frames(start, stop, step):
            self.reads.append(index)
            yield index, frame

    def _iter_indices(self, indices):
        for index, frame in self.source.iter_indices(indices):
            self.reads.append(index)
            yield index, frame


def test_iter_indices_streams_the_frames_get_frames_returns(clip):
    with VideoReader(clip) as reader:
        wanted = [0, 3, 4, 17, 39]
        streamed = list(reader.iter_indices(wanted))
        assert [i for i, _ in streamed] == wanted
        assert np.array_equal(np.stack([f for _, f in streamed]), reader.get_frames(wanted))
        for bad in ([5, 3], [4, 4], [0, 40]):
            with pytest.raises(VideoError):
                list(reader.iter_indices(bad))


def test_a_pass_over_the_video_keeps_the_frames_asked_for_and_they_are_not_decoded_again(clip):
    with VideoReader(clip) as reader, VideoReader(clip) as fresh:
        counting = Counting(reader, streams=True)
        keeper = FrameKeeper(counting, keep=[3, 5, 16, 37, 99])  # 99 is past the end: ignored
        with keeper.keeping():
            passed = list(keeper.iter_frames(0, 40, 8))
        assert [i for i, _ in passed] == [0, 8, 16, 24, 32]  # the caller still gets its grid only
        assert np.array_equal(np.stack([f for _, f in passed]), fresh.get_frames([0, 8, 16, 24, 32]))
        assert keeper.stored == [3, 5, 16, 37]
        assert sorted(counting.reads) == [0, 3, 5, 8, 16, 24, 32, 37]  # each frame decoded once
        counting.reads.clear()
        frames = keeper.get_frames([37, 3, 5, 3, 10])  # 10 was not kept: read now
        assert counting.reads == [10]
        assert np.array_equal(frames, fresh.get_frames([37, 3, 5, 3, 10]))
        assert keeper.stored == []  # the first read after the pass drops every stored frame (16 too)
        assert np.array_equal(keeper.get_frame(3), fresh.get_frame(3)) and counting.reads == [10, 3]
        keeper = FrameKeeper(counting, keep=[5, 8])
        list(keeper.iter_frames(0, 40, 8))  # outside keeping(): nothing stored, nothing extra decoded
        assert keeper.stored == [] and 5 not in counting.reads[-5:]
        with keeper.keeping():
            list(keeper.iter_frames(0, 40, 8))
        assert keeper.stored == [5, 8]
    keeper.close()
    assert keeper.stored == []


def test_a_source_that_cannot_stream_indices_keeps_what_passes_and_reads_the_rest_later(clip):
    with VideoReader(clip) as reader:
        frames = reader.get_frames(range(40))
    counting = Counting(ArrayVideo(frames), streams=False)
    keeper = FrameKeeper(counting, keep=[3, 8])
    with keeper.keeping():
        assert [i for i, _ in keeper.iter_frames(0, 20, 4)] == [0, 4, 8, 12, 16]
    assert keeper.stored == [8]  # 3 is off the grid and this source reads ranges only
    counting.reads.clear()
    assert np.array_equal(keeper.get_frames([3, 8]), frames[[3, 8]])
    assert counting.reads == [3]
    assert keeper.stored == []  # 8 was served and dropped; 3 was read after the pass, so not stored
