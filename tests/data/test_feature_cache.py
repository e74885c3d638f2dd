"""The vision-feature cache: same losses and logits as the raw videos, resume, shards, a mismatched model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from artemis import ArtemisModel
from artemis.cli import data as data_cli
from artemis.data import read
from artemis.data.cache import FeatureCache, build_cache
from artemis.data.collator import ArtemisCollator
from artemis.data.entries import load_entries
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import CheckpointError, ConfigError
from artemis.model import build_tiny_model
from artemis.model.features import VisionFeatureExtractor


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SynthRefConfig(width=64, height=48, num_frames=12)
    return generate_split(tmp_path_factory.mktemp("synthref"), 4, seed=5, config=config).split_dir


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


@pytest.fixture(scope="module")
def feature_cache(files, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features")
    argv = ["data", "cache", "--model", str(model_dir), "--out", str(out), "--tracker", "none", "--features"]
    assert main([*argv, "--feature-batch-size", "5", *(a for f, p in files for a in ("--data", f"{f}:{p}"))]) == 0
    return out


def main(argv: list[str]) -> int:
    """``artemis data ...`` alone (the other sub-commands are not needed here)."""
    parser = argparse.ArgumentParser(prog="artemis")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _settings(dataset: ReferringDataset, extractor: VisionFeatureExtractor, dtype: str = "float32"):
    return dataset.cache_settings().with_features(extractor.config, extractor.fingerprint, dtype)


def test_features_cache_gives_the_same_losses_and_logits_as_the_videos(files, tiny, feature_cache: Path) -> None:
    model, processor = tiny
    raw = ReferringDataset.from_files(files, processor, model.config, seed=3)
    cached = ReferringDataset.from_files(files, processor, model.config, seed=3, cache_dir=feature_cache, model=model)
    assert cached.features and len(raw) == len(cached)
    assert {e.kind for e in raw.entries} == {"referring", "video"}
    collate = ArtemisCollator(processor, model.config)
    for epoch in range(2):
        raw.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(raw)):
            x, y = raw[index], cached[index]
            assert "pixel_values" in x and "pixel_values" not in y and "video_features" in y
            same = set(x) - {"pixel_values", "frame_mask", "region_pixel_values"}
            assert same == set(y) - {"video_features", "region_hidden_states"}
            for name in same:  # text, boxes, visibility and times: the same jitter draw
                assert torch.equal(x[name].nan_to_num(-9.0), y[name].nan_to_num(-9.0)), (epoch, index, name)
            with torch.no_grad():
                expected, actual = model(**collate([x])), model(**collate([y]))
            torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-5)
            torch.testing.assert_close(actual.loss, expected.loss, rtol=0, atol=1e-5)
    # A mixed batch (referring and video-only samples) too.
    rows = list(range(len(raw)))
    with torch.no_grad():
        expected = model(**collate([raw[i] for i in rows])).logits
        batch = collate([cached[i] for i in rows])
        assert batch["video_feature_mask"].all() and len(batch["region_hidden_states"]) == 3
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=1e-5)


def test_features_cache_serves_jittered_key_frames(files, tiny, feature_cache: Path) -> None:
    """Every visible frame can become the key frame, so the cache must hold it: same items as the videos."""
    model, processor = tiny
    options = {"seed": 4, "key_frame_jitter": 1.0}
    raw = ReferringDataset.from_files(files, processor, model.config, **options)
    options.update(cache_dir=feature_cache, model=model)
    cached = ReferringDataset.from_files(files, processor, model.config, **options)
    collate = ArtemisCollator(processor, model.config)
    referring = [i for i in range(len(raw)) if raw.entry(i).kind == "referring"]
    for index in referring:
        x, y = raw[index], cached[index]
        for name in ("input_ids", "region_boxes", "region_visible", "region_times"):
            assert torch.equal(x[name].nan_to_num(-9.0), y[name].nan_to_num(-9.0)), (index, name)
        with torch.no_grad():
            expected, actual = model(**collate([x])), model(**collate([y]))
        torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-5)


def test_features_cache_holds_features_and_no_frames(files, tiny, feature_cache: Path) -> None:
    model, _ = tiny
    cache = FeatureCache(feature_cache)
    settings = cache.settings
    assert settings.features and settings.feature_dtype == "float32"
    assert settings.region_feature_layers == model.config.region_feature_layers
    assert settings.video_layout == getattr(model.config, "video_layout", "pooled")
    entries, _ = load_entries(files)
    referring = next(e for e in entries if e.kind == "referring")
    video = cache.video(referring)
    assert video.video_features.shape == (model.config.num_video_tokens, 32)
    with pytest.raises(Exception, match="features cache, which holds vision features instead of frames"):
        video.get_frames([0])


def test_half_precision_features_are_half_the_size(files, tiny, model_dir: Path, feature_cache: Path, tmp_path) -> None:
    model, processor = tiny
    entries, _ = load_entries(files)
    extractor = VisionFeatureExtractor.from_pretrained(model_dir)
    settings = _settings(ReferringDataset(entries, processor, model.config), extractor, "float16")
    build_cache(entries, tmp_path, settings, extractor=extractor)

    def size(root: Path) -> int:
        return sum(path.stat().st_size for path in (root / "data").glob("*.safetensors"))

    assert size(tmp_path) < 0.6 * size(feature_cache)
    raw = ReferringDataset(entries, processor, model.config, seed=1)
    half = ReferringDataset(entries, processor, model.config, seed=1, cache_dir=tmp_path, model=model)
    item = half[0]
    assert item["video_features"].dtype == torch.float16
    collate = ArtemisCollator(processor, model.config)
    with torch.no_grad():
        expected, actual = model(**collate([raw[0]])), model(**collate([item]))
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-2)


class Killed(Exception):
    pass


def test_resume_after_a_kill(files, tiny, model_dir: Path, tmp_path: Path) -> None:
    model, processor = tiny
    entries, _ = load_entries(files)
    extractor = VisionFeatureExtractor.from_pretrained(model_dir)
    settings = _settings(ReferringDataset(entries, processor, model.config), extractor)
    finished = []

    def kill_after_two(records: int) -> None:
        finished.append(records)
        if len(finished) == 2:
            raise Killed

    with pytest.raises(Killed):
        build_cache(entries, tmp_path, settings, on_video_done=kill_after_two, extractor=extractor)
    first = {path: path.stat().st_mtime_ns for path in (tmp_path / "data").glob("*.safetensors")}
    assert len(first) == 2
    summary = build_cache(entries, tmp_path, settings, extractor=extractor)
    assert (summary.videos_already_done, summary.videos_written) == (2, 2)
    assert {path: path.stat().st_mtime_ns for path in first} == first  # untouched
    raw = ReferringDataset(entries, processor, model.config, seed=2)
    cached = ReferringDataset(entries, processor, model.config, seed=2, cache_dir=tmp_path, model=model)
    collate = ArtemisCollator(processor, model.config)
    with torch.no_grad():
        for index in range(len(raw)):
            expected, actual = model(**collate([raw[index]])).logits, model(**collate([cached[index]])).logits
            torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


def test_shards_under_torchrun_split_the_videos(files, tiny, model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    model, processor = tiny
    entries, _ = load_entries(files)
    out = tmp_path / "cache"
    videos = []
    for rank in range(2):  # two processes sharing one --out, told their share by torchrun's variables
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        argv = ["data", "cache", "--model", str(model_dir), "--out", str(out), "--tracker", "none", "--features"]
        assert main([*argv, *(a for f, p in files for a in ("--data", f"{f}:{p}"))]) == 0
        manifest = out / f"manifest-{rank:05d}-of-00002.jsonl"
        videos.append({json.loads(line)["group"] for line in manifest.read_text().splitlines()})
    assert len(videos[0]) == len(videos[1]) == 2 and not videos[0] & videos[1]
    cache = FeatureCache(out)
    assert all(entry.key in cache for entry in entries)
    cached = ReferringDataset(entries, processor, model.config, cache_dir=out, model=model)
    assert "video_features" in cached[0]


def test_a_model_with_other_vision_weights_is_refused(files, tiny, feature_cache: Path, tmp_path: Path) -> None:
    model, processor = tiny
    other, _ = build_tiny_model([], seed=7)
    with pytest.raises(
        ConfigError, match=r"another vision tower .* rebuild the cache with `artemis data cache --features"
    ):
        ReferringDataset.from_files(files, processor, model.config, cache_dir=feature_cache, model=other)
    with pytest.raises(ConfigError, match="holds vision features, so the dataset needs the model"):
        ReferringDataset.from_files(files, processor, model.config, cache_dir=feature_cache)
    # Building into the same directory with another model's tower is refused too.
    entries, _ = load_entries(files)
    extractor = VisionFeatureExtractor(other)
    settings = _settings(ReferringDataset(entries, processor, model.config), extractor)
    with pytest.raises(ConfigError, match="another vision tower"):
        build_cache(entries, feature_cache, settings, extractor=extractor)
    # Settings that name one tower with an extractor of another.
    with pytest.raises(ConfigError, match="another vision tower"):
        build_cache(entries, tmp_path, FeatureCache(feature_cache).settings, extractor=extractor)
    with pytest.raises(ConfigError, match="no extractor was given"):
        build_cache(entries, tmp_path, FeatureCache(feature_cache).settings)


def test_features_need_the_weights_not_only_the_config(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"no vision_tower weights .* not only its config\.json"):
        VisionFeatureExtractor.from_pretrained(tmp_path)


def test_thinned_candidates_repeat_frames_as_the_videos_do(files, tiny, model_dir: Path, tmp_path: Path) -> None:
    model, processor = tiny
    entries, _ = load_entries(files[:1])
    raw = ReferringDataset(entries, processor, model.config, max_region_candidates=3, seed=9)
    extractor = VisionFeatureExtractor.from_pretrained(model_dir)
    build_cache(entries, tmp_path, _settings(raw, extractor), extractor=extractor)
    cached = ReferringDataset(
        entries, processor, model.config, max_region_candidates=3, seed=9, cache_dir=tmp_path, model=model
    )
    collate = ArtemisCollator(processor, model.config)
    times = raw[0]["region_times"]
    assert len(set(times.tolist())) < len(times)  # 6 tracked frames from 3 candidates: some repeat
    with torch.no_grad():
        for index in range(len(raw)):
            expected, actual = model(**collate([raw[index]])).logits, model(**collate([cached[index]])).logits
            torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


def test_cache_built_from_a_relative_path_serves_an_absolute_one(tmp_path, monkeypatch):
    """`artemis data cache` run with a relative annotation path serves a dataset given the absolute path."""
    from artemis.model.tiny import build_tiny_model

    generate_split(tmp_path, 2, seed=3, split="train", config=SynthRefConfig(width=64, height=64, num_frames=12))
    model, processor = build_tiny_model(["a"], seed=0)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    from artemis.cli import main

    relative = "videoref45k:train/videoref45k.json"
    assert main(["data", "cache", "--data", relative, "--model", "model", "--out", "cache", "--tracker", "none"]) == 0
    files = [("videoref45k", tmp_path / "train" / "videoref45k.json")]
    cached = ReferringDataset.from_files(files, processor, model.config, cache_dir=tmp_path / "cache")
    raw = ReferringDataset.from_files(files, processor, model.config)
    for index in range(len(raw)):
        for name, value in raw[index].items():
            assert torch.equal(cached[index][name], value), name
