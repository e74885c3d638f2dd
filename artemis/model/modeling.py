"""``ArtemisForConditionalGeneration``: CLIP vision tower + video tokens + region tokens + a causal LLM.

The model follows transformers' LLaVA: the processor expands every ``<video>`` and ``<region>`` into the
exact number of placeholder ids; the model computes the features, checks that the counts match, and
``masked_scatter``s them into the LLM's input embeddings. Generation goes through ``GenerationMixin``
with the KV cache: the visual inputs are used on the first (prefill) step only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutputWithPast

from artemis.errors import ConfigError, is_real
from artemis.model.configuration import ArtemisConfig
from artemis.model.frame_tokens import (
    QUERY_SCALE_INIT,
    FrameContext,
    FrameIndexEmbedding,
    FramePositionEmbedding,
    FrameTokenSelector,
    PixelStem,
    aligned_positions,
    box_cells_loss,
    isolation_mask,
    local_soft_argmax,
)
from artemis.model.frame_tokens import frame_tags as compute_frame_tags
from artemis.model.number_loss import BOX_VALUES, ordered_number_loss
from artemis.model.region import MaskEmbedding, RegionEncoder, RelationEmbedding
from artemis.model.selector import TokenSelector

# Inputs used to build the prompt's embeddings; after the prefill step the KV cache holds their effect.
VISUAL_INPUTS = (
    "pixel_values",
    "frame_mask",
    "video_features",
    "video_feature_mask",
    "query_boxes",
    "select_query",
    "image_mask",
    "region_pixel_values",
    "region_hidden_states",
    "region_boxes",
    "region_visible",
    "region_times",
    "region_masks",
)


# Frames per vision-tower pass. A pass holds all of its frames' hidden states (25 for CLIP ViT-L) until it
# returns; 256 frames of ViT-L in bf16 are 3.4 GB of them, where a batch of 32 100-frame videos in one
# pass would be 42 GB.
VISION_CHUNK_FRAMES = 256


class MultiModalProjector(nn.Module):
    """``mlp2x_gelu``: Linear(C_v, D), GELU, Linear(D, D) (LLaVA-1.5 / Artemis ``mm_projector``)."""

    def __init__(self, in_dim: int, out_dim: int, act: str = "gelu"):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class ArtemisPreTrainedModel(PreTrainedModel):
    config: ArtemisConfig
    config_class = ArtemisConfig
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        # transformers initialises Linear/Embedding/norm layers itself; the frame-token parameters are
        # plain nn.Parameters it does not know (needed when a checkpoint lacks them, e.g. a partial import).
        super()._init_weights(module)
        if isinstance(module, FrameTokenSelector):
            init.zeros_(module.trans_weight)
            init.copy_(module.trans_bias, module.initial_bias())
            if module.query_proj is not None:  # identity start (see FrameTokenSelector)
                init.eye_(module.query_proj.weight)
                init.zeros_(module.query_proj.bias)
                init.constant_(module.query_scale, QUERY_SCALE_INIT)
            if module.text_pool is not None:  # zero word scores: the pooling starts as the mean
                init.zeros_(module.text_pool.weight)
                init.zeros_(module.text_pool.bias)
        elif isinstance(module, (FramePositionEmbedding, FrameIndexEmbedding)):
            init.copy_(module.weight, module.initial_weight())
        elif isinstance(module, nn.Conv2d) and getattr(module, "zero_init", False):
            # A FrameContext block's output convolution: zero, so the block starts as the identity.
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, MaskEmbedding):  # zero start: a new mask embedding changes no answer
            init.zeros_(module.out_weight)
            init.zeros_(module.out_bias)


class ArtemisForConditionalGeneration(ArtemisPreTrainedModel, GenerationMixin):
    """The Artemis architecture as a Hugging Face model.

    Sub-modules: ``vision_tower`` (CLIP, frozen in every published stage), ``mm_projector``,
    ``region_encoder``, ``selector`` (no weights) and ``language_model`` (a causal LM with its head);
    with ``video_layout="frames"`` also ``frame_selector`` (``frame_tokens="select"``) and
    ``frame_positions`` (``frame_position_embedding``), None otherwise (see :mod:`artemis.model.frame_tokens`).
    """

    def __init__(self, config: ArtemisConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.mm_projector = MultiModalProjector(
            config.vision_config.hidden_size, config.text_config.hidden_size, config.projector_hidden_act
        )
        self.region_encoder = RegionEncoder(config)
        self.selector = TokenSelector(
            config.selector,
            config.num_selected,
            config.kmeans_max_iter,
            config.kmeans_random_member,
            padding=config.selector_padding,
        )
        self.frame_selector = self.frame_positions = None
        if config.frame_tokens == "select":
            self.frame_selector = FrameTokenSelector(
                config.vision_config.hidden_size,
                config.frame_select_grid,
                config.frame_select_tokens,
                config.frame_select_gradient,
                query=config.frame_select_query,
                centre=config.frame_select_centre,
                text_dim=config.text_config.hidden_size if config.frame_select_text_query else None,
                order=config.frame_select_order,
                text_pool=config.frame_select_text_pool,
            )
        if config.frame_position_embedding:
            self.frame_positions = FramePositionEmbedding(
                config.frame_token_grid**2, config.text_config.hidden_size, init=config.frame_position_init
            )
        self.frame_indices = None
        if config.frame_index_embedding:
            self.frame_indices = FrameIndexEmbedding(config.num_frames, config.text_config.hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        # Built last and without drawing from the global generator (post_init draws its weights after all
        # the others), so that turning it on leaves every other initial weight as it was.
        self.frame_context = None
        if config.frame_context_layers:
            with torch.random.fork_rng(devices=[]):
                self.frame_context = FrameContext(
                    config.vision_config.hidden_size, config.frame_context_layers, time=config.frame_context_time
                )
        self.frame_stem = None  # likewise built last, apart from the global generator
        if config.frame_stem_grid:
            with torch.random.fork_rng(devices=[]):
                self.frame_stem = PixelStem(
                    config.vision_config.hidden_size, config.vision_config.image_size, config.frame_stem_grid
                )
        # The relation embedding's own loss in the last forward with labels (``region_track_token="relation"``),
        # already added to that forward's loss; None when it had none. Kept for logging.
        self.relation_loss: torch.Tensor | None = None
        # The frame selector's loss against the target's cells in the last training forward
        # (``frame_select_box_loss``), already added to its loss; None when it had none. Kept for logging.
        self.frame_select_loss: torch.Tensor | None = None
        # Training only, set by :meth:`set_box_label_sigma`: Gaussian targets on box numbers (0: off).
        self.box_label_sigma = 0.0
        self.box_number_ids: list[int] | None = None
        self.post_init()

    def set_box_label_sigma(self, sigma: float, number_ids: list[int] | None) -> None:
        """In training forwards with labels, take the loss of number labels against a Gaussian of width
        ``sigma`` box units over the number tokens (:mod:`artemis.model.number_loss`); 0 turns it off.

        Raises:
            ConfigError: a negative or non-numeric ``sigma``, or ``sigma`` > 0 without the ids of the 101
                number tokens (a tokenizer that does not write each of 0..100 as one token).
        """
        if not is_real(sigma, minimum=0):
            raise ConfigError(f"box_label_sigma={sigma!r} is not valid; expected a number >= 0 (0: off)")
        if sigma and (number_ids is None or len(number_ids) != BOX_VALUES):
            raise ConfigError(
                f"box_label_sigma={sigma} needs a tokenizer that writes each number 0..100 as one token; this "
                "one does not (a byte-level or digit-splitting tokenizer): set box_label_sigma to 0"
            )
        self.box_label_sigma = float(sigma)
        self.box_number_ids = list(number_ids) if sigma else None

    # --- embeddings plumbing (resize_token_embeddings, peft and generate rely on these) -------------

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    # --- features -----------------------------------------------------------------------------------

    def _vision_hidden_states(self, frames: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """frames (N, 3, S, S) -> the vision tower's hidden states at ``layers``, patch tokens only: (N, P, C_v).

        Only the layers asked for outlive the vision pass; the tower's other hidden states (25 for CLIP
        ViT-L) are freed when it returns, so a batch of videos keeps one (N, P, C_v) tensor for its video
        tokens instead of every layer's.
        """
        frames = frames.to(device=self.vision_tower.device, dtype=self.vision_tower.dtype)
        kept: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        # In chunks: while the tower runs, transformers holds every hidden state of the frames it is given.
        for start in range(0, len(frames), VISION_CHUNK_FRAMES):
            chunk = frames[start : start + VISION_CHUNK_FRAMES]
            output = self.vision_tower(pixel_values=chunk, output_hidden_states=True, return_dict=True)
            for layer, parts in kept.items():
                parts.append(output.hidden_states[layer][:, 1:])  # drop CLS
        return {layer: parts[0] if len(parts) == 1 else torch.cat(parts) for layer, parts in kept.items()}

    def pool_video_features(self, patches: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Video-ChatGPT pooling of per-frame patch features: what the projector turns into video tokens.

        Public so that a cache of precomputed ``video_features`` (``artemis data cache --features``) pools
        exactly as the model does.

        Args:
            patches: (B, T, P, C_v) features of the sampled frames (padding frames included).
            frame_mask: (B, T) True for real frames.

        Returns:
            (B, num_frames + P, C_v): T temporal features (mean over space) zero-padded to ``num_frames``,
            then P spatial features (mean over the real frames). With ``video_layout="frames"``:
            (B, num_frames * g*g, C_v) from :meth:`pool_frame_features` (``config.num_video_features``
            rows; the frame selector, which trains, runs later in :meth:`project_video_features`).
        """
        frames = patches.shape[1]
        if frames > self.config.num_frames:
            raise ValueError(f"got {frames} frames but the model takes at most num_frames={self.config.num_frames}")
        if self.config.video_layout == "frames":
            return self.pool_frame_features(patches, frame_mask)
        weights = frame_mask.to(patches.dtype)[..., None]  # (B, T, 1)
        temporal = patches.mean(dim=2) * weights  # (B, T, C)
        temporal = nn.functional.pad(temporal, (0, 0, 0, self.config.num_frames - frames))  # (B, N_t, C)
        counts = weights.sum(dim=1).clamp(min=1)[..., None]  # (B, 1, 1)
        spatial = (patches * weights[..., None]).sum(dim=1) / counts  # (B, P, C)
        return torch.cat([temporal, spatial], dim=1)  # (B, N_t + P, C)

    def pool_frame_features(self, patches: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """``video_layout="frames"``: each frame's patch grid average-pooled to ``config.frame_feature_grid``
        per side (``frame_pool_size``, or ``frame_select_grid`` for the selector), frames kept in order
        (Elysium-style box output needs to know where things are on each frame).

        Args:
            patches: (B, T, P, C_v) features of the sampled frames, P = grid side squared.
            frame_mask: (B, T) True for real frames.

        Returns:
            (B, num_frames * s*s, C_v), s = ``frame_feature_grid``, row-major over each frame's pooled grid;
            padding frames and frames past T are zero features, as the pooled layout pads its temporal ones.
        """
        batch, frames, count, channels = patches.shape
        side = self.config.patches_per_side
        if count != side * side:
            raise ValueError(f"got {count} patches per frame but the vision tower gives a {side}x{side} grid")
        grid = patches.reshape(batch * frames, side, side, channels).permute(0, 3, 1, 2)  # (B*T, C, g, g)
        pooled = nn.functional.adaptive_avg_pool2d(grid, self.config.frame_feature_grid)  # (B*T, C, s, s)
        pooled = pooled.flatten(2).transpose(1, 2).reshape(batch, frames, -1, channels)  # (B, T, s*s, C)
        pooled = pooled * frame_mask.to(pooled.dtype)[..., None, None]  # padding frames -> zeros
        pooled = nn.functional.pad(pooled, (0, 0, 0, 0, 0, self.config.num_frames - frames))  # (B, N_t, s*s, C)
        return pooled.flatten(1, 2)  # (B, N_t * s*s, C)

    def video_tokens(self, patches: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Video tokens from per-frame patch features: :meth:`pool_video_features`, then
        :meth:`project_video_features`.

        Args:
            patches: (B, T, P, C_v) features of the sampled frames (padding frames included).
            frame_mask: (B, T) True for real frames.

        Returns:
            (B, num_video_tokens, D): num_frames + P tokens (pooled layout) or num_frames * tokens_per_frame
            (frames).
        """
        return self.project_video_features(self.pool_video_features(patches, frame_mask))  # (B, N_v, D)

    def project_video_features(
        self,
        features: torch.Tensor,
        query_boxes: torch.Tensor | None = None,
        frame_boxes: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
        select_query: torch.Tensor | None = None,
        stem: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pooled video features to video tokens in the LLM's space.

        ``"frames"`` layout: the context convolutions widen each cell's view (``frame_context_layers``),
        the frame selector keeps ``frame_select_tokens`` of each frame's grid
        (``frame_tokens="select"``), the projector maps them, and the position embedding adds each token's
        grid cell (``frame_position_embedding``). Otherwise the projector alone.

        Args:
            features: (B, num_video_features, C_v), the output of :meth:`pool_video_features`.
            query_boxes: (B, 4) the target's normalised box on the first frame (NaN rows: none), for a
                selector with ``frame_select_query``; ignored otherwise.
            frame_boxes: (B, T, 4) the target's normalised box on each frame (NaN rows: absent), in training
                with ``frame_select_box_loss``: :attr:`frame_select_loss` is set from the selector's logits.
            question: (B, D) the mean embedding of each prompt's text, the query of the samples without a
                box for a selector with ``frame_select_text_query``; ignored otherwise.
            select_query: (B, C) a selector query computed beforehand (:meth:`frame_query`, NaN rows: none):
                where given it replaces the one ``query_boxes`` would give, so that a later clip of one
                request scores its frames against the target as an earlier frame showed it.
            stem: (B, T, G*G, C) the pixel stem's features of each frame (:meth:`stem_features`), required by
                a model with ``frame_stem_grid`` and ignored otherwise.

        Returns:
            (B, num_video_tokens, D).
        """
        weight = self.mm_projector.linear_1.weight  # cached features may be stored in another dtype
        features = features.to(device=weight.device, dtype=weight.dtype)
        if self.config.video_layout != "frames":
            return self.mm_projector(features)  # (B, N_v, D)
        grid = self._frame_grid(features, stem)  # (B, N_t, g*g, C)
        cells = None  # (B, N_t, k) raster index of each kept token; None: the whole grid
        first_at = None  # (B, N_t, 2) with frame_position_refine: the first token's refined position
        if self.frame_selector is not None:
            query = None
            if self.config.frame_select_query and query_boxes is not None:
                query = self.frame_selector.target_query(grid, query_boxes.to(device=grid.device))  # (B, C)
            if self.config.frame_select_query and select_query is not None:
                given = select_query.to(device=grid.device, dtype=grid.dtype)  # (B, C)
                own = torch.full_like(given, float("nan")) if query is None else query
                query = torch.where(torch.isfinite(given).all(-1, keepdim=True), given, own)
            if self.config.frame_select_text_query and question is not None:
                query = self.frame_selector.text_query(question.to(grid.device), query)  # (B, C)
            logits = self.frame_selector.scores(grid, query)  # (B, N_t, g*g)
            if frame_boxes is not None and self.training and self.config.frame_select_box_loss:
                self.frame_select_loss = box_cells_loss(logits, frame_boxes, self.config.frame_select_box_target)
            grid, cells = self.frame_selector.select(grid, logits)  # (B, N_t, k, C)
            if self.config.frame_position_refine:
                first_at = local_soft_argmax(logits)  # (B, N_t, 2) where the best cell places the target
        tokens = self.mm_projector(grid)  # (B, N_t, n, D)
        if self.frame_positions is not None:
            tokens = self.frame_positions(tokens, cells, first_at)  # (B, N_t, n, D)
        if self.frame_indices is not None:
            tokens = self.frame_indices(tokens)  # (B, N_t, n, D), every token tagged with its frame
        return tokens.flatten(1, 2)  # (B, N_t * n, D)

    def _frame_grid(self, features: torch.Tensor, stem: torch.Tensor | None = None) -> torch.Tensor:
        """``"frames"`` layout: pooled features (B, num_video_features, C_v) -> each frame's cell grid (B, N_t,
        g*g, C_v), through the context convolutions when the model has them; with a pixel stem, then
        upsampled to the stem's grid with ``stem`` (B, T, G*G, C_v) added (B, N_t, G*G, C_v)."""
        batch, channels = features.shape[0], features.shape[-1]
        grid = features.reshape(batch, self.config.num_frames, -1, channels)  # (B, N_t, g*g, C)
        if self.frame_context is not None:
            grid = self.frame_context(grid)  # (B, N_t, g*g, C), each cell now sees its neighbours
        if self.frame_stem is None:
            return grid
        if stem is None:
            raise ValueError(
                f"this model refines each frame's grid with a pixel stem (frame_stem_grid="
                f"{self.config.frame_stem_grid}), which reads the frames' pixels; pass pixel_values (precomputed "
                "video_features do not hold them)"
            )
        stem = stem.to(device=grid.device, dtype=grid.dtype)
        stem = nn.functional.pad(stem, (0, 0, 0, 0, 0, self.config.num_frames - stem.shape[1]))  # (B, N_t, G*G, C)
        return PixelStem.upsampled(grid, self.frame_stem.side) + stem

    def stem_features(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor | None:
        """The pixel stem's features of each real frame (``frame_stem_grid``), zero on padding frames:
        the real frames (n_frames, 3, S, S), i.e. ``pixel_values[frame_mask]`` (gathered once for the vision
        tower and the stem alike), and ``frame_mask`` (B, T) -> (B, T, G*G, C_v); None without a stem."""
        if self.frame_stem is None:
            return None
        weight = self.frame_stem.patch.weight
        features = self.frame_stem(frames.to(device=weight.device, dtype=weight.dtype))  # (n_frames, G*G, C)
        return _per_frame(features, frame_mask)

    @torch.no_grad()
    def frame_query(
        self, pixel_values: torch.Tensor, query_boxes: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The selector's query of each sample's target as its first frame shows it (``frame_select_query``).

        What a clip of these frames computes for itself from ``query_boxes``; computed once, it can be given
        to later clips of the same request as ``select_query`` (box output's fixed template: a clip chained
        from a written box then still looks for the target as the user's box showed it).

        Args:
            pixel_values: (B, T, 3, S, S) a clip's frames; ``frame_mask`` (B, T) marks real ones (default:
                all). All real frames are read, as a clip's context convolutions may span frames.
            query_boxes: (B, 4) the target's normalised xyxy box on the first frame.

        Returns:
            (B, C_v).
        """
        if self.frame_selector is None or not self.config.frame_select_query:
            raise ValueError(
                "frame_query needs a frame selector that scores against a box (frame_tokens='select', "
                "frame_select_query=true); this model has none"
            )
        if frame_mask is None:
            frame_mask = torch.ones(pixel_values.shape[:2], dtype=torch.bool, device=pixel_values.device)
        frame_mask = frame_mask.bool()
        if not bool(frame_mask[:, 0].all()):
            raise ValueError("frame_query: every sample's first frame must be a real frame (frame_mask[:, 0])")
        layer = self.config.vision_feature_layer
        frames = pixel_values[frame_mask]  # (n_frames, 3, S, S)
        patches = self._vision_hidden_states(frames, [layer])[layer]  # (n_frames, P, C)
        frame_mask = frame_mask.to(patches.device)
        grid = _per_frame(patches, frame_mask)  # (B, T, P, C)
        weight = self.mm_projector.linear_1.weight
        pooled = self.pool_video_features(grid, frame_mask).to(device=weight.device, dtype=weight.dtype)
        grid = self._frame_grid(pooled, self.stem_features(frames, frame_mask))  # (B, N_t, g*g, C)
        return self.frame_selector.target_query(grid, query_boxes.to(device=grid.device))  # (B, C)

    def region_tokens(
        self,
        hidden_states: list[torch.Tensor],
        boxes: torch.Tensor,
        visible: torch.Tensor | None,
        times: torch.Tensor | None,
        masks: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
        answer_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """RoI tokens of every region frame, then the selector.

        Args:
            hidden_states: the region feature levels, each (B*K, P, C_v).
            boxes: (B, R, K, 4) normalised xyxy on the square input, key frame first.
            visible: (B, R, K) bool, or None for all visible.
            times: (B, K) normalised times of the region frames.
            masks: (B, R, S, S) key-frame masks (NaN: the region is a box), or None.
            present: (B, R) bool, False for a padding region of a sample with fewer regions (the track token
                compares each region with the others present only); None for all present.
            question: (B, D) the mean embedding of each prompt's text, read by a relation token
                (``region_track_token="relation"``); None: zeros.
            answer_ids: (B,) each sample's first answer token (-100: none); given in training, a relation
                token's loss (:attr:`relation_loss`) is set from it.

        Returns:
            (B, R, 1 + k, D) tokens for each ``<region>``; (B, R, 1 + k + 1, D) with the track token last
            (``config.region_track_token``).
        """
        batch, regions, frames, _ = boxes.shape
        track = self.region_encoder.track_embedding
        tokens = self.region_encoder(hidden_states, boxes, times, masks, return_key_content=track is not None)
        if track is not None:
            tokens, key_content = tokens  # (B, R, K, D), (B, R, H_r)
        flat_visible = None if visible is None else visible.reshape(batch * regions, frames)
        selected, _ = self.selector(tokens.reshape(batch * regions, frames, -1), flat_visible)
        selected = selected.reshape(batch, regions, selected.shape[1], -1)
        if track is None:
            return selected
        summary = track(boxes.to(selected.dtype), visible, times, key_content, present)  # (B, R, D)
        relation = self.region_encoder.relation_embedding
        if relation is not None:
            related_tokens, related = relation(boxes.to(selected.dtype), visible, times, key_content, present, question)
            # With several regions the comparison lives in the later regions' relation tokens and the first
            # region's slot is zero (a pilot that kept its geometry there left the same-colour and same-shape
            # questions at their majority answer, docs/experiments.md, run 39); a lone region keeps its geometry
            # token, or a zero one (``region_lone_track``).
            several = related.any(1, keepdim=True).unsqueeze(-1)  # (B, 1, 1)
            lone = summary if self.config.region_lone_track == "geometry" else torch.zeros_like(summary)
            summary = torch.where(several, related_tokens.to(summary.dtype), lone)
            if answer_ids is not None:
                self.relation_loss = _relation_loss(relation, related_tokens, related, answer_ids)
        return torch.cat([selected, summary.unsqueeze(2).to(selected.dtype)], dim=2)

    def get_multimodal_features(
        self,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        region_pixel_values: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_visible: torch.Tensor | None = None,
        region_times: torch.Tensor | None = None,
        video_features: torch.Tensor | None = None,
        video_feature_mask: torch.Tensor | None = None,
        region_hidden_states: Sequence[torch.Tensor] | None = None,
        query_boxes: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
        answer_ids: torch.Tensor | None = None,
        frame_boxes: torch.Tensor | None = None,
        selector_text: torch.Tensor | None = None,
        select_query: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Video and region tokens of a batch, in placeholder order.

        Each part comes from pixels or from precomputed vision features (the vision tower is frozen in
        every published stage, so ``artemis data cache --features`` can run it once): ``video_features``
        replace ``pixel_values``/``frame_mask``, ``region_hidden_states`` replace ``region_pixel_values``.
        Both give the same tokens. Samples without a video (``frame_mask`` or ``video_feature_mask`` all
        False) or without regions (all boxes NaN) contribute no tokens, so image-, video- and text-only
        samples can share a batch. With ``config.image_tokens="patches"``, ``image_mask`` (B,) marks the
        samples whose media is one image: theirs are the image's projected patch features instead
        (:meth:`_media_tokens`). ``question`` (B, D) is the prompts' mean text embedding (a relation token
        and, without ``selector_text``, the selector's text query read it); ``selector_text`` (B, D) the
        selector's own summary of the same words (``frame_select_text_pool``). ``select_query`` (B, C_v)
        replaces the selector's box query where given (:meth:`project_video_features`).

        Returns:
            ``(video, region)``: (n_video_samples * N_v, D) and (n_regions * (1 + k), D), or None.
        """
        _check_feature_inputs(
            pixel_values, frame_mask, video_features, video_feature_mask, region_pixel_values, region_hidden_states
        )
        video_frames = region_frames = None
        if pixel_values is not None:
            if frame_mask is None:
                frame_mask = torch.ones(pixel_values.shape[:2], dtype=torch.bool, device=pixel_values.device)
            frame_mask = frame_mask.bool()
            video_frames = pixel_values[frame_mask]  # (n_frames, 3, S, S)
        has_regions = None
        if region_boxes is not None:
            if region_pixel_values is None and region_hidden_states is None:
                raise ValueError(
                    "region_boxes were given without region_pixel_values or region_hidden_states (the frames they "
                    "lie on)"
                )
            has_regions = torch.isfinite(region_boxes).all(-1).any(-1).any(-1)  # (B,) sample has a region
            if region_pixel_values is not None:
                region_frames = region_pixel_values[has_regions].flatten(0, 1)  # (n*K, 3, S, S)
        # One vision pass over the video frames and the region frames together.
        parts = [frames for frames in (video_frames, region_frames) if frames is not None and len(frames)]
        layers = [self.config.vision_feature_layer] if video_frames is not None and len(video_frames) else []
        if region_frames is not None and len(region_frames):
            layers += self.config.region_feature_layers
        states = self._vision_hidden_states(torch.cat(parts), layers) if parts else None
        split = len(video_frames) if video_frames is not None else 0

        pooled = None  # (n_video_samples, N_v, C_v)
        has_video = None  # (B,) which samples have a video, when known
        first_frames = None  # (n_video_samples, P, C_v), what an image sample's patch tokens are made of
        stem = None  # (n_video_samples, T, G*G, C_v) with a pixel stem
        if video_frames is not None and split:
            patches = states[self.config.vision_feature_layer][:split]  # (n_frames, P, C)
            grid = _per_frame(patches, frame_mask)  # (B, T, P, C)
            has_video = frame_mask.any(1)
            pooled = self.pool_video_features(grid[has_video], frame_mask[has_video])
            first_frames = grid[has_video][:, 0]
            if self.frame_stem is not None:
                stem = self.stem_features(video_frames, frame_mask)[has_video]  # the frames the tower read
        elif video_features is not None:
            pooled = self._checked_video_features(video_features, video_feature_mask)
            has_video = None if video_feature_mask is None else video_feature_mask.bool()
        video = None
        if pooled is not None and len(pooled):
            if query_boxes is not None and has_video is not None:
                query_boxes = query_boxes[has_video.to(query_boxes.device)]  # rows of the samples with a video
            if frame_boxes is not None and has_video is not None:
                frame_boxes = frame_boxes[has_video.to(frame_boxes.device)]
            if select_query is not None and has_video is not None:
                select_query = select_query[has_video.to(select_query.device)]
            text = None  # the selector's query without a box: the prompt's summary
            if self.config.frame_select_text_query:
                text = question if selector_text is None else selector_text
            if text is not None and has_video is not None:
                text = text[has_video.to(text.device)]
            images = self._image_rows(image_mask, has_video, frame_mask, len(pooled))  # (n,) bool, or None
            if images is None:
                video = self.project_video_features(pooled, query_boxes, frame_boxes, text, select_query, stem)
                video = video.flatten(0, 1)  # (n*N_v, D)
            else:
                video = self._media_tokens(
                    pooled, first_frames, images, query_boxes, frame_boxes, text, select_query, stem
                )

        levels = None  # each (n*K, P, C_v)
        if region_frames is not None and len(region_frames):
            levels = [states[layer][split:] for layer in self.config.region_feature_layers]
        elif region_hidden_states is not None and has_regions is not None and bool(has_regions.any()):
            levels = self._checked_region_hidden_states(region_hidden_states, has_regions)
        region = None
        if levels is not None:
            dtype = self.vision_tower.dtype
            boxes = region_boxes[has_regions]  # (n, R, K, 4)
            region_ok = torch.isfinite(boxes).all(-1).any(-1)  # (n, R): padding regions are all NaN
            safe_boxes = _fill_missing_boxes(boxes)
            vis = None if region_visible is None else region_visible[has_regions].bool()
            if vis is not None:
                vis = vis & torch.isfinite(boxes).all(-1)
            times = None if region_times is None else region_times[has_regions]
            masks = None if region_masks is None else region_masks[has_regions]
            asked = None if question is None else question[has_regions.to(question.device)]
            answers = None if answer_ids is None else answer_ids[has_regions.to(answer_ids.device)]
            tokens = self.region_tokens(
                levels, safe_boxes.to(dtype), vis, times, masks, region_ok, asked, answers
            )  # (n, R, 1+k, D)
            region = tokens[region_ok].flatten(0, 1)
        return video, region

    def _image_rows(
        self,
        image_mask: torch.Tensor | None,
        has_video: torch.Tensor | None,
        frame_mask: torch.Tensor | None,
        count: int,
    ) -> torch.Tensor | None:
        """(B,) ``image_mask`` -> (n,) over the samples with media, True for images; None when there are none."""
        if image_mask is None or not bool(image_mask.any()):
            return None
        if self.config.image_tokens != "patches":
            raise ValueError(
                f"image_mask marks image samples but config.image_tokens={self.config.image_tokens!r} makes an image "
                "a one-frame video; drop image_mask, or use a model with image_tokens='patches'"
            )
        image_mask = image_mask.bool().to(has_video.device if has_video is not None else image_mask.device)
        if has_video is not None:
            if bool((image_mask & ~has_video).any()):
                raise ValueError("image_mask marks a sample that has no frame; an image sample has exactly one")
            if frame_mask is not None and bool((frame_mask[image_mask].sum(1) != 1).any()):
                raise ValueError("image_mask marks a sample with several frames; an image sample has exactly one")
            image_mask = image_mask[has_video]
        if len(image_mask) != count:
            raise ValueError(f"image_mask has {len(image_mask)} rows for {count} samples with media")
        return image_mask

    def _media_tokens(
        self,
        pooled: torch.Tensor,
        first_frames: torch.Tensor | None,
        images: torch.Tensor,
        query_boxes: torch.Tensor | None,
        frame_boxes: torch.Tensor | None = None,
        question: torch.Tensor | None = None,
        select_query: torch.Tensor | None = None,
        stem: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tokens of a batch mixing images and videos (``image_tokens="patches"``), in sample order.

        An image's tokens are its one frame's patch features through the projector (the original Artemis'
        ``encode_images``); a video's are :meth:`project_video_features`.

        Args:
            pooled: (n, num_video_features, C_v) pooled features of the samples with media.
            first_frames: (n, P, C_v) each sample's first frame, or None when ``pooled`` came from a features
                cache: a one-frame video's pooled features (``"pooled"`` layout) end with its patch features.
            images: (n,) True for the image samples.
            query_boxes: (n, 4) or None, for the video samples' frame selector.
            frame_boxes: (n, T, 4) or None, for the selector's loss on the video samples.
            question: (n, D) or None, the prompts' mean text embedding, for a selector's text query.
            select_query: (n, C_v) or None, a selector query given beforehand (:meth:`frame_query`).
            stem: (n, T, G*G, C_v) or None, the pixel stem's features (:meth:`stem_features`).

        Returns:
            (n_images * P + n_videos * N_v, D).
        """
        cells = self.config.patches_per_side**2
        if first_frames is not None:
            patches = first_frames[images]  # (n_i, P, C_v)
        elif self.config.video_layout == "pooled":
            patches = pooled[images][:, -cells:]  # (n_i, P, C_v): the spatial mean over one frame is the frame
        else:
            raise ValueError(
                "images as patch tokens from video_features need the 'pooled' video layout (its features keep an "
                "image's patches); pass pixel_values for image samples, or use a features cache only for videos"
            )
        weight = self.mm_projector.linear_1.weight
        image_tokens = self.mm_projector(patches.to(device=weight.device, dtype=weight.dtype))  # (n_i, P, D)
        video_tokens = None
        if bool((~images).any()):
            query = None if query_boxes is None else query_boxes[~images.to(query_boxes.device)]
            targets = None if frame_boxes is None else frame_boxes[~images.to(frame_boxes.device)]
            text = None if question is None else question[~images.to(question.device)]
            given = None if select_query is None else select_query[~images.to(select_query.device)]
            fine = None if stem is None else stem[~images.to(stem.device)]
            video_tokens = self.project_video_features(pooled[~images], query, targets, text, given, fine)
        image_iter, video_iter = iter(image_tokens), iter(() if video_tokens is None else video_tokens)
        parts = [next(image_iter) if is_image else next(video_iter) for is_image in images.tolist()]
        return torch.cat(parts)  # (n_i * P + n_v * N_v, D)

    def _checked_video_features(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, N_f, C_v) precomputed pooled features -> the rows of the samples that have a video."""
        expected = (self.config.num_video_features, self.config.vision_config.hidden_size)
        if features.dim() != 3 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"video_features have shape {tuple(features.shape)}; expected (B, {expected[0]}, {expected[1]}) "
                "(config.num_video_features, vision hidden size): the output of pool_video_features for this model"
            )
        if mask is None:
            return features
        if mask.shape != features.shape[:1]:
            raise ValueError(
                f"video_feature_mask has shape {tuple(mask.shape)}; expected ({features.shape[0]},): one bool per "
                "sample, True where it has a video"
            )
        return features[mask.bool()]

    def _checked_region_hidden_states(
        self, hidden_states: Sequence[torch.Tensor], has_regions: torch.Tensor
    ) -> list[torch.Tensor]:
        """One (B, K, P, C_v) tensor per region level -> (n*K, P, C_v) of the samples with regions."""
        layers = self.config.region_feature_layers
        if len(hidden_states) != len(layers):
            raise ValueError(
                f"region_hidden_states has {len(hidden_states)} levels but region_feature_layers={layers} needs "
                f"{len(layers)}, one (B, K, P, C_v) tensor per layer"
            )
        levels = []
        for layer, level in zip(layers, hidden_states, strict=True):
            if level.dim() != 4 or level.shape[0] != has_regions.shape[0]:
                raise ValueError(
                    f"region_hidden_states for layer {layer} have shape {tuple(level.shape)}; expected "
                    f"({has_regions.shape[0]}, K, P, C_v): the patch tokens (no CLS) of each region frame"
                )
            tower = self.vision_tower
            levels.append(level[has_regions].flatten(0, 1).to(device=tower.device, dtype=tower.dtype))  # (n*K, P, C_v)
        return levels

    # --- forward ------------------------------------------------------------------------------------

    def _scatter(
        self, input_ids: torch.Tensor, embeds: torch.Tensor, features: torch.Tensor | None, token_id: int, name: str
    ) -> torch.Tensor:
        mask = input_ids == token_id  # (B, L)
        count = int(mask.sum())
        rows = 0 if features is None else features.shape[0]
        if count != rows:
            raise ValueError(
                f"the prompt has {count} {name} placeholder tokens but the inputs give {rows} {name} features; "
                f"build prompts with ArtemisProcessor, which expands each {name} to the exact count"
            )
        if count == 0:
            return embeds
        return embeds.masked_scatter(mask[..., None].to(embeds.device), features.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        region_pixel_values: torch.Tensor | None = None,
        region_boxes: torch.Tensor | None = None,
        region_visible: torch.Tensor | None = None,
        region_times: torch.Tensor | None = None,
        video_features: torch.Tensor | None = None,
        video_feature_mask: torch.Tensor | None = None,
        region_hidden_states: Sequence[torch.Tensor] | None = None,
        query_boxes: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
        frame_boxes: torch.Tensor | None = None,
        frame_tags: torch.Tensor | None = None,
        answer_mask: torch.Tensor | None = None,
        select_query: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Run the LLM on text with video and region tokens scattered into its embeddings.

        Args:
            input_ids: (B, L) with ``video_token_id`` / ``region_token_id`` placeholders.
            pixel_values: (B, T, 3, S, S) sampled video frames; ``frame_mask`` (B, T) marks real ones.
            region_pixel_values: (B, K, 3, S, S) key frame then tracked frames.
            region_boxes: (B, R, K, 4) normalised xyxy on the square input; NaN where unknown, a region
                that is NaN everywhere is padding.
            region_visible: (B, R, K) target visibility; invisible tracked frames are never selected.
            region_times: (B, K) normalised time of each region frame.
            video_features: (B, config.num_video_features, C_v) precomputed :meth:`pool_video_features` output, instead
                of ``pixel_values``; ``video_feature_mask`` (B,) marks the samples that have a video
                (default: all). A sample without one may hold any values (the collator writes zeros).
            region_hidden_states: instead of ``region_pixel_values``, one (B, K, P, C_v) tensor per
                ``config.region_feature_layers``: the vision tower's patch tokens (CLS dropped) of each
                region frame at that layer.
            query_boxes: (B, 4) the target's normalised xyxy box on the first video frame (NaN rows: none),
                which a selector with ``frame_select_query`` scores each frame's tokens against.
            image_mask: (B,) True for the samples whose media is one image, given as its patch tokens
                (``config.image_tokens="patches"``; the prompt expands its ``<video>`` to ``num_image_tokens``).
            region_masks: (B, R, S, S) each region's mask on its key frame, in [0, 1] on the square input,
                NaN for a region given by its box; used with ``config.region_key_mask``.
            frame_boxes: (B, T, 4) the target's normalised box on each video frame (NaN: absent), from a
                box-output clip's answer; in training with ``config.frame_select_box_loss`` the selector's
                loss against it is added to the loss (:func:`~artemis.model.frame_tokens.box_cells_loss`).
            frame_tags: (B, L) the frame each token is about (:func:`~artemis.model.frame_tokens.frame_tags`),
                with ``config.frame_index_text``; computed from ``input_ids`` when not given. Generation
                passes them, as a decoding step's ``input_ids`` no longer show the "Frame k" before them.
            answer_mask: (B, 1, L_new, L) with ``config.frame_answer_isolation``: which keys each new token
                attends to (:func:`~artemis.model.frame_tokens.isolation_mask`), computed from ``input_ids``
                and ``attention_mask`` when not given. Generation passes each step's rows of the whole
                sequence's mask.
            select_query: (B, C_v) a frame selector's query computed beforehand by :meth:`frame_query` (NaN
                rows: none), used instead of the one ``query_boxes`` give.
            labels: (B, L) with -100 on positions that carry no loss.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        # After the prefill step the KV cache holds the visual tokens; a placeholder id that appears in
        # newly generated text is then only a word, not a slot to fill.
        # transformers 5.24 renamed the LLM's ``past_key_values`` to ``cache`` (the old name warns until 5.40):
        # accept either, and pass on only the one given.
        cache = kwargs.get("cache", past_key_values)
        decoding = cache is not None and cache.get_seq_length() > 0
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, L, D)
        relation = self.config.region_track_token == "relation"
        self.relation_loss = self.frame_select_loss = None
        if input_ids is not None and not decoding:
            question = answer_ids = selector_text = None
            if (relation and region_boxes is not None) or self.config.frame_select_text_query:
                question, answer_ids, selector_text = self._question_and_answer(
                    input_ids, inputs_embeds, attention_mask, labels
                )
            video, region = self.get_multimodal_features(
                pixel_values, frame_mask, region_pixel_values, region_boxes, region_visible, region_times,
                video_features, video_feature_mask, region_hidden_states, query_boxes, image_mask, region_masks,
                question, answer_ids, frame_boxes, selector_text, select_query,
            )  # fmt: skip
            inputs_embeds = self._scatter(input_ids, inputs_embeds, video, self.config.video_token_id, "<video>")
            inputs_embeds = self._scatter(input_ids, inputs_embeds, region, self.config.region_token_id, "<region>")
        if self.config.frame_aligned_positions and position_ids is None and input_ids is not None:
            if decoding:
                raise ValueError(
                    "frame_aligned_positions: a decoding step needs position_ids from the whole sequence "
                    "(generate passes them); pass position_ids"
                )
            position_ids = aligned_positions(
                input_ids, attention_mask, self.config.frame_label_ids, self.config.video_token_id
            )
        llm_mask = attention_mask  # what the LLM attends through; the 2-D mask stays for the rest
        if self.config.frame_answer_isolation and (answer_mask is not None or input_ids is not None):
            if answer_mask is None and decoding:
                raise ValueError(
                    "frame_answer_isolation: a decoding step needs answer_mask, the (B, 1, step, L) rows of the whole "
                    "sequence's isolation_mask (generate passes it)"
                )
            if answer_mask is None:
                answer_mask = isolation_mask(
                    input_ids, attention_mask, self.config.frame_label_ids, self.config.video_token_id
                )
            llm_mask = self._additive(answer_mask, inputs_embeds.dtype)
        if self.config.frame_index_text and (frame_tags is not None or input_ids is not None):
            inputs_embeds = self._tag_text(inputs_embeds, input_ids, frame_tags)
        if past_key_values is not None:
            kwargs["past_key_values"] = past_key_values
        ordered = labels is not None and self.training and self.box_label_sigma > 0
        output = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=llm_mask,
            position_ids=position_ids,
            labels=None if ordered else labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        if ordered:
            output.loss = ordered_number_loss(
                output.logits, labels, self.box_number_ids, self.box_label_sigma, kwargs.get("num_items_in_batch")
            )
        weight = self.config.region_relation_loss
        if output.loss is not None and self.relation_loss is not None and weight:
            output.loss = output.loss + weight * self.relation_loss.to(output.loss.dtype)
        weight = self.config.frame_select_box_loss
        if output.loss is not None and self.frame_select_loss is not None and weight:
            output.loss = output.loss + weight * self.frame_select_loss.to(output.loss.dtype)
        return output

    @staticmethod
    def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A boolean attention mask as the additive one every attention implementation reads (0 or the minimum)."""
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)

    def _tag_text(
        self, embeds: torch.Tensor, input_ids: torch.Tensor | None, tags: torch.Tensor | None
    ) -> torch.Tensor:
        """``frame_index_text``: each text token about frame k gets frame k's index vector, as frame k's video
        tokens did in :meth:`project_video_features` (placeholders are left alone)."""
        if tags is None:
            tags = compute_frame_tags(input_ids, self.config.frame_label_ids)
        table = self.frame_indices.weight.to(embeds.dtype)
        table = torch.cat([table.new_zeros(1, table.shape[1]), table])  # row 0: no frame
        added = table[tags.to(embeds.device)]  # (B, L, D)
        if input_ids is not None:
            text = (input_ids != self.config.video_token_id) & (input_ids != self.config.region_token_id)
            added = added * text[..., None].to(embeds.dtype)
        return embeds + added

    def _question_and_answer(
        self,
        input_ids: torch.Tensor,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """What a relation token and the frame selector's text query read: (B, D) the mean embedding of each
        prompt's text tokens (not the placeholders, the padding or the answer); with ``labels`` (B,) each
        sample's first answer token (-100 where it has none); and (B, D) the selector's attention-pooled
        summary of the same tokens (:meth:`FrameTokenSelector.pool_text`; None unless
        ``frame_select_text_pool="attention"``)."""
        text = (input_ids != self.config.video_token_id) & (input_ids != self.config.region_token_id)
        if attention_mask is not None:
            text = text & attention_mask.bool()
        answer_ids = None
        if labels is not None:
            answered = labels != -100
            text = text & ~answered
            first = answered.float().argmax(1)  # (B,) first labelled position (0 where none)
            answer_ids = torch.where(answered.any(1), labels.gather(1, first[:, None]).squeeze(1), -100)
        weight = text.to(embeds.dtype).unsqueeze(-1)  # (B, L, 1)
        question = (embeds * weight).sum(1) / weight.sum(1).clamp(min=1)
        selector_text = None  # the selector reads ``question`` unless it pools the words its own way
        if self.frame_selector is not None and self.frame_selector.text_pool is not None:
            selector_text = self.frame_selector.pool_text(embeds, text)
        return question, answer_ids, selector_text

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, cache=None, **kwargs):
        # ``cache`` is named here so that ``generate`` accepts a cache to continue from (transformers >= 5.24
        # checks a given cache's name against this signature); older versions pass ``past_key_values``.
        if cache is not None:
            kwargs["cache"] = cache
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        config = self.config
        if config.reads_frame_labels and inputs.get("input_ids") is not None:
            # All are read off the whole sequence so far (prompt and answer); this step reads its last ``step``.
            full, step = (args[0] if args else kwargs["input_ids"]), inputs["input_ids"].shape[1]
            if config.frame_index_text:
                inputs["frame_tags"] = compute_frame_tags(full, config.frame_label_ids)[:, -step:]
            if config.frame_aligned_positions:
                mask = kwargs.get("attention_mask")
                positions = aligned_positions(full, mask, config.frame_label_ids, config.video_token_id)
                inputs["position_ids"] = positions[:, -step:]
            if config.frame_answer_isolation:
                mask = kwargs.get("attention_mask")
                inputs["answer_mask"] = isolation_mask(
                    full, mask, config.frame_label_ids, config.video_token_id, rows=step
                )
        if not is_first_iteration and kwargs.get("use_cache", True):
            for name in VISUAL_INPUTS:
                inputs.pop(name, None)
        return inputs


def _per_frame(rows: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Rows of the real frames (n_frames, ...) -> (B, T, ...) in their samples' places, zeros on padding frames."""
    out = rows.new_zeros(*frame_mask.shape, *rows.shape[1:])
    out[frame_mask.to(out.device)] = rows
    return out


def _check_feature_inputs(
    pixel_values: torch.Tensor | None,
    frame_mask: torch.Tensor | None,
    video_features: torch.Tensor | None,
    video_feature_mask: torch.Tensor | None,
    region_pixel_values: torch.Tensor | None,
    region_hidden_states: Sequence[torch.Tensor] | None,
) -> None:
    """Each visual part comes from pixels or from precomputed features, never both."""
    if pixel_values is not None and video_features is not None:
        raise ValueError(
            "got both pixel_values and video_features for the video; pass one (video_features are the pooled "
            "vision features of those pixels, e.g. from `artemis data cache --features`)"
        )
    if region_pixel_values is not None and region_hidden_states is not None:
        raise ValueError(
            "got both region_pixel_values and region_hidden_states for the region frames; pass one "
            "(region_hidden_states are the vision features of those frames)"
        )
    if video_features is not None and frame_mask is not None:
        raise ValueError("frame_mask goes with pixel_values; with video_features mark samples by video_feature_mask")
    if video_feature_mask is not None and video_features is None:
        raise ValueError("video_feature_mask was given without video_features")


def _relation_loss(
    relation: RelationEmbedding, tokens: torch.Tensor, related: torch.Tensor, answer_ids: torch.Tensor
) -> torch.Tensor | None:
    """Cross-entropy of the relation tokens' answer head against each sample's first answer token.

    tokens (B, R, D), related (B, R) which regions have a relation token, answer_ids (B,) -> a scalar, or
    None when no region with a relation token has an answer.
    """
    targets = answer_ids.to(tokens.device)[:, None].expand(related.shape)  # (B, R)
    rows = related & (targets != -100)
    if not bool(rows.any()):
        return None
    logits = relation.answer_head(tokens[rows])  # (n, vocab)
    return F.cross_entropy(logits.float(), targets[rows])


def _fill_missing_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Replace NaN boxes (frames where the target is unknown) by the nearest known box of the region.

    RoIAlign needs a finite box everywhere; those tokens are masked out of the selection anyway.
    boxes: (n, R, K, 4) -> same shape, finite wherever the region has any finite box.
    """
    known = torch.isfinite(boxes).all(-1)  # (n, R, K)
    if bool(known.all()):
        return boxes
    frames = boxes.shape[2]
    positions = torch.arange(frames, device=boxes.device)
    distance = (positions[:, None] - positions[None, :]).abs()  # (K, K)
    # For each frame pick the known frame at the smallest distance (ties go to the earlier frame).
    cost = distance[None, None].expand(*known.shape[:2], frames, frames).float()  # (n, R, K, K)
    cost = cost.masked_fill(~known[:, :, None, :], float("inf"))
    nearest = cost.argmin(-1)  # (n, R, K)
    filled = torch.gather(boxes, 2, nearest[..., None].expand(-1, -1, -1, 4))
    return torch.where(known[..., None], boxes, torch.nan_to_num(filled, nan=0.0))
