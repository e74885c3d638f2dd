"""``video_layout="frames"``: per-frame pooled video tokens (for Elysium box output)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from artemis import ArtemisModel
from artemis.errors import ConfigError
from artemis.model import ArtemisConfig, build_tiny_model, tiny_config


def test_token_counts_and_validation() -> None:
    pooled = tiny_config()
    assert pooled.video_layout == "pooled" and pooled.num_video_tokens == 8 + 8 * 8
    frames = tiny_config(video_layout="frames", frame_pool_size=4)
    assert frames.num_video_tokens == 8 * 16 and frames.tokens_per_frame == 16
    assert tiny_config(video_layout="frames", frame_pool_size=8, num_frames=3).num_video_tokens == 3 * 64
    with pytest.raises(ConfigError, match="video_layout='tubes'"):
        tiny_config(video_layout="tubes")
    with pytest.raises(ConfigError, match="frame_pool_size=9 must be between 1 and the patch grid's side 8"):
        tiny_config(video_layout="frames", frame_pool_size=9)
    # The published default keeps the Artemis layout: 100 temporal + 256 spatial tokens.
    assert ArtemisConfig().num_video_tokens == 356


def test_frame_tokens_pool_each_frame_in_order() -> None:
    model, _ = build_tiny_model(seed=0, video_layout="frames", frame_pool_size=4)
    batch, frames, side, channels = 2, 3, 8, 32
    patches = torch.randn(batch, frames, side * side, channels)  # (B, T, P, C)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    pooled = model.pool_video_features(patches, mask)  # (B, N_t * 16, C)
    assert pooled.shape == (batch, 8 * 16, channels)
    # Token (t, i, j) is the mean of the 2x2 patch block (2i..2i+1, 2j..2j+1) of frame t.
    grid = patches.reshape(batch, frames, side, side, channels)
    blocks = grid.reshape(batch, frames, 4, 2, 4, 2, channels).mean(dim=(3, 5)).reshape(batch, frames, 16, channels)
    per_frame = pooled.reshape(batch, 8, 16, channels)
    torch.testing.assert_close(per_frame[0, :3], blocks[0])
    torch.testing.assert_close(per_frame[1, :2], blocks[1, :2])
    # The padding frame and the frames past T are zero features.
    assert per_frame[1, 2:].abs().sum() == 0 and per_frame[0, 3:].abs().sum() == 0
    tokens = model.video_tokens(patches, mask)
    assert tokens.shape == (batch, 8 * 16, model.config.text_config.hidden_size)


def test_a_frame_changes_only_its_own_tokens() -> None:
    model, _ = build_tiny_model(seed=0, video_layout="frames", frame_pool_size=2)
    pixels = torch.randn(1, 5, 3, 32, 32)
    with torch.no_grad():
        before, _ = model.get_multimodal_features(pixels, torch.ones(1, 5, dtype=torch.bool))
        changed = pixels.clone()
        changed[0, 3] = torch.randn(3, 32, 32)
        after, _ = model.get_multimodal_features(changed, torch.ones(1, 5, dtype=torch.bool))
    assert before.shape == (8 * 4, 64)
    differs = (before - after).abs().sum(-1).reshape(8, 4).sum(-1) > 0  # per frame
    assert differs.tolist() == [False, False, False, True, False, False, False, False]


def test_save_load_round_trip_and_generation(tmp_path: Path) -> None:
    model, processor = build_tiny_model(
        ["the red circle"], seed=1, video_layout="frames", frame_pool_size=4, tasks=["describe", "boxes"]
    )
    assert processor.num_video_tokens == 128
    ArtemisModel(model, processor).save_pretrained(tmp_path)
    loaded = ArtemisModel.from_pretrained(tmp_path)
    assert loaded.config.video_layout == "frames" and loaded.config.frame_pool_size == 4
    assert loaded.processor.num_video_tokens == 128

    clip = np.random.default_rng(1).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    inputs = processor(clip, task="sot", box=(3.2, 6.4, 9.6, 12.8))
    ids = inputs["input_ids"]
    assert int((ids == model.config.video_token_id).sum()) == 128  # 6 frames + 2 padding frames
    assert "coordinates [ 10, 20, 30, 40 ] in Frame 1" in processor.decode(ids[0])
    pixels, mask = inputs["pixel_values"], inputs["frame_mask"]
    assert pixels.shape == (1, 6, 3, 32, 32) and mask.all()
    with torch.no_grad():
        expected = model(input_ids=ids, pixel_values=pixels, frame_mask=mask).logits
        actual = loaded.model(input_ids=ids, pixel_values=pixels, frame_mask=mask).logits
    torch.testing.assert_close(actual, expected)

    frames = np.random.default_rng(0).integers(0, 255, (10, 24, 40, 3), dtype=np.uint8)
    track = loaded.track_with_llm(frames, box=(4, 4, 20, 16), max_new_tokens=12)
    assert track.num_frames == 10 and len(track.texts) == 2 and all(isinstance(t, str) for t in track.texts)
    np.testing.assert_array_equal(track.boxes[0], [4, 4, 20, 16])
