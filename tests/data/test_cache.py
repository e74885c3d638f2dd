"""The frame/track cache: same tensors as the raw videos, tracking, resume after a kill, sharding, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from artemis import ArtemisModel
from artemis.cli import main
from artemis.data import read
from artemis.data.cache import FeatureCache, build_cache, group_entries
from artemis.data.entries import load_entries
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import AnnotationError, ConfigError
from artemis.model import build_tiny_model


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SynthRefConfig(width=64, height=48, num_frames=12)
    return generate_split(tmp_path_factory.mktemp("synthref"), 5, seed=11, config=config).split_dir


@pytest.fixture(scope="module")
def files(split: Path) -> list[tuple[str, Path]]:
    return [("videoref45k", split / "videoref45k.json"), ("llava", split / "llava_stage1.json")]


@pytest.fixture(scope="module")
def tiny(files):
    texts = [s.caption for s in read(*files[0])] + [t["value"] for s in read(*files[1]) for t in s.conversations]
    return build_tiny_model(texts, seed=0)


@pytest.fixture(scope="module")
def model_dir(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-model")
    ArtemisModel(*tiny).save_pretrained(directory)
    return directory


def _assert_same_items(a: ReferringDataset, b: ReferringDataset, epochs: int = 2) -> None:
    assert len(a) == len(b)
    for epoch in range(epochs):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for index in range(len(a)):
            x, y = a[index], b[index]
            assert x.keys() == y.keys()
            for name in x:  # bit-identical, NaN padding included
                assert torch.equal(x[name].nan_to_num(-9.0), y[name].nan_to_num(-9.0)), (epoch, index, name)


def test_cli_cache_gives_the_same_tensors_as_the_videos(files, tiny, model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cache"
    argv = ["data", "cache", "--model", str(model_dir), "--out", str(out)]
    assert main([*argv, *(a for fmt, path in files for a in ("--data", f"{fmt}:{path}"))]) == 0
    assert "cached 5 videos" in capsys.readouterr().out
    assert len(list((out / "data").glob("*.safetensors"))) == 5  # one file per video, shared by its records
    model, processor = tiny
    raw = ReferringDataset.from_files(files, processor, model.config, seed=4, tracker="opencv-csrt")
    cached = ReferringDataset.from_files(files, processor, model.config, seed=4, cache_dir=out)
    assert len(FeatureCache(out)) == len(raw.entries)
    _assert_same_items(raw, cached)


def test_cache_tracks_records_annotated_on_one_frame(split: Path, tiny, tmp_path: Path) -> None:
    records = json.loads((split / "videoref45k.json").read_text())[:3]
    for record in records:  # keep only the key frame's box: the rest must come from the tracker
        record["frame_path"] = str(split / record["frame_path"])
        record["track_list"] = [record["key_frame_box"]]
        record["frame_id"] = [record["key_frame_id"]]
    path = tmp_path / "key_only.json"
    path.write_text(json.dumps(records))
    model, processor = tiny
    raw = ReferringDataset.from_files([("videoref45k", path)], processor, model.config, tracker="opencv-csrt")
    build_cache(raw.entries, tmp_path / "cache", raw.cache_settings())
    cached = ReferringDataset.from_files([("videoref45k", path)], processor, model.config, cache_dir=tmp_path / "cache")
    _assert_same_items(raw, cached, epochs=1)
    tracked = cached.cache.video(cached.entries[0]).track
    assert tracked[1].sum() > 1  # visible beyond the key frame
    # Without a tracker only the key frame is known, so every region frame is the key frame.
    untracked = ReferringDataset.from_files([("videoref45k", path)], processor, model.config)
    assert (untracked[0]["region_times"] == untracked[0]["region_times"][0]).all()


def test_thinned_region_candidates_match_too(files, tiny, tmp_path: Path) -> None:
    model, processor = tiny
    raw = ReferringDataset.from_files(files, processor, model.config, max_region_candidates=3)
    build_cache(raw.entries, tmp_path / "cache", raw.cache_settings())
    cached = ReferringDataset.from_files(
        files, processor, model.config, max_region_candidates=3, cache_dir=tmp_path / "cache"
    )
    _assert_same_items(raw, cached)
    # Fewer frames are stored than with every visible frame (12 per video here).
    stored = [len(cached.cache.video(e)._rows) for e in cached.entries if e.kind == "referring"]
    assert max(stored) < 12


def _digest(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


class Killed(Exception):
    pass


def test_resume_after_a_kill_redoes_only_unfinished_videos(files, tiny, tmp_path: Path) -> None:
    model, processor = tiny
    entries, _ = load_entries(files)
    settings = ReferringDataset(entries, processor, model.config).cache_settings()
    out = tmp_path / "cache"
    finished = []

    def kill_after_two(records: int) -> None:
        finished.append(records)
        if len(finished) == 2:
            raise Killed

    with pytest.raises(Killed):
        build_cache(entries, out, settings, on_video_done=kill_after_two)
    first_files = sorted((out / "data").glob("*.safetensors"))
    assert len(first_files) == 2
    before = {path: _digest(path) for path in first_files}
    manifest = next(out.glob("manifest-*.jsonl"))
    with manifest.open("a") as handle:  # a kill in the middle of appending a manifest line
        handle.write('{"group": "torn')
    assert len(FeatureCache(out)) == sum(finished)  # the torn line is ignored

    summary = build_cache(entries, out, settings)
    assert (summary.videos_already_done, summary.videos_written) == (2, 3)
    assert {path: _digest(path) for path in first_files} == before  # untouched
    cache = FeatureCache(out)
    assert all(entry.key in cache for entry in entries)
    again = build_cache(entries, out, settings)
    assert (again.videos_already_done, again.videos_written) == (5, 0)


def test_shards_split_the_records_disjointly(files, tiny, tmp_path: Path, monkeypatch) -> None:
    model, processor = tiny
    entries, _ = load_entries(files)
    settings = ReferringDataset(entries, processor, model.config).cache_settings()
    keys = []
    for rank in range(2):
        out = tmp_path / f"shard{rank}"
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        summary = build_cache(entries, out, settings)  # torchrun's variables pick the shard
        assert (summary.shard_index, summary.num_shards) == (rank, 2)
        keys.append({k for k in (e.key for e in entries) if k in FeatureCache(out)})
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    assert keys[0] | keys[1] == {e.key for e in entries}
    # Records of one video never straddle shards (they share its file).
    assert sum(len(g) for _, g in group_entries(entries)) == len(entries)


def test_mismatched_or_stale_cache_is_an_error(files, tiny, tmp_path: Path) -> None:
    model, processor = tiny
    records = json.loads(files[0][1].read_text())
    for record in records:
        record["frame_path"] = str(files[0][1].parent / record["frame_path"])
    annotations = tmp_path / "refs.json"
    annotations.write_text(json.dumps(records))
    source = [("videoref45k", annotations)]
    raw = ReferringDataset.from_files(source, processor, model.config)
    build_cache(raw.entries, tmp_path / "cache", raw.cache_settings())
    with pytest.raises(ConfigError, match="max_region_candidates: cache None, dataset 4"):
        ReferringDataset.from_files(
            source, processor, model.config, max_region_candidates=4, cache_dir=tmp_path / "cache"
        )
    # The annotation changes after the cache was built: its record no longer matches the cached track.
    records[0]["key_frame_box"] = [1, 1, 5, 5]
    records[0]["track_list"][records[0]["frame_id"].index(records[0]["key_frame_id"])] = [1, 1, 5, 5]
    annotations.write_text(json.dumps(records))
    stale = ReferringDataset.from_files(source, processor, model.config, cache_dir=tmp_path / "cache")
    stale[1]
    with pytest.raises(AnnotationError, match=r"refs\.json: record 0: changed since the cache .* was built"):
        stale[0]
    # Rebuilding re-caches the changed video only; the dataset then finds the new version.
    assert build_cache(stale.entries, tmp_path / "cache", stale.cache_settings()).videos_written == 1
    fresh = ReferringDataset.from_files(source, processor, model.config, cache_dir=tmp_path / "cache")
    _assert_same_items(ReferringDataset.from_files(source, processor, model.config), fresh, epochs=1)
