"""A record's frames: image lists and sparse frame ids are read lazily, one image per frame asked for."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from artemis.data.box_output_dataset import read_record_frames
from artemis.data.media import open_media, record_track
from artemis.data.records import RecordEntry, RefSample
from artemis.errors import VideoError
from artemis.video import ImageListVideo, VideoReader, backends

W, H = 48, 32


def write_frames(folder: Path, count: int) -> list[str]:
    """``count`` PNG frames whose pixels encode their index; returns their names."""
    folder.mkdir(parents=True)
    names = []
    for index in range(count):
        name = f"{index:05d}.png"
        assert cv2.imwrite(str(folder / name), np.full((H, W, 3), index * 7 % 256, np.uint8))
        names.append(name)
    return names


def entry(sample: RefSample, base: Path) -> RecordEntry:
    return RecordEntry(sample, base / "annotations.json", 0, "elysium", "referring")


def track_of(frame_ids: list[int]) -> dict:
    box = (4.0, 4.0, 20.0, 20.0)
    return {
        "frame_ids": frame_ids,
        "boxes": [box] * len(frame_ids),
        "visible": [True] * len(frame_ids),
        "width": W,
        "height": H,
        "caption": "a grey frame",
    }


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the image files decoded, in order (the image decoders read each with np.fromfile)."""
    names: list[str] = []
    real = np.fromfile

    def fromfile(path: Path, *args: object, **kwargs: object) -> np.ndarray:
        names.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(backends.np, "fromfile", fromfile)
    return names


def test_an_image_list_record_is_opened_lazily(tmp_path: Path, reads: list[str]) -> None:
    names = write_frames(tmp_path / "vid", 30)
    sample = RefSample("r0", frame_paths=[f"vid/{n}" for n in names], base_dir=tmp_path, **track_of(list(range(30))))
    with open_media(entry(sample, tmp_path)) as video:
        assert isinstance(video, ImageListVideo) and video.num_frames == 30
        boxes, visible, key_frame = record_track(entry(sample, tmp_path), video, tracker=None)
        assert boxes.shape == (30, 4) and visible.all() and key_frame == 0
        frame = video.get_frame(17)
    assert int(frame[0, 0, 0]) == 17 * 7
    assert reads == ["00000.png", "00017.png"]  # the first (frame size) and the one asked for


def test_sparse_frame_ids_in_a_frame_folder_are_read_lazily(tmp_path: Path, reads: list[str]) -> None:
    write_frames(tmp_path / "vid", 30)
    sample = RefSample("r1", video="vid", base_dir=tmp_path, **track_of([3, 11, 26]))
    with open_media(entry(sample, tmp_path)) as video:
        assert isinstance(video, VideoReader) and video.num_frames == 30
        boxes, visible, key_frame = record_track(entry(sample, tmp_path), video, tracker=None)
        assert visible.nonzero()[0].tolist() == [3, 11, 26] and key_frame == 3
        assert np.isnan(boxes[4]).all()
    assert reads == ["00000.png"]  # only the frame size was read; no frame of the record was decoded


def test_read_record_frames_decodes_only_the_clip(tmp_path: Path, reads: list[str]) -> None:
    names = write_frames(tmp_path / "vid", 12)
    sample = RefSample("r2", frame_paths=[f"vid/{n}" for n in names], base_dir=tmp_path, **track_of(list(range(12))))
    frames = read_record_frames(sample, [8, 9, 10])
    assert frames.shape == (3, H, W, 3)
    assert [int(f[0, 0, 0]) for f in frames] == [56, 63, 70]
    assert reads == ["00008.png", "00009.png", "00010.png"]


def test_read_record_frames_names_the_record_and_the_missing_image(tmp_path: Path) -> None:
    names = write_frames(tmp_path / "vid", 4)
    (tmp_path / "vid" / names[2]).unlink()
    sample = RefSample("r3", frame_paths=[f"vid/{n}" for n in names], base_dir=tmp_path, **track_of(list(range(4))))
    with pytest.raises(VideoError, match=r"record r3: image .*00002\.png \(frame 1 of .*\) does not exist"):
        read_record_frames(sample, [1, 2])
