"""The readers take records in the exact shape the original Artemis training code reads.

The shapes come from qiujihao19/Artemis ``artemis/train/train.py``: ``LazyReferringSupervisedDataset`` reads
every ``*.json`` of a folder, joins ``frame_path`` and each ``frame_id`` (a file name) into an image path,
takes the key frame from ``key_frame_id`` (a file name) unless ``key_frame_box`` or ``key_frame_id`` is
empty, and reads the video's precomputed features from ``clip_path`` (a pickle);
``LazySupervisedDataset`` reads ``image`` and, for a ``video`` record, the pickle ``video_clip``, every path
relative to the data root.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artemis.data.cache import CacheSettings, FeatureCache, build_cache
from artemis.data.entries import load_entries
from artemis.data.formats import videoref45k
from artemis.data.media import open_media, record_track
from artemis.errors import AnnotationError
from artemis.model.features import VisionFeatureExtractor, vision_fingerprint
from artemis.model.tiny import build_tiny_model

WIDTH, HEIGHT = 64, 48


def _frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 20 * i, dtype=np.uint8)).save(folder / name)


def _record(**changes: object) -> dict:
    """One record as the release writes it: string frame ids, the key frame a file name, a clip pickle."""
    record = {
        "video_name": "v1",
        "caption": "A man in red walks to the left.",
        "track_list": [[4, 5, 30, 40], [], [6, 7, 32, 41], [8, 9, 33, 42]],
        "frame_path": "frames/v1",
        "frame_id": ["00010.jpg", "00020.jpg", "00030.jpg", "00040.jpg"],
        "key_frame_box": [5, 6, 31, 40],
        "key_frame_id": "00025.jpg",
        "clip_path": "clips/v1.pkl",
    }
    record.update(changes)
    return record


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A data root: a folder of VideoRef45K JSON files and the frame folders they name."""
    _frames(tmp_path / "frames/v1", ["00010.jpg", "00020.jpg", "00025.jpg", "00030.jpg", "00040.jpg"])
    (tmp_path / "a.json").write_text(json.dumps([_record()]))
    no_key = _record(key_frame_box=[], key_frame_id="", question="What does <region> do?")
    (tmp_path / "b.json").write_text(json.dumps([no_key]))
    (tmp_path / "notes.txt").write_text("not a record file")
    return tmp_path


def test_videoref45k_folder_of_release_records(release: Path) -> None:
    samples = videoref45k.read(release)  # the folder: a.json then b.json, notes.txt ignored
    assert len(samples) == 2
    given, drawn = samples
    # The key frame's image is not one of frame_id: it joins the frames in name order, with its box.
    assert [Path(p).name for p in given.frame_paths] == [
        "00010.jpg",
        "00020.jpg",
        "00025.jpg",
        "00030.jpg",
        "00040.jpg",
    ]
    assert given.frame_ids == [0, 1, 2, 3, 4] and given.key_frame_id == 2
    assert given.boxes[2] == (5.0, 6.0, 31.0, 40.0) and given.visible == [True, False, True, True, True]
    assert given.metadata["clip_path"] == "clips/v1.pkl"
    # No key frame given: one of the frames with a box, the same on every read.
    assert drawn.key_frame_id in (0, 2, 3) and drawn.visible[drawn.key_frame_id]
    assert videoref45k.read(release)[1].key_frame_id == drawn.key_frame_id
    assert len(drawn.frame_paths) == 4 and drawn.question == "What does <region> do?"


def test_videoref45k_release_frames_open_and_track(release: Path) -> None:
    entries, _ = load_entries([("videoref45k", str(release))])
    entry = entries[0]
    with open_media(entry) as reader:  # the images frame_path/frame_id, resolved against the data root
        assert reader.num_frames == 5 and (reader.width, reader.height) == (WIDTH, HEIGHT)
        frame = reader.get_frames([2])[0]
        assert int(frame.mean()) == 40  # the third image in name order is the key frame 00025.jpg
        boxes, visible, key_frame = record_track(entry, reader, None)
    assert key_frame == 2 and visible.tolist() == [True, False, True, True, True]
    np.testing.assert_array_equal(boxes[3], [6, 7, 32, 41])


def test_videoref45k_release_record_round_trip(release: Path, tmp_path: Path) -> None:
    sample = videoref45k.read(release / "a.json")[0]
    out = release / "copy.json"
    videoref45k.write([sample], out)
    record = json.loads(out.read_text())[0]
    assert record["frame_id"] == ["00010.jpg", "00020.jpg", "00025.jpg", "00030.jpg", "00040.jpg"]
    assert record["key_frame_id"] == "00025.jpg" and record["frame_path"] == "frames/v1"
    assert record["clip_path"] == "clips/v1.pkl"


def test_videoref45k_mixed_frame_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([_record(frame_id=["00010.jpg", 20, "00030.jpg", "00040.jpg"])]))
    with pytest.raises(AnnotationError, match="frame_id"):
        videoref45k.read(path)


def test_llava_video_clip_pickle_fills_a_features_cache(tmp_path: Path) -> None:
    model, _ = build_tiny_model(["a dog runs on grass", "a cat"], seed=0)
    config = model.config
    # The original's stage 1-2 records: an image, and a video read through its precomputed features.
    _frames(tmp_path / "images", ["cat.png"])
    features = np.random.default_rng(0).normal(size=(config.num_video_tokens, config.vision_config.hidden_size))
    (tmp_path / "clips").mkdir()
    with open(tmp_path / "clips/dog.pkl", "wb") as handle:
        pickle.dump(features.astype(np.float16), handle)
    records = [
        {"id": 0, "image": "images/cat.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "a cat"}]},
        {"id": 1, "video": "videos/dog.mp4", "video_clip": "clips/dog.pkl", "conversations": [
            {"from": "human", "value": "<video>\nDescribe it."}, {"from": "gpt", "value": "a dog runs on grass"}]},
    ]  # fmt: skip
    (tmp_path / "llava.json").write_text(json.dumps(records))
    entries, _ = load_entries([("llava", str(tmp_path / "llava.json"))])
    assert entries[1].sample.metadata == {"video_clip": "clips/dog.pkl"}
    extractor = VisionFeatureExtractor(model.eval())
    settings = CacheSettings(
        image_size=config.vision_config.image_size, num_frames=config.num_frames, tracker=None
    ).with_features(config, vision_fingerprint(model.vision_tower))
    build_cache(entries, tmp_path / "cache", settings, extractor=extractor)  # videos/dog.mp4 does not exist
    cache = FeatureCache(tmp_path / "cache")
    video = cache.video(entries[1]).video_features
    torch.testing.assert_close(video, torch.from_numpy(features.astype(np.float16).astype(np.float32)))
    image = cache.video(entries[0]).video_features  # computed by the vision tower
    assert image.shape == video.shape and not torch.equal(image, video)


def test_llava_video_clip_of_another_shape_is_refused(tmp_path: Path) -> None:
    model, _ = build_tiny_model(["a dog"], seed=0)
    (tmp_path / "dog.pkl").write_bytes(pickle.dumps(np.zeros((356, 1024), dtype=np.float16)))
    record = {"id": 1, "video": "dog.mp4", "video_clip": "dog.pkl", "conversations": [
        {"from": "human", "value": "<video>\nDescribe it."}, {"from": "gpt", "value": "a dog"}]}  # fmt: skip
    (tmp_path / "llava.json").write_text(json.dumps([record]))
    entries, _ = load_entries([("llava", str(tmp_path / "llava.json"))])
    config = model.config
    settings = CacheSettings(image_size=config.vision_config.image_size, num_frames=config.num_frames).with_features(
        config, vision_fingerprint(model.vision_tower)
    )
    with pytest.raises(AnnotationError, match=r"\(356, 1024\)"):
        build_cache(entries, tmp_path / "cache", settings, extractor=VisionFeatureExtractor(model.eval()))
