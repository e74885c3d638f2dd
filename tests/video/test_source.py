"""VideoSource: every implementation, open_video on every input kind, lifetimes, lazy image lists, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from artemis.errors import VideoError
from artemis.video import ArrayVideo, ImageListVideo, VideoReader, VideoSource, backends, open_video, opened

W, H = 40, 30


def rgb_frame(index: int, width: int = W, height: int = H) -> np.ndarray:
    """An RGB frame that differs from its neighbours everywhere (PNG keeps it exactly)."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[:] = ((index * 37) % 256, (index * 91) % 256, 255 - (index * 53) % 256)
    frame[5:15, index % (width - 10) : index % (width - 10) + 10] = 255
    return frame


def write_images(folder: Path, count: int, suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img_{index:03d}{suffix}"
        assert cv2.imwrite(str(path), cv2.cvtColor(rgb_frame(index), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def write_video(path: Path, count: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened()
    for index in range(count):
        writer.write(cv2.cvtColor(rgb_frame(index), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return write_images(tmp_path / "frames", 6)


@pytest.fixture
def sources(tmp_path: Path, images: list[Path]) -> dict[str, VideoSource]:
    """One open source of every implementation, closed after the test."""
    out: dict[str, VideoSource] = {
        "file": VideoReader(write_video(tmp_path / "clip.avi", 6)),
        "folder": VideoReader(images[0].parent),
        "images": ImageListVideo(images),
        "array": ArrayVideo(np.stack([rgb_frame(i) for i in range(6)])),
    }
    yield out
    for source in out.values():
        source.close()


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The image files the image decoders read, in order (they read every image with np.fromfile)."""
    reads: list[str] = []
    real = np.fromfile

    def fromfile(path: Path, *args: object, **kwargs: object) -> np.ndarray:
        reads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(backends.np, "fromfile", fromfile)
    return reads


# --- the protocol ------------------------------------------------------------------------------------


def test_every_implementation_is_a_video_source(sources: dict[str, VideoSource]) -> None:
    for name, source in sources.items():
        assert isinstance(source, VideoSource), name
        assert (source.num_frames, source.width, source.height) == (6, W, H), name
        assert str(source.path), name
        frames = source.get_frames([5, 0, 5])
        assert frames.shape == (3, H, W, 3) and frames.dtype == np.uint8, name
        np.testing.assert_array_equal(frames[0], frames[2])
        np.testing.assert_array_equal(source.get_frame(5), frames[0])
    assert not isinstance(np.zeros((2, H, W, 3), np.uint8), VideoSource)
    assert not isinstance("clip.mp4", VideoSource)


def test_lossless_sources_return_the_written_pixels(sources: dict[str, VideoSource]) -> None:
    expected = np.stack([rgb_frame(i) for i in range(6)])
    for name in ("folder", "images", "array"):
        np.testing.assert_array_equal(sources[name].get_frames(list(range(6))), expected, err_msg=name)
    # The MJPG file is lossy; it must still be close to the frames written.
    assert np.abs(sources["file"].get_frames([2]).astype(int) - expected[2]).mean() < 8


def test_iter_frames_streams_a_range(sources: dict[str, VideoSource]) -> None:
    for name, source in sources.items():
        streamed = list(source.iter_frames(1, 100, 2))
        assert [index for index, _ in streamed] == [1, 3, 5], name
        np.testing.assert_array_equal(streamed[1][1], source.get_frame(3))
        assert [index for index, _ in source.iter_frames()] == list(range(6)), name


def test_reads_after_close_raise_and_close_twice_is_safe(sources: dict[str, VideoSource]) -> None:
    for source in sources.values():
        source.close()
        source.close()
        with pytest.raises(VideoError, match="closed"):
            source.get_frame(0)


def test_with_block_closes_the_source(images: list[Path]) -> None:
    with open_video(images) as video:
        assert video.get_frame(1).shape == (H, W, 3)
    with pytest.raises(VideoError, match=r"ImageListVideo .* is closed"):
        video.get_frame(1)


def test_out_of_range_index_names_the_range(sources: dict[str, VideoSource]) -> None:
    for source in sources.values():
        with pytest.raises(VideoError, match=r"0\.\.5"):
            source.get_frame(6)


# --- open_video and opened ---------------------------------------------------------------------------


def test_open_video_picks_the_reader_for_each_input(tmp_path: Path, images: list[Path]) -> None:
    video_file = write_video(tmp_path / "clip.avi", 4)
    frames = np.stack([rgb_frame(i) for i in range(3)])
    cases = {
        "file path": (str(video_file), VideoReader, 4),
        "file Path": (video_file, VideoReader, 4),
        "frame folder": (images[0].parent, VideoReader, 6),
        "list of Paths": (images, ImageListVideo, 6),
        "tuple of str": (tuple(str(p) for p in images[:2]), ImageListVideo, 2),
        "array": (frames, ArrayVideo, 3),
        "list of frames": (list(frames), ArrayVideo, 3),
    }
    for name, (value, kind, count) in cases.items():
        with open_video(value) as video:
            assert type(video) is kind, name
            assert video.num_frames == count, name
    with open_video(images[0].parent) as folder:
        assert folder.backend == "frames"


def test_open_video_returns_a_source_as_it_is(images: list[Path]) -> None:
    with ImageListVideo(images) as source:
        assert open_video(source) is source
        array = ArrayVideo(np.zeros((1, H, W, 3), np.uint8))
        assert open_video(array) is array


def test_open_video_passes_fps(tmp_path: Path, images: list[Path]) -> None:
    with open_video(images, fps=12.5) as video:
        assert video.fps == 12.5
    with open_video(images) as video:
        assert video.fps == 30.0  # like a frame folder
    assert open_video(np.zeros((2, H, W, 3), np.uint8), fps=5.0).fps == 5.0
    with pytest.raises(VideoError, match="fps -1"):
        open_video(images, fps=-1)


def test_opened_leaves_a_callers_source_open(images: list[Path]) -> None:
    with ImageListVideo(images) as mine:
        with opened(mine) as video:
            assert video is mine
        assert mine.get_frame(2).shape == (H, W, 3)  # still open


def test_opened_closes_what_it_opened_also_on_error(images: list[Path]) -> None:
    with opened(images) as video:
        video.get_frame(0)
    with pytest.raises(VideoError, match="closed"):
        video.get_frame(0)
    with pytest.raises(RuntimeError, match="boom"), opened(images[0].parent) as folder:
        raise RuntimeError("boom")
    with pytest.raises(VideoError, match="closed"):
        folder.get_frame(0)


# --- ImageListVideo reads lazily ---------------------------------------------------------------------


def test_image_list_reads_only_the_frames_asked_for(images: list[Path], count_reads: list[str]) -> None:
    video = ImageListVideo(images)
    assert count_reads == ["img_000.png"]  # the first image only, for the frame size
    video.get_frame(0)
    assert count_reads == ["img_000.png"]  # served from the image decoded at open
    video.get_frames([4, 2, 4])
    assert count_reads == ["img_000.png", "img_002.png", "img_004.png"]  # each once, in order
    list(video.iter_frames(3, 5))
    assert count_reads[3:] == ["img_003.png", "img_004.png"]
    video.close()


def test_image_list_with_a_missing_image_opens_and_fails_only_on_that_frame(images: list[Path]) -> None:
    images[4].unlink()
    with ImageListVideo(images) as video:
        assert video.get_frames([0, 5]).shape == (2, H, W, 3)
        with pytest.raises(VideoError, match=r"img_004\.png \(frame 4 of an image list of 6 files\) does not exist"):
            video.get_frame(4)


# --- bad inputs ----------------------------------------------------------------------------------------


def test_missing_first_image_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.jpg"
    with pytest.raises(VideoError, match=r"gone\.jpg .*does not exist; check the path"):
        open_video([missing])


def test_corrupt_image_names_the_file(images: list[Path]) -> None:
    images[3].write_bytes(b"not an image")
    with ImageListVideo(images) as video, pytest.raises(VideoError, match=r"cannot decode image .*img_003\.png"):
        video.get_frame(3)


def test_image_of_another_size_names_both_sizes(tmp_path: Path, images: list[Path]) -> None:
    other = tmp_path / "big.jpg"
    cv2.imwrite(str(other), np.zeros((H * 2, W * 2, 3), np.uint8))
    expected = rf"big\.jpg is {W * 2}x{H * 2} but .*img_000\.png is {W}x{H}; every frame in an image list"
    with ImageListVideo([*images[:2], other]) as video, pytest.raises(VideoError, match=expected):
        video.get_frame(2)


def test_empty_inputs_say_what_is_expected() -> None:
    with pytest.raises(VideoError, match="empty; expected image paths"):
        open_video([])
    with pytest.raises(VideoError, match="expected a list of image paths"):
        ImageListVideo([])
    with pytest.raises(VideoError, match=r"T >= 1"):
        open_video(np.zeros((0, H, W, 3), np.uint8))


def test_wrong_array_shapes_name_the_shape_and_the_fix() -> None:
    with pytest.raises(VideoError, match=r"shape \(4, 30, 40\); expected \(T, H, W, 3\)"):
        open_video(np.zeros((4, H, W), np.uint8))
    with pytest.raises(VideoError, match=r"frame\[None\]"):
        open_video(np.zeros((H, W, 3), np.uint8))  # one frame without its time axis
    with pytest.raises(VideoError, match="different shapes"):
        open_video([np.zeros((H, W, 3), np.uint8), np.zeros((H + 1, W, 3), np.uint8)])


def test_inputs_of_another_kind_are_refused(images: list[Path]) -> None:
    with pytest.raises(VideoError, match="cannot open a int as a video; expected a video file"):
        open_video(3)  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="a list of PosixPath, ndarray; expected only image paths"):
        open_video([images[0], np.zeros((H, W, 3), np.uint8)])  # type: ignore[list-item]
    with pytest.raises(VideoError, match="backend='pyav' reads video files"):
        open_video(images, backend="pyav")
    with pytest.raises(VideoError, match="take backend='auto'"):
        open_video(np.zeros((1, H, W, 3), np.uint8), backend="frames")
