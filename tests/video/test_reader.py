"""VideoReader: exact frame counts and seeks on every backend, frame folders, and clear errors."""

from __future__ import annotations

import os
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from artemis.errors import VideoError
from artemis.video import VideoReader, available_backends

FILE_BACKENDS = ["decord", "pyav", "opencv"]
SIZE = (64, 48)  # (W, H) of the generated videos

# name: (width, height, frames, fps) as listed in ../shared/reference/README.md
REFERENCE_VIDEOS = {
    "bikes.mp4": (640, 272, 250, 25.0),
    "carphone_pristine.mp4": (176, 144, 120, 29.97),
    "realshort.mp4": (320, 240, 36, 30.0),
}


@pytest.fixture(params=FILE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param not in available_backends():
        pytest.skip(f"video backend {request.param} is not installed")
    return request.param


def make_frame(index: int, width: int = SIZE[0], height: int = SIZE[1]) -> np.ndarray:
    """A BGR frame that differs clearly from its neighbours: a moving block on a changing background."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[:] = ((index * 37) % 256, (index * 91) % 256, 255 - (index * 53) % 256)
    x = (index * 5) % (width - 16)
    frame[8:24, x : x + 16] = 255
    return frame


def write_video(path: Path, num_frames: int, fourcc: str, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert writer.isOpened(), f"cannot write {fourcc} to {path}"
    for index in range(num_frames):
        writer.write(make_frame(index))
    writer.release()
    return path


def claim_frames(path: Path, claimed: int) -> None:
    """Patch an AVI's avih ``dwTotalFrames`` and its video strh ``dwLength`` to claim ``claimed`` frames."""
    data = bytearray(path.read_bytes())
    avih = data.find(b"avih")
    struct.pack_into("<I", data, avih + 8 + 16, claimed)  # after the chunk header, 5th DWORD of MainAVIHeader
    strh = data.find(b"strhvids") if b"strhvids" in data else data.find(b"strh")
    struct.pack_into("<I", data, strh + 8 + 32, claimed)  # fccType fccHandler flags prio/lang init scale rate start
    path.write_bytes(bytes(data))


def decode_all(path: Path, backend: str) -> list[np.ndarray]:
    with VideoReader(path, backend) as reader:
        return [frame for _, frame in reader.iter_frames()]


@pytest.fixture
def mjpg_avi(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi", 20, "MJPG")


@pytest.fixture
def mp4v_mp4(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", 30, "mp4v")


# --- generated videos ------------------------------------------------------------------------------------


def test_available_backends_lists_importable_ones_in_auto_order() -> None:
    names = available_backends()
    assert names == [n for n in ["decord", "pyav", "opencv", "frames"] if n in names]
    assert "opencv" in names and "frames" in names  # opencv is a hard dependency


@pytest.mark.parametrize("fixture", ["mjpg_avi", "mp4v_mp4"])
def test_generated_video_metadata_and_exact_seeks(backend: str, fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    sequential = decode_all(path, backend)
    with VideoReader(path, backend) as reader:
        assert reader.backend == backend
        assert (reader.width, reader.height) == SIZE
        assert reader.fps == pytest.approx(10.0)
        assert len(reader) == reader.num_frames == len(sequential)
        assert reader.duration == pytest.approx(reader.num_frames / 10.0)
        indices = [reader.num_frames - 1, 0, 7, 3, 7, reader.num_frames // 2]
        frames = reader.get_frames(indices)
        assert frames.shape == (len(indices), SIZE[1], SIZE[0], 3) and frames.dtype == np.uint8
        for frame, index in zip(frames, indices, strict=True):
            np.testing.assert_array_equal(frame, sequential[index])
        np.testing.assert_array_equal(reader.get_frame(5), sequential[5])
    # the decoded pixels are the written ones (lossy codecs: close, and in RGB order)
    expected = cv2.cvtColor(make_frame(5), cv2.COLOR_BGR2RGB)
    assert np.abs(sequential[5].astype(int) - expected).mean() < 8


@pytest.mark.parametrize("variant", ["patched", "patched_without_index", "truncated"])
def test_frame_count_is_what_decodes_not_what_the_header_claims(backend: str, tmp_path: Path, variant: str) -> None:
    path = write_video(tmp_path / "liar.avi", 12, "MJPG")
    claim_frames(path, 444)
    data = path.read_bytes()
    if variant == "patched_without_index":  # drop idx1 so demuxers cannot count from the index
        path.write_bytes(data[: data.find(b"idx1")])
    elif variant == "truncated":  # a download cut short: header says 444, half the frames are there
        movi, idx1 = data.find(b"movi"), data.find(b"idx1")
        path.write_bytes(data[: (movi + idx1) // 2])
    assert cv2.VideoCapture(str(path), cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FRAME_COUNT) == 444  # the header lies
    decodable = len(decode_all(path, "opencv"))
    assert decodable == 12 if variant != "truncated" else 0 < decodable < 12
    if backend == "decord" and variant == "truncated":
        # decord fails at random near damage, so it refuses the file and "auto" moves on to pyav
        with pytest.raises(VideoError, match=r"decord cannot read .*liar\.avi reliably.*use backend='pyav'"):
            VideoReader(path, backend)
        backend = "auto"
    with VideoReader(path, backend) as reader:
        assert reader.num_frames == decodable
        assert reader.get_frames([decodable - 1]).shape == (1, SIZE[1], SIZE[0], 3)
        with pytest.raises(VideoError, match=f"past the end of liar.avi \\({decodable} frames"):
            reader.get_frame(decodable)


def test_auto_prefers_decord_then_pyav(mjpg_avi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = next(n for n in FILE_BACKENDS if n in available_backends())
    assert VideoReader(mjpg_avi).backend == expected
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    assert VideoReader(mjpg_avi).backend == ("pyav" if "pyav" in available_backends() else "opencv")


def test_missing_backend_names_the_pip_package(mjpg_avi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "decord", None)
    with pytest.raises(
        VideoError, match=r"video backend 'decord' is not installed; install it with `pip install decord`"
    ):
        VideoReader(mjpg_avi, "decord")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(VideoError, match=r"'pyav' is not installed; install it with `pip install av`"):
        VideoReader(mjpg_avi, "pyav")


def test_get_frames_order_duplicates_and_empty(mp4v_mp4: Path) -> None:
    with VideoReader(mp4v_mp4) as reader:
        frames = reader.get_frames(np.array([9, 2, 9, 2, 0]))
        np.testing.assert_array_equal(frames[0], frames[2])
        np.testing.assert_array_equal(frames[1], frames[3])
        np.testing.assert_array_equal(frames[1], reader.get_frame(2))
        assert not np.array_equal(frames[0], frames[1])
        assert reader.get_frames([]).shape == (0, SIZE[1], SIZE[0], 3)


def test_iter_frames_streams_a_range(backend: str, mp4v_mp4: Path) -> None:
    with VideoReader(mp4v_mp4, backend) as reader:
        sequential = decode_all(mp4v_mp4, backend)
        got = list(reader.iter_frames(3, 17, 4))
        assert [i for i, _ in got] == [3, 7, 11, 15]
        for index, frame in got:
            np.testing.assert_array_equal(frame, sequential[index])
        assert [i for i, _ in reader.iter_frames(25, 1000)] == [25, 26, 27, 28, 29]  # stop clipped like a slice
        # interleaving random access with a running iterator keeps both exact
        iterator = reader.iter_frames(10, 14)
        next(iterator)
        np.testing.assert_array_equal(reader.get_frame(2), sequential[2])
        index, frame = next(iterator)
        assert index == 11
        np.testing.assert_array_equal(frame, sequential[11])
        with pytest.raises(VideoError, match="step >= 1"):
            reader.iter_frames(0, 10, 0)
        with pytest.raises(VideoError, match=r"start=-1"):
            reader.iter_frames(-1)


def test_timestamps_are_index_over_fps(mjpg_avi: Path) -> None:
    with VideoReader(mjpg_avi) as reader:
        stamps = reader.timestamps()
        assert stamps.dtype == np.float64 and stamps.shape == (20,)
        np.testing.assert_allclose(stamps, np.arange(20) / 10.0)
        np.testing.assert_allclose(reader.timestamps([19, 0]), [1.9, 0.0])
    with VideoReader(mjpg_avi, fps=4.0) as reader:  # an explicit fps wins over the container's
        assert reader.fps == 4.0 and reader.duration == 5.0
        np.testing.assert_allclose(reader.timestamps([2]), [0.5])


def test_close_and_context_manager(mjpg_avi: Path) -> None:
    with VideoReader(mjpg_avi) as reader:
        reader.get_frame(0)
    with pytest.raises(VideoError, match="is closed"):
        reader.get_frame(0)
    reader.close()  # twice is fine
    assert "num_frames=20" in repr(reader)


# --- memory ----------------------------------------------------------------------------------------------


def test_get_frames_holds_only_the_sampled_frames(backend: str, reference_dir: Path) -> None:
    path = reference_dir / "videos" / "bikes.mp4"
    frame_bytes = 640 * 272 * 3
    with VideoReader(path, backend) as reader:
        tracemalloc.start()
        try:
            reader.get_frames([0, 120, 249])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 12 * frame_bytes, f"{backend} peaked at {peak / frame_bytes:.1f} frames for 3 sampled frames"


# --- real videos ----------------------------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize("name", list(REFERENCE_VIDEOS))
def test_reference_video_metadata(backend: str, name: str, reference_dir: Path) -> None:
    width, height, num_frames, fps = REFERENCE_VIDEOS[name]
    start = time.perf_counter()
    with VideoReader(reference_dir / "videos" / name, backend) as reader:
        assert (reader.width, reader.height, reader.num_frames) == (width, height, num_frames)
        assert reader.fps == pytest.approx(fps, rel=1e-3)
    assert time.perf_counter() - start < 30


@pytest.mark.reference
@pytest.mark.parametrize("name", list(REFERENCE_VIDEOS))
def test_reference_seeks_return_the_exact_frame(backend: str, name: str, reference_dir: Path) -> None:
    path = reference_dir / "videos" / name
    num_frames = REFERENCE_VIDEOS[name][2]
    # backwards, forwards across keyframes, duplicates, both ends
    indices = [num_frames - 1, 0, num_frames // 2, 1, num_frames // 2 + 1, 13, num_frames - 2, 13, num_frames // 3]
    wanted = set(indices)
    with VideoReader(path, backend) as reader:
        sequential = {index: frame for index, frame in reader.iter_frames() if index in wanted}
    with VideoReader(path, backend) as reader:
        frames = reader.get_frames(indices)
        singles = [reader.get_frame(i) for i in reversed(indices)]
    for frame, index in zip(frames, indices, strict=True):
        np.testing.assert_array_equal(frame, sequential[index], err_msg=f"{backend} frame {index} of {name}")
    for frame, index in zip(singles, reversed(indices), strict=True):
        np.testing.assert_array_equal(frame, sequential[index], err_msg=f"{backend} frame {index} of {name}")


@pytest.mark.reference
@pytest.mark.parametrize("name", list(REFERENCE_VIDEOS))
def test_backends_agree_on_every_sampled_frame(name: str, reference_dir: Path) -> None:
    path = reference_dir / "videos" / name
    backends = [b for b in FILE_BACKENDS if b in available_backends()]
    indices = list(range(0, REFERENCE_VIDEOS[name][2], 7))
    frames = {b: VideoReader(path, b).get_frames(indices).astype(np.int16) for b in backends}
    for other in backends[1:]:
        diff = np.abs(frames[backends[0]] - frames[other]).mean(axis=(1, 2, 3))
        assert diff.max() < 2, f"{backends[0]} vs {other} differ by {diff.max():.2f} on {name}"


@pytest.mark.reference
def test_reference_frame_folder(reference_dir: Path) -> None:
    folder = reference_dir / "otb_crossing" / "img"
    with VideoReader(folder) as reader:
        assert reader.backend == "frames"
        assert (reader.num_frames, reader.width, reader.height, reader.fps) == (120, 360, 240, 30.0)
        image = cv2.cvtColor(cv2.imread(str(folder / "0120.jpg")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(reader.get_frame(119), image)


# --- frame folders ----------------------------------------------------------------------------------------


def write_frames(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for index, name in enumerate(names):
        cv2.imwrite(str(folder / name), make_frame(index))
    return folder


def test_frame_folder_natural_order_fps_and_exact_pixels(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "frames", ["1.png", "2.png", "10.png", "3.PNG"])  # written order = index
    (folder / ".hidden.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    with VideoReader(folder, fps=12.5) as reader:
        assert reader.backend == "frames" and reader.num_frames == 4 and reader.fps == 12.5
        frames = reader.get_frames([0, 1, 2, 3])
    by_name = {name: cv2.cvtColor(make_frame(i), cv2.COLOR_BGR2RGB) for i, name in enumerate(["1", "2", "10", "3"])}
    for frame, name in zip(frames, ["1", "2", "3", "10"], strict=True):  # natural order: 1, 2, 3, 10
        np.testing.assert_array_equal(frame, by_name[name])
    assert VideoReader(folder).fps == 30.0


def test_frame_folder_of_grayscale_jpegs_gives_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "gray"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), np.full((20, 30), 40 * index, dtype=np.uint8))
    frames = VideoReader(folder).get_frames([2, 0])
    assert frames.shape == (2, 20, 30, 3)
    assert abs(float(frames[0].mean()) - 80) < 2


# --- errors ----------------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"video .*nope\.mp4 does not exist; expected a video file or a folder"):
        VideoReader(tmp_path / "nope.mp4")


@pytest.mark.parametrize("backend_name", ["auto", *FILE_BACKENDS])
def test_empty_file(tmp_path: Path, backend_name: str) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoError, match=r"empty\.mp4 is empty \(0 bytes\)"):
        VideoReader(path, backend_name)  # type: ignore[arg-type]


def test_corrupt_file(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=rf"{backend} cannot open .*corrupt\.mp4"):
        VideoReader(path, backend)  # type: ignore[arg-type]


def test_corrupt_file_with_auto_names_every_backend(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(VideoError, match=r"corrupt\.mp4") as error:
        VideoReader(path)
    installed = [b for b in FILE_BACKENDS if b in available_backends()]
    assert all(f"{b} cannot open" in str(error.value) for b in installed)


def test_video_without_decodable_frames(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "zero.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, SIZE).release()  # header, no frames
    assert path.stat().st_size > 0
    # decord refuses the stream at open; the others open it and find nothing to decode
    with pytest.raises(VideoError, match=r"zero\.avi (has no decodable frames|: )|cannot open .*zero\.avi"):
        VideoReader(path, backend)  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="no decodable frames"):
        VideoReader(path)


def test_index_past_the_end_or_negative(mjpg_avi: Path) -> None:
    with VideoReader(mjpg_avi) as reader:
        with pytest.raises(VideoError, match=r"^frame index 20 is past the end of clip\.avi \(20 frames, 0\.\.19\)$"):
            reader.get_frames([0, 20])
        with pytest.raises(VideoError, match=r"^frame index -1 is negative; expected 0\.\.19 for clip\.avi$"):
            reader.get_frame(-1)
        with pytest.raises(VideoError, match="past the end"):
            reader.timestamps([25])
        with pytest.raises(VideoError, match="1-D sequence of integers"):
            reader.get_frames([1.5])


@pytest.mark.reference
def test_index_past_the_end_of_a_reference_video(reference_dir: Path) -> None:
    with (
        VideoReader(reference_dir / "videos" / "bikes.mp4") as reader,
        pytest.raises(VideoError, match=r"^frame index 300 is past the end of bikes\.mp4 \(250 frames, 0\.\.249\)$"),
    ):
        reader.get_frame(300)


def test_empty_folder_and_folder_without_images(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match=r"frame folder .*empty is empty; expected \.jpg/\.jpeg/\.png"):
        VideoReader(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "readme.txt").write_text("x")
    (other / "clip.gif").write_bytes(b"GIF89a")
    with pytest.raises(VideoError, match=r"has no \.jpg/\.jpeg/\.png images \(found clip\.gif, readme\.txt\)"):
        VideoReader(other)


def test_corrupt_image_in_folder_is_named(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "frames", ["00001.jpg", "00002.jpg", "00003.jpg"])
    (folder / "00002.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with VideoReader(folder) as reader:
        reader.get_frames([0, 2])
        with pytest.raises(VideoError, match=r"cannot decode image .*00002\.jpg \(frame 1 of .*frames\)"):
            reader.get_frames([0, 1])
    (folder / "00001.jpg").write_bytes(b"")  # an empty first frame fails at open
    with pytest.raises(VideoError, match=r"cannot decode image .*00001\.jpg"):
        VideoReader(folder)


def test_frame_folder_with_mixed_sizes(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "frames", ["a1.jpg", "a2.jpg"])
    cv2.imwrite(str(folder / "a3.jpg"), np.zeros((10, 10, 3), dtype=np.uint8))
    with VideoReader(folder) as reader, pytest.raises(VideoError, match=r"a3\.jpg is 10x10 but a1\.jpg is 64x48"):
        reader.get_frames([0, 1, 2])


def test_wrong_backend_for_the_source(tmp_path: Path, mjpg_avi: Path) -> None:
    folder = write_frames(tmp_path / "frames", ["1.jpg"])
    with pytest.raises(VideoError, match=r"is a folder of frames; use backend='frames' or 'auto', not 'pyav'"):
        VideoReader(folder, "pyav")
    with pytest.raises(VideoError, match=r"is a file, not a folder of frames"):
        VideoReader(mjpg_avi, "frames")
    with pytest.raises(VideoError, match=r"unknown video backend 'ffmpeg'"):
        VideoReader(mjpg_avi, "ffmpeg")  # type: ignore[arg-type]
    with pytest.raises(VideoError, match=r"fps -1 .* is invalid"):
        VideoReader(mjpg_avi, fps=-1)


@pytest.mark.reference
def test_pyav_counting_by_decoding_keeps_seeks_exact(reference_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback used when packets do not prove the count (damage, missing timestamps) is exact too."""
    pytest.importorskip("av")
    from artemis.video import backends

    path = reference_dir / "videos" / "carphone_pristine.mp4"  # B-frames: decode order != display order
    indices = [119, 0, 60, 61, 5, 118]
    expected = VideoReader(path, "pyav").get_frames(indices)
    monkeypatch.setattr(backends.PyAVDecoder, "_index_from_packets", lambda self: False)
    with VideoReader(path, "pyav") as reader:
        assert reader.num_frames == 120
        np.testing.assert_array_equal(reader.get_frames(indices), expected)
