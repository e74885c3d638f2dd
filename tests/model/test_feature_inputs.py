"""Precomputed vision features as model inputs: the same logits as pixels, and clear errors."""

from __future__ import annotations

import copy

import pytest
import torch

from artemis.model import build_tiny_model
from artemis.model.features import VisionFeatureExtractor, vision_fingerprint
from artemis.prompts import DESCRIBE_QUESTIONS, VIDEO_TOKEN, referring_prompt

ANSWER = "the red circle moves from left to right ."


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model([ANSWER, "what happens ?", "what is red ?", "a circle ."], seed=0)


def _pixel_batch(processor, config, kinds: list[str]) -> dict[str, torch.Tensor]:
    """A padded batch of ``kinds`` ("video", "referring" or "text") with random pixels."""
    encoded = {
        "video": processor.encode_conversation([(f"{VIDEO_TOKEN}\nwhat happens ?", ANSWER)]),
        "referring": processor.encode_conversation([(referring_prompt(DESCRIBE_QUESTIONS[0]), ANSWER)]),
        "text": processor.encode_conversation([("what is red ?", "a circle .")]),
    }
    batch = processor.pad([encoded[kind] for kind in kinds])
    generator = torch.Generator().manual_seed(3)
    size, k = config.vision_config.image_size, config.num_region_frames
    frames = {"video": 5, "referring": 3, "text": 0}
    longest = max(frames[kind] for kind in kinds)
    batch["pixel_values"] = torch.zeros(len(kinds), longest, 3, size, size)
    batch["frame_mask"] = torch.zeros(len(kinds), longest, dtype=torch.bool)
    batch["region_pixel_values"] = torch.zeros(len(kinds), k, 3, size, size)
    batch["region_boxes"] = torch.full((len(kinds), 1, k, 4), float("nan"))
    batch["region_times"] = torch.zeros(len(kinds), k)
    for row, kind in enumerate(kinds):
        count = frames[kind]
        batch["pixel_values"][row, :count] = torch.randn(count, 3, size, size, generator=generator)
        batch["frame_mask"][row, :count] = True
        if kind == "referring":
            batch["region_pixel_values"][row] = torch.randn(k, 3, size, size, generator=generator)
            boxes = torch.tensor([0.2, 0.2, 0.6, 0.7]).repeat(k, 1)
            boxes[:, 0::2] += torch.linspace(0, 0.3, k)[:, None]
            batch["region_boxes"][row, 0] = boxes
            batch["region_times"][row] = torch.linspace(0, 1, k)
    if "referring" not in kinds:
        for name in ("region_pixel_values", "region_boxes", "region_times"):
            del batch[name]
    return batch


def _feature_batch(model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same batch with each sample's pixels replaced by the extractor's features."""
    extract = VisionFeatureExtractor(model, batch_size=4)
    out = {k: v for k, v in batch.items() if k not in ("pixel_values", "frame_mask", "region_pixel_values")}
    rows = len(batch["input_ids"])
    config = model.config
    video = torch.zeros(rows, config.num_video_tokens, config.vision_config.hidden_size)
    for row in range(rows):
        frames = batch["pixel_values"][row][batch["frame_mask"][row]]
        if len(frames):
            video[row] = extract(frames, range(len(frames)), [])[0]
    out["video_features"] = video
    out["video_feature_mask"] = batch["frame_mask"].any(1)
    if "region_pixel_values" in batch:
        per_sample = [extract(pixels, [], range(len(pixels)))[1] for pixels in batch["region_pixel_values"]]
        out["region_hidden_states"] = tuple(torch.stack(level) for level in zip(*per_sample, strict=True))
    return out


@pytest.mark.parametrize("kinds", [["video"], ["referring"], ["video", "referring", "text"]])
def test_features_give_the_same_logits_as_pixels(tiny, kinds: list[str]) -> None:
    model, processor = tiny
    pixels = _pixel_batch(processor, model.config, kinds)
    features = _feature_batch(model, pixels)
    if "region_hidden_states" in features:
        levels = features["region_hidden_states"]
        assert len(levels) == len(model.config.region_feature_layers)
        assert levels[0].shape == (len(kinds), model.config.num_region_frames, 64, 32)  # (B, K, P, C_v)
    with torch.no_grad():
        expected = model(**pixels)
        actual = model(**features)
    torch.testing.assert_close(actual.logits, expected.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(actual.loss, expected.loss, rtol=0, atol=1e-6)


def test_features_train_the_projector_and_region_encoder(tiny) -> None:
    model, processor = tiny
    features = _feature_batch(model, _pixel_batch(processor, model.config, ["referring", "text"]))
    model.zero_grad()
    try:
        model(**features).loss.backward()
        assert model.mm_projector.linear_1.weight.grad.abs().sum() > 0
        assert model.region_encoder.flatten_linear.weight.grad.abs().sum() > 0
        assert all(p.grad is None for p in model.vision_tower.parameters())  # never ran
    finally:
        model.zero_grad()


def test_mixed_half_precision_features_are_cast(tiny) -> None:
    model, processor = tiny
    features = _feature_batch(model, _pixel_batch(processor, model.config, ["referring"]))
    half = {**features, "video_features": features["video_features"].half()}
    half["region_hidden_states"] = tuple(level.half() for level in features["region_hidden_states"])
    with torch.no_grad():
        torch.testing.assert_close(model(**half).logits, model(**features).logits, rtol=0, atol=5e-2)


def test_pixels_and_features_for_the_same_part_are_an_error(tiny) -> None:
    model, processor = tiny
    pixels = _pixel_batch(processor, model.config, ["referring"])
    features = _feature_batch(model, pixels)
    both_video = {**features, "pixel_values": pixels["pixel_values"]}
    with pytest.raises(ValueError, match="both pixel_values and video_features"):
        model(**both_video)
    both_regions = {**features, "region_pixel_values": pixels["region_pixel_values"]}
    with pytest.raises(ValueError, match="both region_pixel_values and region_hidden_states"):
        model(**both_regions)
    with pytest.raises(ValueError, match="region_hidden_states has 2 levels but region_feature_layers"):
        model(**{**features, "region_hidden_states": features["region_hidden_states"][:2]})
    with pytest.raises(ValueError, match=r"video_features have shape \(1, 72, 16\); expected \(B, 72, 32\)"):
        model(**{**features, "video_features": features["video_features"][..., :16]})
    # Pixels for one part and features for the other is fine.
    mixed = {**features, "region_hidden_states": None, "region_pixel_values": pixels["region_pixel_values"]}
    with torch.no_grad():
        torch.testing.assert_close(model(**mixed).logits, model(**pixels).logits, rtol=0, atol=1e-6)


def test_generation_drops_the_feature_inputs_after_prefill(tiny) -> None:
    model, processor = tiny
    prompt = processor.pad([processor.encode_conversation([(referring_prompt(DESCRIBE_QUESTIONS[0]), None)])])
    pixels = _pixel_batch(processor, model.config, ["referring"])
    features = _feature_batch(model, pixels)
    visual = {k: v for k, v in features.items() if k not in ("input_ids", "attention_mask", "labels")}
    pixel_visual = {k: v for k, v in pixels.items() if k not in ("input_ids", "attention_mask", "labels")}
    options = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0, "eos_token_id": None, "use_cache": True}
    with torch.no_grad():
        from_features = model.generate(input_ids=prompt["input_ids"], **visual, **options)
        from_pixels = model.generate(input_ids=prompt["input_ids"], **pixel_visual, **options)
    assert torch.equal(from_features, from_pixels)


def test_fingerprint_follows_the_vision_weights_only(tiny) -> None:
    model, _ = tiny
    other, _ = build_tiny_model([ANSWER], seed=1)
    assert vision_fingerprint(model.vision_tower) != vision_fingerprint(other.vision_tower)
    same, _ = build_tiny_model([ANSWER, "an extra word"], seed=0)  # other vocabulary, same vision init
    assert vision_fingerprint(same.vision_tower) == vision_fingerprint(model.vision_tower)
    # The same weights loaded in bfloat16 (the features then differ by rounding only).
    assert vision_fingerprint(copy.deepcopy(model.vision_tower).to(torch.bfloat16)) == vision_fingerprint(
        same.vision_tower
    )


def test_frames_layout_features_give_the_same_logits_as_pixels() -> None:
    model, processor = build_tiny_model(
        [ANSWER, "what happens ?", "what is red ?", "a circle ."], video_layout="frames"
    )
    pixels = _pixel_batch(processor, model.config, ["video", "referring", "text"])
    features = _feature_batch(model, pixels)
    assert features["video_features"].shape[1] == model.config.num_video_tokens
    with torch.no_grad():
        torch.testing.assert_close(model(**features).logits, model(**pixels).logits, rtol=0, atol=1e-6)
