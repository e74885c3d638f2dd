"""The track videos the demo, ``artemis track --viz`` and ``artemis demo`` write: H.264 MP4s browsers play."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from artemis.errors import VideoError
from artemis.video.draw import h264_available, write_video

av = pytest.importorskip("av")


@pytest.mark.skipif(not h264_available(), reason="PyAV without libx264")
def test_write_video_mp4_is_h264(tmp_path: Path):
    frames = [np.full((121, 161, 3), 40 * i, np.uint8) for i in range(5)]  # odd sizes: cropped to even
    path = write_video(tmp_path / "track.mp4", frames, fps=12)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
        assert sum(1 for _ in container.decode(stream)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["track.mp4"]  # no temporary file left


@pytest.mark.skipif(not h264_available(), reason="PyAV without libx264")
def test_write_video_h264_errors_leave_nothing(tmp_path: Path):
    with pytest.raises(VideoError, match="no frames"):
        write_video(tmp_path / "out.mp4", [], 10)
    with pytest.raises(VideoError, match="earlier frames"):
        write_video(tmp_path / "out.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((16, 8, 3), np.uint8)], 10)
    assert list(tmp_path.iterdir()) == []
