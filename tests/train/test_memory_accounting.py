"""The vision pass keeps only the hidden states a batch uses, in the proportion TRAIN_AND_VALIDATE.md gives.

TRAIN_AND_VALIDATE.md (section 3) estimates the vision activations a stage 1-2 sample keeps as
``frames x patches x vision width x bytes``: one hidden state (``vision_feature_layer``) for its video
tokens, where keeping every hidden state cost ``num_hidden_layers + 1`` times as much. A referring
sample's region frames keep one more per region level. The tests measure the tensors that outlive the
vision pass on a tiny model and compare them with that formula.
"""

from __future__ import annotations

import torch

from artemis.model.tiny import build_tiny_model


def _kept_bytes(model: torch.nn.Module, **inputs: torch.Tensor) -> tuple[int, list[int]]:
    """Bytes of the hidden states the vision pass hands back, and the layers they are, over one forward."""
    kept: list[dict[int, torch.Tensor]] = []
    original = model._vision_hidden_states

    def recording(frames: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        states = original(frames, layers)
        kept.append(states)
        return states

    model._vision_hidden_states = recording  # an instance attribute: this model only
    with torch.no_grad():
        model.get_multimodal_features(**inputs)
    assert len(kept) == 1
    states = kept[0]
    return sum(t.numel() * t.element_size() for t in states.values()), sorted(states)


def test_video_samples_keep_one_hidden_state() -> None:
    model, _ = build_tiny_model(["a"], seed=0)
    config = model.config
    batch, frames = 2, config.num_frames
    size = config.vision_config.image_size
    pixels = torch.rand(batch, frames, 3, size, size)
    kept, layers = _kept_bytes(model, pixel_values=pixels, frame_mask=torch.ones(batch, frames, dtype=torch.bool))
    patches = config.patches_per_side**2
    per_sample = frames * patches * config.vision_config.hidden_size * 4  # fp32 on this CPU test
    assert layers == [config.vision_feature_layer]
    assert kept == batch * per_sample  # the estimate's formula, exactly
    every_layer = (config.vision_config.num_hidden_layers + 1) * batch * per_sample
    assert every_layer / kept == config.vision_config.num_hidden_layers + 1  # what keeping them all cost


def test_region_frames_add_one_state_per_region_level() -> None:
    model, _ = build_tiny_model(["a"], seed=0)
    config = model.config
    size = config.vision_config.image_size
    frames, region_frames = config.num_frames, config.num_region_frames
    boxes = torch.tensor([0.1, 0.1, 0.6, 0.7]).expand(1, 1, region_frames, 4).clone()
    kept, layers = _kept_bytes(
        model,
        pixel_values=torch.rand(1, frames, 3, size, size),
        frame_mask=torch.ones(1, frames, dtype=torch.bool),
        region_pixel_values=torch.rand(1, region_frames, 3, size, size),
        region_boxes=boxes,
        region_times=torch.linspace(0, 1, region_frames)[None],
    )
    wanted = sorted({config.vision_feature_layer, *config.region_feature_layers})
    assert layers == wanted and len(wanted) < config.vision_config.num_hidden_layers + 1
    per_frame = config.patches_per_side**2 * config.vision_config.hidden_size * 4
    # Every kept layer covers the video and the region frames of the one vision pass.
    assert kept == len(wanted) * (frames + region_frames) * per_frame


def test_vision_pass_in_chunks_gives_the_same_states(monkeypatch) -> None:
    from artemis.model import modeling

    model, _ = build_tiny_model(["a"], seed=0)
    config = model.config
    size = config.vision_config.image_size
    frames = torch.rand(11, 3, size, size)
    layers = [config.vision_feature_layer, *config.region_feature_layers]
    with torch.no_grad():
        whole = model._vision_hidden_states(frames, layers)
        monkeypatch.setattr(modeling, "VISION_CHUNK_FRAMES", 4)  # 3 passes: 4 + 4 + 3 frames
        chunked = model._vision_hidden_states(frames, layers)
    assert sorted(chunked) == sorted(whole)
    for layer in whole:
        torch.testing.assert_close(chunked[layer], whole[layer], atol=1e-6, rtol=1e-5)
