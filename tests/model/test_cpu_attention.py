"""FP32_SDPA: transformers' SDPA attention kept in fp32 under CPU bf16 autocast (artemis/model/cpu_attention.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from artemis.model import build_tiny_model
from artemis.model.cpu_attention import FP32_SDPA
from artemis.prompts import DESCRIBE_QUESTIONS, referring_prompt


def _inputs(processor, config) -> dict[str, torch.Tensor]:
    """A referring prompt with its video and region frames: the vision tower's attention runs too."""
    question = referring_prompt(DESCRIBE_QUESTIONS[0], 1)
    batch = processor.pad([processor.encode_conversation([(question, "the red circle moves .")])])
    k = config.num_region_frames
    generator = torch.Generator().manual_seed(0)
    batch["pixel_values"] = torch.randn(1, 5, 3, 32, 32, generator=generator)
    batch["region_pixel_values"] = torch.randn(1, k, 3, 32, 32, generator=generator)
    batch["region_boxes"] = torch.tensor([0.2, 0.2, 0.6, 0.7]).repeat(1, 1, k, 1)
    batch["region_times"] = torch.linspace(0, 1, k)[None]
    return batch


def test_fp32_sdpa_matches_sdpa_and_runs_attention_in_fp32_under_autocast(monkeypatch) -> None:
    model, processor = build_tiny_model(seed=0)
    model.eval()
    inputs = _inputs(processor, model.config)
    with torch.no_grad():
        plain = model(**inputs).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain_bf16 = model(**inputs).logits
    model.set_attn_implementation(FP32_SDPA)
    assert model.language_model.config._attn_implementation == FP32_SDPA
    assert model.vision_tower.config._attn_implementation == FP32_SDPA
    dtypes = []
    original = F.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        dtypes.append(query.dtype)
        return original(query, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        same = model(**inputs).logits  # no autocast: the very same computation as sdpa
        dtypes_fp32 = list(dtypes)
        dtypes.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(**inputs).logits
    assert torch.equal(same, plain)
    assert dtypes_fp32 and all(d == torch.float32 for d in dtypes_fp32)
    assert dtypes and all(d == torch.float32 for d in dtypes), dtypes  # autocast would have given bf16
    # Only the attention's precision differs from plain bf16 autocast: both stay near the fp32 logits.
    scale = plain.abs().max()
    assert (mixed.float() - plain).abs().max() <= 0.05 * scale
    assert (plain_bf16.float() - plain).abs().max() <= 0.05 * scale


def test_fp32_sdpa_is_not_saved_into_the_config(tmp_path) -> None:
    model, _ = build_tiny_model(seed=0)
    model.set_attn_implementation(FP32_SDPA)
    model.save_pretrained(tmp_path)
    assert FP32_SDPA not in (tmp_path / "config.json").read_text()
