"""Images as their patch tokens (``image_tokens="patches"``, the original Artemis): the prompt, the tokens
the model scatters, a batch mixing an image and a video that trains, and what is refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from artemis import ArtemisModel
from artemis.cli import data as data_cli
from artemis.data import read
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.configuration import tiny_config
from artemis.model.processing import ArtemisProcessor

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two SynthRef videos (their LLaVA video conversations) and one LLaVA image record."""
    root = tmp_path_factory.mktemp("synthref-images")
    split_dir = generate_split(root, 2, seed=5, split="train", config=CONFIG).split_dir
    image = np.zeros((40, 56, 3), dtype=np.uint8)
    image[10:30, 20:40] = (0, 0, 255)  # BGR: a red square
    cv2.imwrite(str(split_dir / "red.png"), image)
    record = {
        "id": "img0",
        "image": "red.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the square?"},
            {"from": "gpt", "value": "It is red."},
        ],
    }
    (split_dir / "llava_image.json").write_text(json.dumps([record]))
    return split_dir


def _texts(split: Path) -> list[str]:
    return [turn["value"] for name in ("llava_stage2.json", "llava_image.json") for s in read("llava", split / name)
            for turn in s.conversations]  # fmt: skip


def _dataset(split: Path, model, processor) -> ReferringDataset:
    files = [("llava", split / "llava_stage2.json"), ("llava", split / "llava_image.json")]
    return ReferringDataset.from_files(files, processor, model.config)


@pytest.fixture(scope="module")
def patches(split: Path):
    return build_tiny_model(_texts(split), seed=0, image_tokens="patches")


@pytest.fixture(scope="module")
def video_mode(split: Path):
    return build_tiny_model(_texts(split), seed=0)


def _items(dataset: ReferringDataset) -> tuple[dict, dict]:
    kinds = [entry.kind for entry in dataset.entries]
    return dataset[kinds.index("image")], dataset[kinds.index("video")]


def test_config_sizes_and_validation() -> None:
    assert tiny_config().image_tokens == "video" and tiny_config().num_image_tokens == 8 + 64
    assert tiny_config(image_tokens="patches").num_image_tokens == 64  # an 8x8 patch grid
    with pytest.raises(ConfigError, match=r"image_tokens='frames'.*video, patches"):
        tiny_config(image_tokens="frames")


def test_image_item_has_one_token_per_patch_and_video_item_is_unchanged(split: Path, patches, video_mode) -> None:
    model, processor = patches
    image, video = _items(_dataset(split, model, processor))
    video_id = model.config.video_token_id
    assert int((image["input_ids"] == video_id).sum()) == model.config.patches_per_side**2 == 64
    assert bool(image["image_mask"]) and image["pixel_values"].shape == (1, 3, 32, 32)
    # A video sample is the same item as under image_tokens="video" (the model of every earlier release).
    old_image, old_video = _items(_dataset(split, *video_mode))
    assert "image_mask" not in video and "image_mask" not in old_image
    assert int((old_image["input_ids"] == video_id).sum()) == model.config.num_video_tokens == 72
    assert set(video) == set(old_video)
    for key in video:
        assert torch.equal(video[key], old_video[key]), key


def _expected_image_tokens(model, frame: torch.Tensor) -> torch.Tensor:
    """The original's ``encode_images``: the tower's patch features at the chosen layer, projected."""
    with torch.no_grad():
        states = model.vision_tower(pixel_values=frame[None], output_hidden_states=True).hidden_states
        return model.mm_projector(states[model.config.vision_feature_layer][0, 1:])  # (P, D)


def test_image_tokens_are_the_projected_patches_in_a_mixed_batch(split: Path, patches) -> None:
    model, processor = patches
    image, video = _items(_dataset(split, model, processor))
    batch = processor.collate([video, image])
    assert batch["image_mask"].tolist() == [False, True]
    with torch.no_grad():
        tokens, _ = model.get_multimodal_features(
            pixel_values=batch["pixel_values"], frame_mask=batch["frame_mask"], image_mask=batch["image_mask"]
        )
        alone = model.video_tokens(  # the video on its own, as before images had a layout of their own
            model._vision_hidden_states(video["pixel_values"], [-2])[-2][None], video["frame_mask"][None]
        )[0]
    n_video = model.config.num_video_tokens
    assert tokens.shape == (n_video + 64, model.config.text_config.hidden_size)
    torch.testing.assert_close(tokens[:n_video], alone)
    torch.testing.assert_close(tokens[n_video:], _expected_image_tokens(model, image["pixel_values"][0]))
    # From cached features (the pooled one-frame features a features cache stores) the tokens are the same.
    with torch.no_grad():
        patches_ = model._vision_hidden_states(batch["pixel_values"][1, :1], [-2])[-2]  # (1, P, C)
        cached = torch.stack([
            model.pool_video_features(model._vision_hidden_states(video["pixel_values"], [-2])[-2][None],
                                      video["frame_mask"][None])[0],
            model.pool_video_features(patches_[None], torch.ones(1, 1, dtype=torch.bool))[0],
        ])  # fmt: skip
        from_features, _ = model.get_multimodal_features(video_features=cached, image_mask=batch["image_mask"])
    torch.testing.assert_close(from_features, tokens)


def test_a_batch_of_an_image_and_a_video_trains(split: Path, patches) -> None:
    model, processor = patches
    image, video = _items(_dataset(split, model, processor))
    batch = processor.collate([image, video])
    model.train()
    try:
        output = model(**batch)
        output.loss.backward()
    finally:
        model.eval()
    assert torch.isfinite(output.loss)
    gradient = model.mm_projector.linear_1.weight.grad
    assert gradient is not None and torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    model.zero_grad()


def test_mismatches_are_refused(split: Path, patches, video_mode) -> None:
    model, processor = patches
    image, _ = _items(_dataset(split, model, processor))
    batch = processor.collate([image])
    old_model, _ = video_mode
    with pytest.raises(ValueError, match="image_tokens='video'"):
        old_model(**batch)
    wrong = ArtemisProcessor(processor.tokenizer, num_video_tokens=72, num_region_tokens=4, num_frames=8,
                             num_track_boxes=6, image_size=32)  # fmt: skip
    with pytest.raises(ConfigError, match="expands an image to 72 tokens"):
        _dataset(split, model, wrong)


def test_processor_saves_its_image_token_count(tmp_path: Path, patches) -> None:
    _, processor = patches
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["num_image_tokens"] == 64
    assert ArtemisProcessor.from_pretrained(tmp_path).num_image_tokens == 64


def _features_cache(split: Path, model, processor, out: Path) -> Path:
    """``artemis data cache --features`` over the videos and the image, for ``model``."""
    model_dir = out / "model"
    ArtemisModel(model, processor).save_pretrained(model_dir)
    parser = argparse.ArgumentParser(prog="artemis")
    data_cli.register(parser.add_subparsers(dest="command"))
    argv = ["data", "cache", "--model", str(model_dir), "--out", str(out / "cache"), "--tracker", "none", "--features"]
    for name in ("llava_stage2.json", "llava_image.json"):
        argv += ["--data", f"llava:{split / name}"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return out / "cache"


def test_a_features_cache_gives_the_same_image_tokens(split: Path, patches, tmp_path: Path) -> None:
    model, processor = patches
    cache = _features_cache(split, model, processor, tmp_path)
    files = [("llava", split / "llava_stage2.json"), ("llava", split / "llava_image.json")]
    cached = ReferringDataset.from_files(files, processor, model.config, cache_dir=cache, model=model)
    raw_batch = processor.collate(list(_items(_dataset(split, model, processor))))
    cached_batch = processor.collate(list(_items(cached)))
    assert torch.equal(cached_batch["input_ids"], raw_batch["input_ids"])
    with torch.no_grad():
        raw = model(**raw_batch).logits
        from_cache = model(**cached_batch).logits
    torch.testing.assert_close(from_cache, raw)


def test_a_frames_layout_features_cache_is_refused_for_image_patches(split: Path, tmp_path: Path) -> None:
    model, processor = build_tiny_model(_texts(split), seed=0, image_tokens="patches", video_layout="frames")
    cache = _features_cache(split, model, processor, tmp_path)
    files = [("llava", split / "llava_image.json")]
    with pytest.raises(ConfigError, match="lose an image's patches"):
        ReferringDataset.from_files(files, processor, model.config, cache_dir=cache, model=model)


def test_stages_1_and_2_train_with_image_patches_through_the_trainer(split: Path, tmp_path: Path) -> None:
    from artemis.model.configuration import ArtemisConfig
    from artemis.train import load_config, run_training

    files = [{"format": "llava", "path": str(split / name)} for name in ("llava_stage2.json", "llava_image.json")]
    vision = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 4, "projection_dim": 32}  # fmt: skip
    tiny = {"seed": 0, "vocab_from": [f"llava:{f['path']}" for f in files], "vision_config": vision}
    stages = {
        "pretrain": ({"tiny": {**tiny, "image_tokens": "patches"}}, {"projector": True, "llm": "frozen"}),
        "finetune": ({"base": str(tmp_path / "pretrain")}, {"projector": True, "llm": "full"}),
    }
    for stage, (model, trains) in stages.items():
        config = {
            "stage": stage, "model": model, "train": trains,
            "data": {"files": files, "max_length": 64, "media_counts_as_one": True},
            "training": {"output_dir": str(tmp_path / stage), "max_steps": 2, "per_device_train_batch_size": 3,
                         "learning_rate": 1e-3, "save_steps": 10, "seed": 0, "disable_tqdm": True},
        }  # fmt: skip
        (tmp_path / f"{stage}.yaml").write_text(json.dumps(config))  # JSON is YAML
        run_training(load_config(tmp_path / f"{stage}.yaml"))
    assert ArtemisConfig.from_pretrained(tmp_path / "finetune").num_image_tokens == 64
    assert ArtemisProcessor.from_pretrained(tmp_path / "finetune").num_image_tokens == 64
