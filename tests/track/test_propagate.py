"""track_video on synthetic frames: CSRT following a square, stride, max_side, loss, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from track_synth import OracleTracker, open_reader, square_boxes, square_frames, write_folder

from artemis.boxes import box_iou
from artemis.errors import BoxError, ConfigError, TrackingError, VideoError
from artemis.track import Track, create_tracker, track_video, tracked_indices
from artemis.video import ImageListVideo, VideoReader


def test_csrt_follows_square_forward_and_backward(square_video):
    folder, truth = square_video
    reader = open_reader(folder)
    track = track_video(reader, truth[20], 20)
    assert track.num_frames == 40 and track.key_frame == 20
    assert (track.width, track.height) == (160, 120)
    assert track.visible.all()
    np.testing.assert_array_equal(track.boxes[20], truth[20])
    iou = box_iou(track.boxes, truth)
    assert iou.min() > 0.75, iou.round(2)
    assert track.scores is not None and track.scores[20] == 1.0


def test_tracked_indices_cover_both_ends():
    assert tracked_indices(0, 10, 1) == (list(range(10)), [0])
    assert tracked_indices(5, 10, 3) == ([5, 8, 9], [5, 2, 0])
    assert tracked_indices(6, 10, 3) == ([6, 9], [6, 3, 0])
    assert tracked_indices(9, 10, 4) == ([9], [9, 5, 1, 0])


def test_stride_tracks_every_kth_frame_and_interpolates(square_video):
    folder, truth = square_video
    seen: list[int] = []

    class Counting(OracleTracker):
        def update(self, frame):
            seen.append(len(seen))
            return super().update(frame)

    track = track_video(open_reader(folder), truth[10], 10, tracker=Counting, stride=4)
    forward, backward = tracked_indices(10, 40, 4)
    assert len(seen) == len(forward) + len(backward) - 2  # the key frame is given, not tracked
    # Linear motion: the interpolated boxes are the truth, endpoints included.
    np.testing.assert_allclose(track.boxes, truth, atol=1e-9)
    assert track.visible.all()
    untracked = sorted(set(range(40)) - set(forward) - set(backward))
    assert np.isnan(track.scores[untracked]).all()


def test_stride_with_csrt_stays_close(square_video):
    folder, truth = square_video
    track = track_video(open_reader(folder), truth[0], 0, stride=3)
    assert track.visible.all()
    assert box_iou(track.boxes, truth).min() > 0.7


def test_max_side_maps_boxes_back_exactly(tmp_path: Path):
    # 320x240 frames halved to 160x120: even coordinates survive INTER_AREA exactly, so the oracle's
    # boxes at working resolution map back to the original pixels without any offset.
    truth = square_boxes(12, start=(40, 60), velocity=(4, 2)) * np.array([1, 1, 1, 1])
    truth[:, 2:] = truth[:, :2] + 40  # a 40 px square on the full-size frames
    frames = square_frames_big(truth)
    reader = open_reader(write_folder(frames, tmp_path / "big"))
    sizes: list[tuple[int, int]] = []

    class Recording(OracleTracker):
        def init(self, frame, box_xyxy):
            sizes.append(frame.shape[:2])
            np.testing.assert_allclose(box_xyxy, truth[6] / 2)  # the key box arrives scaled
            super().init(frame, box_xyxy)

    track = track_video(reader, truth[6], 6, tracker=Recording, max_side=160)
    assert sizes == [(120, 160), (120, 160)]  # one fresh tracker per direction, at working size
    np.testing.assert_allclose(track.boxes, truth, atol=1e-9)
    assert (track.width, track.height) == (320, 240)


def square_frames_big(boxes: np.ndarray) -> np.ndarray:
    frames = np.zeros((len(boxes), 240, 320, 3), dtype=np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        frames[index, y1:y2, x1:x2] = 220
    return frames


def test_max_side_with_csrt(square_video):
    folder, truth = square_video
    track = track_video(open_reader(folder), truth[0], 0, max_side=100)
    assert track.visible.all()
    assert box_iou(track.boxes, truth).mean() > 0.7


def test_lost_target_marks_frames_invisible_and_keeps_trying(tmp_path: Path):
    truth = square_boxes(30)
    hidden = set(range(12, 18))
    reader = open_reader(write_folder(square_frames(truth, hidden=hidden), tmp_path / "hide"))
    track = track_video(reader, truth[0], 0, tracker=OracleTracker)
    assert not track.visible[sorted(hidden)].any()
    assert np.isnan(track.boxes[sorted(hidden)]).all()
    assert track.visible[18:].all()  # fed every frame after the loss, it finds the target again
    # CSRT reports the empty frames as failures too.
    csrt = track_video(reader, truth[0], 0)
    assert not csrt.visible[12:15].any()
    assert csrt.visible[:12].all()


def test_lost_target_is_not_interpolated_across(tmp_path: Path):
    truth = square_boxes(30)
    reader = open_reader(write_folder(square_frames(truth, hidden={12}), tmp_path / "hide1"))
    track = track_video(reader, truth[0], 0, tracker=OracleTracker, stride=4)
    assert not track.visible[9:16].any()  # 12 is lost: 9..11 and 13..15 have no box to lean on
    assert track.visible[:9].all() and track.visible[16:].all()


def test_given_backend_uses_annotations(square_video):
    folder, truth = square_video
    track_list = [b.tolist() for b in truth]
    track_list[3] = []
    track_list[4] = None
    track = track_video(open_reader(folder), truth[5], 5, tracker="given", boxes=track_list)
    assert track.visible.sum() == 38 and not track.visible[3] and not track.visible[4]
    np.testing.assert_array_equal(track.boxes[5:], truth[5:])
    assert track.scores is None
    with pytest.raises(TrackingError, match="given"):
        create_tracker("given")
    with pytest.raises(ConfigError, match="boxes="):
        track_video(open_reader(folder), truth[0], 0, tracker="given")


def test_track_accepts_decoded_frames_and_xywh():
    truth = square_boxes(10)
    frames = square_frames(truth)
    x1, y1, x2, y2 = truth[0]
    track = track_video(frames, (x1, y1, x2 - x1, y2 - y1), 0, box_format="xywh", tracker=OracleTracker)
    np.testing.assert_allclose(track.boxes, truth)
    assert isinstance(track, Track)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((200, 10, 240, 50), "outside"),
        ((10, 10, 10, 50), "zero area"),
        ((50, 10, 20, 40), "x2 < x1"),
    ],
)
def test_bad_boxes(square_video, box, message):
    folder, _ = square_video
    with pytest.raises(BoxError, match=message):
        track_video(open_reader(folder), box, 3)


def test_frame_past_end_names_valid_range(square_video):
    folder, truth = square_video
    with pytest.raises(VideoError, match=r"frame 40 .*0\.\.39"):
        track_video(open_reader(folder), truth[0], 40)
    with pytest.raises(VideoError, match="-1"):
        track_video(open_reader(folder), truth[0], -1)


def test_missing_video(tmp_path: Path):
    with pytest.raises(VideoError):
        track_video(tmp_path / "nope.mp4", (0, 0, 10, 10), 0)


def test_unknown_tracker_lists_valid_names(square_video):
    folder, truth = square_video
    with pytest.raises(TrackingError, match=r"opencv-csrt.*given"):
        track_video(open_reader(folder), truth[0], 0, tracker="siamrpn")
    with pytest.raises(TrackingError, match="psr_threshold"):
        create_tracker("opencv-csrt", no_such_field=1)


@pytest.mark.parametrize("kwargs", [{"stride": 0}, {"max_side": 4}])
def test_bad_options(square_video, kwargs):
    folder, truth = square_video
    with pytest.raises(ConfigError):
        track_video(open_reader(folder), truth[0], 0, **kwargs)


@pytest.mark.parametrize("name", ["opencv-kcf", "opencv-mil"])
def test_other_opencv_backends_run(square_video, name):
    folder, truth = square_video
    track = track_video(open_reader(folder), truth[0], 0, tracker=name)
    assert box_iou(track.boxes[:5], truth[:5]).min() > 0.5


def test_closes_the_source_it_opens_and_leaves_a_callers_open(square_video, monkeypatch: pytest.MonkeyPatch):
    folder, truth = square_video
    closed: list[str] = []
    for cls in (VideoReader, ImageListVideo):
        real_close = cls.close

        def close(self, real_close=real_close):  # records which source was closed
            closed.append(type(self).__name__)
            real_close(self)

        monkeypatch.setattr(cls, "close", close)
    given = {"tracker": "given", "boxes": [b.tolist() for b in truth]}
    track_video(folder, truth[5], 5, **given)  # a path: opened here, so closed here
    assert closed == ["VideoReader"]
    track_video(sorted(folder.iterdir()), truth[5], 5, **given)  # an image list: the same
    assert closed == ["VideoReader", "ImageListVideo"]
    with pytest.raises(VideoError, match="outside"):
        track_video(folder, truth[5], 99, **given)  # closed also when the arguments are refused
    assert closed[-1] == "VideoReader" and len(closed) == 3
    reader = open_reader(folder)
    track = track_video(reader, truth[5], 5, **given)
    assert len(closed) == 3  # the caller's reader stays open
    np.testing.assert_array_equal(reader.get_frame(5).shape, (120, 160, 3))
    np.testing.assert_array_equal(track.boxes[5], truth[5])
    reader.close()
