"""Attention kept in fp32 while the rest of a CPU bf16 training step autocasts to bf16.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` PyTorch runs ``scaled_dot_product_attention`` in bf16.
Its CPU kernels for bf16 are slower than for fp32 at the narrow heads of the CPU-sized models (16 wide).
Measured on this project's machines (AMD EPYC with AVX512-BF16, one thread), forward and backward:
(128, 2, 257, 16) 92 ms in fp32 against 220 ms in bf16, and (16, 4, 450, 16) 54 ms against 120 ms.
The linear layers around the attention still gain from bf16. No library switch keeps one op in fp32 under
autocast, so :data:`FP32_SDPA` registers transformers' own SDPA attention with its inputs cast to fp32
and autocast off inside it. The runner selects it for ``bf16`` with ``use_cpu``
(``model.set_attn_implementation``). It is not written into a saved config, so a saved model loads with
plain ``sdpa``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

FP32_SDPA = "artemis_sdpa_fp32"


def sdpa_fp32(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' SDPA attention on fp32 copies of its inputs with autocast off; output in the query's dtype."""
    dtype = query.dtype
    if dtype == torch.float32 and not torch.is_autocast_enabled(query.device.type):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast(query.device.type, enabled=False):
        output, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return output.to(dtype), weights


AttentionInterface.register(FP32_SDPA, sdpa_fp32)
