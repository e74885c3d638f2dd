"""The Hugging Face model: shapes, placeholder checks, save/load, generation, gradients."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from artemis.model import ArtemisConfig, ArtemisForConditionalGeneration, build_tiny_model, tiny_config
from artemis.model.processing import IGNORE_INDEX
from artemis.prompts import DESCRIBE_QUESTIONS, referring_prompt


def _batch(processor, config, answer="the red circle moves from left to right .", frames=5, regions=1):
    encoded = processor.encode_conversation([(referring_prompt(DESCRIBE_QUESTIONS[0], regions), answer)])
    batch = processor.pad([encoded])
    k = config.num_region_frames
    generator = torch.Generator().manual_seed(0)
    batch["pixel_values"] = torch.randn(1, frames, 3, 32, 32, generator=generator)
    batch["region_pixel_values"] = torch.randn(1, k, 3, 32, 32, generator=generator)
    boxes = torch.tensor([0.2, 0.2, 0.6, 0.7]).repeat(1, regions, k, 1)
    boxes[..., 0::2] += torch.linspace(0, 0.3, k)[:, None]  # the target moves right
    batch["region_boxes"] = boxes
    batch["region_times"] = torch.linspace(0, 1, k)[None]
    return batch


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(["the red circle moves from left to right ."], seed=0)


def test_published_defaults_give_356_video_tokens_and_5_region_tokens():
    config = ArtemisConfig()
    assert config.num_video_tokens == 100 + 16 * 16
    assert config.num_region_tokens == 5
    assert config.region_feature_layers == [-11, -8, -5, -2]
    assert config.vision_config.image_size == 224 and config.vision_config.patch_size == 14


def test_forward_gives_a_loss_on_answer_tokens_only(tiny):
    model, processor = tiny
    batch = _batch(processor, model.config)
    labels = batch["labels"][0]
    answer_ids = processor._ids(" the red circle moves from left to right .</s>")
    assert labels[labels != IGNORE_INDEX].tolist() == answer_ids
    assert (batch["input_ids"] == model.config.video_token_id).sum() == model.config.num_video_tokens
    assert (batch["input_ids"] == model.config.region_token_id).sum() == model.config.num_region_tokens
    output = model(**batch)
    assert output.logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(output.loss)


def test_gradients_reach_the_projector_and_the_region_encoder(tiny):
    model, processor = tiny
    model.train()
    try:
        model.zero_grad()
        model(**_batch(processor, model.config)).loss.backward()
        assert model.mm_projector.linear_1.weight.grad.abs().sum() > 0
        assert model.region_encoder.flatten_linear.weight.grad.abs().sum() > 0
        assert model.region_encoder.fuse.input_convs[0].weight.grad.abs().sum() > 0
    finally:
        model.eval()
        model.zero_grad()


def test_placeholder_count_mismatch_is_a_clear_error(tiny):
    model, processor = tiny
    batch = _batch(processor, model.config)
    ids = batch["input_ids"].clone()
    ids[0, torch.nonzero(ids[0] == model.config.video_token_id)[0]] = 5  # one <video> slot fewer
    with pytest.raises(ValueError, match=r"<video> placeholder tokens but the inputs give"):
        model(**{**batch, "input_ids": ids})
    without_regions = {k: v for k, v in batch.items() if not k.startswith("region")}
    with pytest.raises(ValueError, match=r"<region> placeholder"):
        model(**without_regions)


def test_text_only_and_video_samples_share_a_batch(tiny):
    model, processor = tiny
    video = processor.encode_conversation([(referring_prompt(DESCRIBE_QUESTIONS[0]), "the red circle .")])
    text_only = processor.encode_conversation([("what is red ?", "a circle .")])
    batch = processor.pad([video, text_only])
    single = _batch(processor, model.config)
    k = model.config.num_region_frames
    batch["pixel_values"] = torch.cat([single["pixel_values"], torch.zeros_like(single["pixel_values"])])
    batch["frame_mask"] = torch.tensor([[True] * 5, [False] * 5])
    batch["region_pixel_values"] = torch.cat([single["region_pixel_values"]] * 2)
    batch["region_boxes"] = torch.cat([single["region_boxes"], torch.full((1, 1, k, 4), float("nan"))])
    output = model(**batch)
    assert torch.isfinite(output.loss)


def test_save_and_load_round_trip_to_identical_logits(tiny, tmp_path):
    model, processor = tiny
    batch = _batch(processor, model.config)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = ArtemisForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits, rtol=0, atol=0)


def test_generation_with_kv_cache_matches_generation_without(tiny):
    model, processor = tiny
    batch = _batch(processor, model.config)
    prompt = processor.pad([processor.encode_conversation([(referring_prompt(DESCRIBE_QUESTIONS[0]), None)])])
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}
    options = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    with torch.no_grad():
        cached = model.generate(input_ids=prompt["input_ids"], **inputs, use_cache=True, **options)
        uncached = model.generate(input_ids=prompt["input_ids"], **inputs, use_cache=False, **options)
    assert cached.shape[1] == prompt["input_ids"].shape[1] + 6
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("name", ["past_key_values", "cache"])
def test_a_placeholder_id_generated_after_the_prefill_is_only_a_word(tiny, name):
    """Decoding steps carry no visual inputs: a generated ``<region>`` id must not ask for region tokens."""
    if name == "cache" and name not in inspect.signature(LlamaForCausalLM.forward).parameters:
        pytest.skip("this transformers names the KV cache argument past_key_values only")
    model, processor = tiny
    batch = {k: v for k, v in _batch(processor, model.config).items() if k != "labels"}
    with torch.no_grad():
        prefill = model(**batch, use_cache=True)
        step = torch.tensor([[model.config.region_token_id]])
        mask = torch.ones(1, batch["input_ids"].shape[1] + 1, dtype=torch.long)
        out = model(input_ids=step, attention_mask=mask, use_cache=True, **{name: prefill.past_key_values})
    assert out.logits.shape[:2] == (1, 1)
    assert torch.isfinite(out.logits).all()


def test_relative_box_embedding_sees_motion():
    """With relative boxes, two tracks that differ only in motion give different region tokens."""
    model, processor = build_tiny_model(seed=1, box_embedding="relative", selector="all")
    batch = _batch(processor, model.config)
    still = dict(batch, region_boxes=batch["region_boxes"][:, :, :1].expand_as(batch["region_boxes"]).clone())
    with torch.no_grad():
        hidden = model.get_multimodal_features(**{k: batch[k] for k in batch if k.startswith(("pixel", "region"))})
        hidden_still = model.get_multimodal_features(
            **{k: still[k] for k in still if k.startswith(("pixel", "region"))}
        )
    assert not torch.allclose(hidden[1], hidden_still[1])


def test_invalid_settings_are_rejected_with_the_fix():
    from artemis.errors import ConfigError

    with pytest.raises(ConfigError, match="selector='nearest'"):
        tiny_config(selector="nearest")
    with pytest.raises(ConfigError, match="num_selected=9"):
        tiny_config(num_selected=9)
    with pytest.raises(ConfigError, match="vision layer -11 does not exist"):
        tiny_config(region_feature_layers=[-11])
    with pytest.raises(ConfigError, match="roi_backend"):
        tiny_config(roi_backend="cuda")
    with pytest.raises(ConfigError, match="region_content_norm='group'"):
        tiny_config(region_content_norm="group")


def test_mmcv_backend_without_mmcv_names_the_fix(tiny):
    pytest.importorskip("torchvision")
    try:
        import mmcv.ops  # noqa: F401

        pytest.skip("mmcv is installed here")
    except ImportError:
        pass
    model, processor = build_tiny_model(seed=0, roi_backend="mmcv")
    from artemis.errors import ConfigError

    with pytest.raises(ConfigError, match="roi_backend='torchvision'"):
        model(**_batch(processor, model.config))


def test_token_counts_follow_the_selector_setting():
    assert tiny_config(selector="all").num_region_tokens == 1 + tiny_config().num_track_boxes
    assert tiny_config(num_selected=2).num_region_tokens == 3
    assert np.isclose(tiny_config().num_video_tokens, 8 + 64)


def test_batch_normalised_rois_keep_their_variance_and_round_trip(tmp_path):
    """``region_content_norm="batch"``: in training every RoI channel has unit variance across the batch, so
    the RoI part cannot collapse to a constant; at inference the running statistics are used and saved."""
    model, processor = build_tiny_model(seed=2, box_embedding="relative", region_content_norm="batch")
    encoder = model.region_encoder
    assert isinstance(encoder.content_norm, torch.nn.BatchNorm1d) and not list(encoder.content_norm.parameters())
    captured = []
    encoder.content_norm.register_forward_hook(lambda module, args, out: captured.append((args[0], out)))
    batch = _batch(processor, model.config)
    model.train()
    model(**batch)
    rois, normalised = captured[-1]  # (N, H_r) before and after
    assert rois.shape[0] == model.config.num_region_frames
    spread = rois.var(0, unbiased=False)
    expected = spread / (spread + encoder.content_norm.eps)  # unit variance up to BatchNorm's eps
    torch.testing.assert_close(normalised.var(0, unbiased=False), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(normalised.mean(0), torch.zeros_like(expected), atol=1e-5, rtol=0)
    assert encoder.content_norm.num_batches_tracked.item() == 1
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = ArtemisForConditionalGeneration.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.region_encoder.content_norm.running_var, encoder.content_norm.running_var)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits, rtol=0, atol=0)
