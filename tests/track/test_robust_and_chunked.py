"""Trackers never crash on tiny boxes at the frame edge; the backward pass is chunked and threads change nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from track_synth import OracleTracker, square_boxes, square_frames

from artemis.errors import ConfigError
from artemis.track import resolve_stride, track_video
from artemis.track.feed import FrameFeed, chunk_backward
from artemis.track.opencv import OpenCVTracker, _grow
from artemis.video import ArrayVideo, VideoReader

REFERENCE_VIDEO = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "videos" / "bikes.mp4"
SIZES = [(1, 1), (1, 2), (2, 1)]


def _edge_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """1x1, 1x2 and 2x1 boxes (xyxy) at each corner and the middle of each edge."""
    boxes = []
    for w, h in SIZES:
        for x in (0, width // 2, width - w):
            for y in (0, height // 2, height - h):
                if (x, y) != (width // 2, height // 2):
                    boxes.append((x, y, x + w, y + h))
    return boxes


def _synthref_frames(tmp_path: Path) -> np.ndarray:
    from artemis.data import generate_split

    split = generate_split(tmp_path / "synthref", 1, seed=3, split="test").split_dir
    with VideoReader(next((split / "videos").iterdir())) as reader:
        return reader.get_frames([0, 1, 2])


@pytest.mark.parametrize("algorithm", ["csrt", "kcf", "mil"])
@pytest.mark.parametrize("source", ["real", "synthref"])
def test_tiny_boxes_at_every_edge_give_a_track(algorithm, source, tmp_path, caplog):
    if source == "real":
        if not REFERENCE_VIDEO.exists():
            pytest.skip("reference video missing")
        with VideoReader(REFERENCE_VIDEO) as reader:
            frames = reader.get_frames([0, 1, 2])
    else:
        frames = _synthref_frames(tmp_path)
    height, width = frames.shape[1:3]
    caplog.set_level(logging.WARNING)
    for box in _edge_boxes(width, height):
        track = track_video(frames, box, 0, tracker=f"opencv-{algorithm}", parallel=False)
        np.testing.assert_array_equal(track.boxes[0], box)
        assert track.visible[0]
        # Every other frame is a box inside the frame or reported lost; never an exception.
        assert np.array_equal(track.visible, np.all(np.isfinite(track.boxes), axis=1))
        inside = track.boxes[track.visible]
        assert np.all(inside[:, :2] >= 0) and np.all(inside[:, 2] <= width) and np.all(inside[:, 3] <= height)


def test_grown_template_maps_back_to_the_box():
    box = np.array([0.0, 5.0, 1.0, 7.0])
    grown = _grow(box, 64, 48)
    assert grown[0] == 0 and grown[2] - grown[0] == 10 and grown[3] - grown[1] == 10
    frames = np.zeros((3, 48, 64, 3), dtype=np.uint8)
    frames[:, 4:9, 0:3] = 255  # a static spot: the template does not move, so the box comes back as it was
    tracker = OpenCVTracker("kcf")
    tracker.init(frames[0], box)
    out, _ = tracker.update(frames[1])
    if out is not None:
        np.testing.assert_allclose(out, box, atol=1.0)


def test_opencv_error_becomes_a_lost_frame(caplog):
    tracker = OpenCVTracker("csrt")
    frame = np.zeros((32, 32, 3), dtype=np.uint8)
    tracker.init(frame, np.array([0.0, 0.0, 4.0, 4.0]))
    tracker._tracker = _Raising()  # stand-in for an OpenCV object that fails mid-track
    caplog.set_level(logging.WARNING)
    assert tracker.update(frame) == (None, 0.0)
    assert tracker.update(frame) == (None, 0.0)
    assert "reported lost" in caplog.text


class _Raising:
    def update(self, frame):
        import cv2

        raise cv2.error("OpenCV(5.0.0) resize.cpp:4217: error: (-215:Assertion failed) !ssize.empty()")


def test_chunk_backward_covers_every_frame_once():
    backward = [*range(100, -1, -3), 0]
    chunks = chunk_backward(backward, 8)
    assert all(len(c) <= 8 and c == sorted(c) for c in chunks)
    assert [i for c in chunks for i in reversed(c)] == backward
    assert chunks[0][-1] == 100 and chunks[-1][0] == 0


class _CountingVideo(ArrayVideo):
    """Records how many frames were handed out while the backward pass had not yet consumed them."""

    def __init__(self, frames: np.ndarray) -> None:
        super().__init__(frames, fps=25.0)
        self.reads: list[int] = []

    def iter_frames(self, start=0, stop=None, step=1):
        for index, frame in super().iter_frames(start, stop, step):
            self.reads.append(index)
            yield index, frame


def test_backward_pass_holds_one_chunk_at_a_time():
    frames = np.zeros((300, 8, 8, 3), dtype=np.uint8)
    video = _CountingVideo(frames)
    backward = list(range(299, -1, -1))
    feed = FrameFeed(video, [299], backward, anchor=299, stride=1, prepare=lambda f: f, frame_bytes=1, threaded=False,
                     chunk_bytes=10)  # fmt: skip
    out = feed.frames("backward")
    first = next(out)
    assert first[0] == 299
    # Only the last chunk (10 frames) was decoded to hand out the key frame.
    assert sorted(video.reads) == list(range(290, 300))
    assert [i for i, _ in out] == backward[1:]


@pytest.mark.parametrize("stride", [1, 3])
def test_parallel_and_sequential_give_the_same_track(stride):
    boxes = square_boxes(60)
    frames = square_frames(boxes)
    runs = [
        track_video(ArrayVideo(frames), boxes[30], 30, tracker=tracker, stride=stride, parallel=parallel)
        for parallel in (False, True)
        for tracker in (OracleTracker, "opencv-csrt")
    ]
    np.testing.assert_array_equal(runs[0].boxes, runs[2].boxes)
    np.testing.assert_array_equal(runs[1].boxes, runs[3].boxes)
    np.testing.assert_allclose(runs[0].boxes[runs[0].visible], boxes[runs[0].visible], atol=1e-9)


def test_an_error_in_a_pass_reaches_the_caller_and_stops_the_decoder():
    boxes = square_boxes(60)
    frames = square_frames(boxes)

    class Failing(OracleTracker):
        def update(self, frame):
            raise RuntimeError("tracker exploded")

    with pytest.raises(RuntimeError, match="tracker exploded"):
        track_video(ArrayVideo(frames), boxes[30], 30, tracker=Failing, parallel=True)


def test_pipeline_defaults_are_fast_settings():
    from inspect import signature

    from artemis.tasks.pipeline import VideoPipeline

    parameters = signature(VideoPipeline).parameters
    stride = parameters["track_stride"].default
    assert parameters["tracker"].default == "opencv-csrt-fast"
    assert parameters["track_max_side"].default == 320
    # "auto": every 8th frame of a long video, every frame of a 24-frame clip, at least 24 tracked frames between.
    assert [resolve_stride(stride, n) for n in (3000, 250, 192, 191, 100, 48, 47, 24, 5)] == [8, 8, 8, 7, 4, 2, 1, 1, 1]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "fast", None])
def test_a_bad_stride_is_refused_with_the_accepted_values(bad):
    with pytest.raises(ConfigError, match=r"stride .* expected an integer >= 1 .* or 'auto'"):
        resolve_stride(bad, 100)
    with pytest.raises(ConfigError, match="stride"):
        track_video(ArrayVideo(square_frames(square_boxes(10))), (10, 10, 30, 30), 0, stride=bad)


def test_auto_stride_tracks_a_short_clip_on_every_frame_and_a_long_one_strided():
    boxes = square_boxes(240, velocity=(0, 0))
    frames = square_frames(boxes)
    updates: list[int] = []

    class Counting(OracleTracker):
        def update(self, frame):
            updates.append(1)
            return super().update(frame)

    counts = {}
    for length in (24, 240):
        updates.clear()
        track = track_video(ArrayVideo(frames[:length]), boxes[0], 0, tracker=Counting, stride="auto", parallel=False)
        assert track.visible.all()
        counts[length] = len(updates)
    assert counts[24] == 23  # every frame after the key frame
    assert counts[240] == len(range(8, 240, 8)) + 1  # every 8th frame, and the last one


def test_the_fast_csrt_is_csrt_with_its_options_and_takes_overrides():
    from artemis.errors import TrackingError
    from artemis.track import create_tracker
    from artemis.track.opencv import FAST_CSRT_OPTIONS

    fast = create_tracker("opencv-csrt-fast")
    assert fast.algorithm == "csrt"
    assert {name: getattr(fast._params, name) for name in FAST_CSRT_OPTIONS} == FAST_CSRT_OPTIONS
    assert create_tracker("opencv-csrt")._params.template_size == 200  # OpenCV's own default is untouched
    overridden = create_tracker("opencv-csrt-fast", template_size=200.0, psr_threshold=0.05)
    assert overridden._params.template_size == 200 and overridden._params.use_segmentation is False
    assert overridden._params.psr_threshold == pytest.approx(0.05)
    with pytest.raises(TrackingError, match="has no field 'template'"):
        create_tracker("opencv-csrt-fast", template=100)
    boxes = square_boxes(30)
    track = track_video(ArrayVideo(square_frames(boxes)), boxes[0], 0, tracker="opencv-csrt-fast")
    assert track.visible.all() and np.abs(track.boxes - boxes).max() < 3
