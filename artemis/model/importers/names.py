"""The explicit name map from the original Artemis (LLaVA layout) to :class:`ArtemisForConditionalGeneration`.

Every key of an original checkpoint must match exactly one rule below, or be in :data:`IGNORED`; anything
else is an error, so a renamed or forgotten module can never be skipped silently. The original names come
from its ``LlavaLlamaForCausalLM`` (``model.*`` = ``LlavaLlamaModel``, ``lm_head``), ``mm_projector`` (an
``nn.Sequential``: Linear 0, GELU 1, Linear 2) and ``spi_model`` = ``MLVLROIQueryModule`` with
``mlvl_fuse`` (``input_conv.{i}``; ``fuse_convs.{i}`` mmcv ``ConvModule``s named ``conv`` and ``gn``) and
``roi_align`` (``pconvs.{i}``, ``pos_embedd`` an ``nn.Sequential`` Linear 0, ReLU 1, LN 2, Linear 3, ReLU 4,
LN 5, ``flatten_linear``, ``updims``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

# (original pattern, our name template). Patterns are full matches; groups are substituted in order.
# LLAMA_LAYER and CLIP_NAMES are shared with the Elysium map (artemis.model.importers.elysium).
LLAMA_LAYER = (
    r"(self_attn\.(?:q|k|v|o)_proj\.(?:weight|bias)|mlp\.(?:gate|up|down)_proj\.(?:weight|bias)"
    r"|input_layernorm\.weight|post_attention_layernorm\.weight)"
)
# A CLIPVisionModel's own names: ``vision_model.*`` up to transformers 4 (the hub's CLIP checkpoints), and
# unprefixed since transformers 5 (what ``CLIPVisionModel.save_pretrained`` writes now, and our names).
CLIP_NAMES = r"(?:vision_model\.)?((?:embeddings|encoder|pre_layrnorm|post_layernorm)\..+)"
RULES: tuple[tuple[str, str], ...] = (
    # The LLM (LlamaForCausalLM inside ours).
    (r"model\.embed_tokens\.weight", "language_model.model.embed_tokens.weight"),
    (rf"model\.layers\.(\d+)\.{LLAMA_LAYER}", r"language_model.model.layers.\1.\2"),
    (r"model\.norm\.weight", "language_model.model.norm.weight"),
    (r"lm_head\.weight", "language_model.lm_head.weight"),
    # mm_projector = Sequential(Linear, GELU, Linear).
    (r"model\.mm_projector\.0\.(weight|bias)", r"mm_projector.linear_1.\1"),
    (r"model\.mm_projector\.2\.(weight|bias)", r"mm_projector.linear_2.\1"),
    # The region module (spi_model): multi-level fuse.
    (r"model\.spi_model\.mlvl_fuse\.input_conv\.(\d+)\.(weight|bias)", r"region_encoder.fuse.input_convs.\1.\2"),
    (r"model\.spi_model\.mlvl_fuse\.fuse_convs\.(\d+)\.conv\.weight", r"region_encoder.fuse.fuse_convs.\1.0.weight"),
    (r"model\.spi_model\.mlvl_fuse\.fuse_convs\.(\d+)\.gn\.(weight|bias)", r"region_encoder.fuse.fuse_convs.\1.1.\2"),
    # The region module: RoI extractor.
    (r"model\.spi_model\.roi_align\.pconvs\.(\d+)\.(weight|bias)", r"region_encoder.level_convs.\1.\2"),
    (r"model\.spi_model\.roi_align\.pos_embedd\.([0235])\.(weight|bias)", r"region_encoder.box_embedding.mlp.\1.\2"),
    (r"model\.spi_model\.roi_align\.flatten_linear\.(weight|bias)", r"region_encoder.flatten_linear.\1"),
    (r"model\.spi_model\.roi_align\.updims\.(weight|bias)", r"region_encoder.out_proj.\1"),
    # A vision tower saved inside the LLaVA checkpoint (Artemis: image_tower, LLaVA: vision_tower), both
    # wrapping a CLIPVisionModel as ``.vision_tower``.
    (rf"model\.image_tower\.vision_tower\.{CLIP_NAMES}", r"vision_tower.\1"),
    (rf"model\.vision_tower\.vision_tower\.{CLIP_NAMES}", r"vision_tower.\1"),
)

# A local CLIP directory: CLIPVisionModel keys, or a full CLIPModel of which only the vision half is used.
CLIP_RULES: tuple[tuple[str, str], ...] = ((CLIP_NAMES, r"vision_tower.\1"),)

IGNORED: tuple[str, ...] = (
    # Rotary frequencies, saved as a buffer by transformers < 4.35: recomputed from the rope settings.
    r".*\.rotary_emb\.inv_freq",
    # CLIP position ids, a persistent buffer in older transformers: recomputed.
    r"(?:.*\.)?embeddings\.position_ids",
)
CLIP_IGNORED: tuple[str, ...] = (
    *IGNORED,
    # The text half and the projections of a full CLIPModel: Artemis uses the vision encoder only.
    r"text_model\..+",
    r"text_projection\.weight",
    r"visual_projection\.weight",
    r"logit_scale",
)


@functools.cache
def _compiled(rules: tuple[tuple[str, str], ...]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(p), t) for p, t in rules]


def map_name(name: str, rules: tuple[tuple[str, str], ...] = RULES) -> str | None:
    """Our parameter name for an original one, or None when no rule of ``rules`` matches."""
    for pattern, template in _compiled(rules):
        match = pattern.fullmatch(name)
        if match:
            return match.expand(template)
    return None


def is_ignored(name: str, ignored: Iterable[str] = IGNORED) -> bool:
    return any(re.fullmatch(pattern, name) for pattern in ignored)


# The inverse map, for writing a checkpoint in the original layout (tests, round trips).
_INVERSE: tuple[tuple[str, str], ...] = (
    (r"language_model\.model\.embed_tokens\.weight", "model.embed_tokens.weight"),
    (r"language_model\.model\.layers\.(\d+)\.(.+)", r"model.layers.\1.\2"),
    (r"language_model\.model\.norm\.weight", "model.norm.weight"),
    (r"language_model\.lm_head\.weight", "lm_head.weight"),
    (r"mm_projector\.linear_1\.(weight|bias)", r"model.mm_projector.0.\1"),
    (r"mm_projector\.linear_2\.(weight|bias)", r"model.mm_projector.2.\1"),
    (r"region_encoder\.fuse\.input_convs\.(\d+)\.(.+)", r"model.spi_model.mlvl_fuse.input_conv.\1.\2"),
    (r"region_encoder\.fuse\.fuse_convs\.(\d+)\.0\.weight", r"model.spi_model.mlvl_fuse.fuse_convs.\1.conv.weight"),
    (r"region_encoder\.fuse\.fuse_convs\.(\d+)\.1\.(.+)", r"model.spi_model.mlvl_fuse.fuse_convs.\1.gn.\2"),
    (r"region_encoder\.level_convs\.(\d+)\.(.+)", r"model.spi_model.roi_align.pconvs.\1.\2"),
    (r"region_encoder\.box_embedding\.mlp\.(\d)\.(.+)", r"model.spi_model.roi_align.pos_embedd.\1.\2"),
    (r"region_encoder\.flatten_linear\.(.+)", r"model.spi_model.roi_align.flatten_linear.\1"),
    (r"region_encoder\.out_proj\.(.+)", r"model.spi_model.roi_align.updims.\1"),
    (r"vision_tower\.(.+)", r"model.image_tower.vision_tower.vision_model.\1"),
)


def original_name(ours: str) -> str:
    """The original Artemis name of one of our parameters (the inverse of :func:`map_name`)."""
    for pattern, template in _INVERSE:
        match = re.fullmatch(pattern, ours)
        if match:
            return match.expand(template)
    raise KeyError(f"{ours} has no name in the original Artemis layout")
