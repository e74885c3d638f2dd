"""Drawing tracks and captions, and writing mp4/GIF files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from track_synth import square_boxes, square_frames

from artemis.errors import VideoError
from artemis.track import ArrayVideo, Track
from artemis.video.draw import PALETTE, draw_caption, draw_track, write_video


def _track(num_frames: int = 8) -> Track:
    boxes = square_boxes(num_frames)
    boxes[2] = np.nan  # one frame without a box
    return Track(boxes=boxes, visible=np.isfinite(boxes[:, 0]), key_frame=0, num_frames=num_frames, fps=10)


def test_draw_track_draws_visible_boxes_only():
    track = _track()
    frames = np.zeros((8, 120, 160, 3), dtype=np.uint8)
    drawn = list(draw_track(frames, track, labels="car"))
    assert len(drawn) == 8 and not frames.any()  # the input frames are left alone
    x1, _, x2, y2 = track.boxes[1].astype(int)
    assert tuple(drawn[1][y2 - 1, (x1 + x2) // 2]) == PALETTE[0]  # bottom edge of the box
    assert not drawn[2].any()  # invisible frame: nothing drawn


def test_draw_track_from_reader_checks_frame_count():
    reader = ArrayVideo(np.zeros((5, 120, 160, 3), dtype=np.uint8))
    with pytest.raises(VideoError, match="5 frames but the track has 8"):
        list(draw_track(reader, _track()))
    two = list(draw_track(ArrayVideo(np.zeros((8, 120, 160, 3), np.uint8)), [_track(), _track()], ["a", "b"]))
    assert len(two) == 8


def test_draw_caption_wraps_long_text():
    frame = np.full((144, 176, 3), 128, dtype=np.uint8)
    text = "the person in the red jacket walks from the left edge to the car and opens the door " * 2
    draw_caption(frame, text)
    darkened_rows = np.nonzero((frame < 128).all(axis=(1, 2)) | (frame != 128).any(axis=(1, 2)))[0]
    assert darkened_rows.min() < 144 - 40  # several lines, not one clipped line
    assert (frame[:20] == 128).all()  # top untouched for a bottom caption
    one = np.full((144, 176, 3), 128, dtype=np.uint8)
    draw_caption(one, text, max_lines=1, position="top")
    assert (one[-20:] == 128).all()


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".avi"])
def test_write_video_round_trip(tmp_path: Path, suffix: str):
    frames = list(draw_track(square_frames(square_boxes(12)), Track.from_boxes(square_boxes(12))))
    path = write_video(tmp_path / f"out{suffix}", frames, fps=12)
    assert path.exists() and sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp files left
    if suffix == ".gif":
        ok, animation = cv2.imreadanimation(str(path))
        assert ok and len(animation.frames) == 12
    else:
        capture = cv2.VideoCapture(str(path))
        count = 0
        while capture.read()[0]:
            count += 1
        assert count == 12
        assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 160


def test_write_video_errors(tmp_path: Path):
    with pytest.raises(VideoError, match="unsupported extension"):
        write_video(tmp_path / "out.xyz", [np.zeros((8, 8, 3), np.uint8)], 10)
    with pytest.raises(VideoError, match="no frames"):
        write_video(tmp_path / "out.mp4", [], 10)
    with pytest.raises(VideoError, match="earlier frames"):
        write_video(tmp_path / "out.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((16, 8, 3), np.uint8)], 10)
    assert list(tmp_path.iterdir()) == []  # a failed write leaves nothing behind
