"""The region encoder: one token per (frame, box) from multi-level vision features (GPT4RoI / Artemis).

Steps, for F frames and B boxes per frame:

1. take L hidden states of the vision tower (patch tokens), reshape to maps ``(F, C, h, w)`` and resize
   level ``i`` to ``h * 2**(L-1-i)`` so the finest level is the largest (Artemis: 128, 64, 32, 16);
2. fuse them: append 2 xy-coordinate channels, a 1x1 conv per level, then ``num_fuse`` rounds of 3x3
   conv + GroupNorm + ReLU in which each level swaps a quarter of its channels with each neighbour;
3. RoIAlign each box on each level (``output_size``, ``sampling_ratio``, ``aligned=True``), a 3x3 conv per
   level, sum over levels, ReLU, flatten, Linear to ``region_hidden_size``;
4. add a box position embedding (an MLP on the box), then a Linear to the LLM width.

With ``config.region_key_mask`` a region given as a mask is encoded on its key frame from the features
inside the mask: the key frame's patch maps are multiplied by the mask (its area-weighted coverage of each
cell) before step 2, so neither the fuse module nor RoIAlign sees what lies outside it, such as another
object inside the box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from artemis.errors import ConfigError
from artemis.model.configuration import ArtemisConfig


class ConvGNReLU(nn.Sequential):
    """3x3 conv (no bias, as a normalised conv needs none), GroupNorm, ReLU."""

    def __init__(self, channels: int, groups: int):
        super().__init__(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(groups, channels),
            nn.ReLU(inplace=True),
        )


class MultiLevelFuse(nn.Module):
    """Fuse L feature maps of different sizes by exchanging channels between neighbouring levels."""

    def __init__(self, in_dim: int, embed_dim: int, num_levels: int, num_fuse: int, norm_groups: int):
        super().__init__()
        self.num_levels = num_levels
        self.shuffle = embed_dim // 4  # channels taken from each neighbour
        self.keep = embed_dim - 2 * self.shuffle  # channels a level keeps of its own
        self.input_convs = nn.ModuleList(nn.Conv2d(in_dim + 2, embed_dim, 1) for _ in range(num_levels))
        self.fuse_convs = nn.ModuleList(ConvGNReLU(embed_dim, norm_groups) for _ in range(num_fuse))

    @staticmethod
    def _coordinates(feature: torch.Tensor) -> torch.Tensor:
        """Two channels holding x and y in [-1, 1] at each position. (F, 2, h, w)"""
        frames, _, height, width = feature.shape
        ys = torch.linspace(-1, 1, height, device=feature.device, dtype=feature.dtype)
        xs = torch.linspace(-1, 1, width, device=feature.device, dtype=feature.dtype)
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([x, y]).expand(frames, -1, -1, -1)

    def _mix(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each level keeps its first channels and takes a quarter from the level above and below."""
        mixed = []
        for index, target in enumerate(levels):
            upper = levels[min(index + 1, self.num_levels - 1)]
            lower = levels[max(index - 1, 0)]
            size = target.shape[-2:]
            from_upper = upper[:, self.keep + self.shuffle :]
            from_lower = lower[:, self.keep : self.keep + self.shuffle]
            from_upper = F.interpolate(from_upper, size=size, mode="bilinear", align_corners=True)
            from_lower = F.interpolate(from_lower, size=size, mode="bilinear", align_corners=True)
            mixed.append(torch.cat([target[:, : self.keep], from_upper, from_lower], dim=1))
        return mixed

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """levels: L maps (F, C_in, h_i, w_i) -> L maps (F, C, h_i, w_i)."""
        levels = [
            conv(torch.cat([feature, self._coordinates(feature)], dim=1))
            for conv, feature in zip(self.input_convs, levels, strict=True)
        ]
        for conv in self.fuse_convs:
            levels = [conv(feature) for feature in self._mix(levels)]
        return levels


def _roi_align_op(backend: str):
    """The RoIAlign callable for a backend name, with torchvision's signature."""
    if backend == "torchvision":
        from torchvision.ops import roi_align

        return roi_align
    if backend == "mmcv":
        try:
            from mmcv.ops import roi_align as mmcv_roi_align
        except ImportError as error:
            raise ConfigError(
                "roi_backend='mmcv' needs mmcv with its compiled ops (pip install 'artemis-video[gpu]'); "
                "use roi_backend='torchvision', which gives the same values"
            ) from error

        def roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
            return mmcv_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, "avg", aligned)

        return roi_align
    raise ConfigError(f"roi_backend={backend!r} is not valid; expected 'torchvision' or 'mmcv'")


class BoxEmbedding(nn.Module):
    """MLP on the box: Linear(n, 256), ReLU, LN, Linear(256, out), ReLU, LN (Artemis' position embedding).

    ``absolute`` feeds the normalised ``xyxy`` box (4 values). ``relative`` feeds the box, its offset from
    the key-frame box, that offset signed by the direction of time (``offset * sign(t - t_key)``: for a
    target moving steadily it points along the motion whether the frame comes before or after the key
    frame, so the direction is a linear read-out instead of a product the MLP must learn) and the
    token's normalised time (13 values).
    """

    def __init__(self, mode: str, out_dim: int, hidden: int = 256):
        super().__init__()
        self.mode = mode
        in_dim = 4 if mode == "absolute" else 13
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, out_dim),
            nn.ReLU(inplace=True),
            nn.LayerNorm(out_dim),
        )

    def forward(self, boxes: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """boxes: (..., K, 4), frame 0 of K the key frame; times: (..., K) in [0, 1] -> (..., K, out)."""
        if self.mode == "absolute":
            return self.mlp(boxes)
        if times is None:
            times = torch.zeros(boxes.shape[:-1], dtype=boxes.dtype, device=boxes.device)
        times = times.to(boxes.dtype)
        offsets = boxes - boxes[..., :1, :]  # (..., K, 4) offset from the key-frame box
        forward = offsets * torch.sign(times - times[..., :1]).unsqueeze(-1)  # (..., K, 4) along time
        return self.mlp(torch.cat([boxes, offsets, forward, times.unsqueeze(-1)], dim=-1))


def _standardise(norm: nn.BatchNorm1d, rows: torch.Tensor) -> torch.Tensor:
    """``rows`` (n, F) through ``norm``, with the batch's statistics in training when there are two rows or more
    (one row has no spread: the running statistics then)."""
    batch_stats = norm.training and len(rows) > 1
    return F.batch_norm(
        rows, norm.running_mean, norm.running_var, training=batch_stats, momentum=norm.momentum, eps=norm.eps
    )


class TrackEmbedding(nn.Module):
    """One token per region: the geometry of its track, and how it differs from the other regions asked about
    (``region_track_token``).

    Geometry (15 numbers, normalised units on the square model input, times in [0, 1] of the video): the
    first and the last visible box in time, the centre's displacement between them, that displacement over
    the time between them (the velocity), the centre's path length over that time (the mean speed), and
    the two times. Relations: the same 15 numbers and the region's key-frame RoI feature (before the box
    embedding), each minus its mean over the sample's regions; all zero for a lone region. With two regions
    the sign of "end x minus the mean" says which one ends further left, and the RoI difference is free of
    colour exactly when the two share a colour: answers a small LLM could otherwise only get by comparing
    tokens at two places in its context. Written by hand: no library summarises a box track.
    """

    num_geometry = 15

    def __init__(self, content_dim: int, out_dim: int, hidden: int = 256):
        super().__init__()
        in_dim = 2 * self.num_geometry + content_dim
        # Each input standardised over the batch's regions (running statistics at inference), as the RoI
        # feature is by region_content_norm "batch": boxes and times lie in [0, 1] and their differences
        # between two regions are a few hundredths, which next to the RoI difference reached the LLM as
        # an almost constant token (run 37, docs/experiments.md).
        self.norm = nn.BatchNorm1d(in_dim, affine=False)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    @classmethod
    def features(cls, boxes: torch.Tensor, visible: torch.Tensor | None, times: torch.Tensor | None) -> torch.Tensor:
        """The geometry: boxes (..., K, 4) key frame first, visible (..., K) bool, times (..., K) -> (..., 15)."""
        frames = boxes.shape[-2]
        if times is None:  # no times: the region frames in their given order, evenly spaced
            times = torch.linspace(0, 1, frames, dtype=boxes.dtype, device=boxes.device).expand(boxes.shape[:-1])
        times = times.to(boxes.dtype)
        seen = torch.isfinite(boxes).all(-1)
        if visible is not None:
            seen = seen & visible.to(torch.bool)
        seen[..., 0] = True  # the key frame: the user's own box
        order = torch.argsort(torch.where(seen, times, torch.full_like(times, 2.0)), dim=-1, stable=True)
        boxes = torch.gather(torch.nan_to_num(boxes), -2, order.unsqueeze(-1).expand_as(boxes))
        times = torch.gather(times, -1, order)
        seen = torch.gather(seen, -1, order)  # visible frames first, in time order
        count = seen.sum(-1, keepdim=True)  # (..., 1) >= 1
        last = (count - 1).unsqueeze(-1)
        first_box, last_box = boxes[..., 0, :], torch.gather(boxes, -2, last.expand(*last.shape[:-1], 4)).squeeze(-2)
        first_time, last_time = times[..., :1], torch.gather(times, -1, count - 1)
        centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (..., K, 2)
        shift = (last_box[..., :2] + last_box[..., 2:]) / 2 - (first_box[..., :2] + first_box[..., 2:]) / 2
        steps = (centres[..., 1:, :] - centres[..., :-1, :]).norm(dim=-1)  # (..., K-1)
        path = (steps * (seen[..., 1:] & seen[..., :-1])).sum(-1, keepdim=True)  # only between visible frames
        span = (last_time - first_time).clamp(min=1e-3)
        return torch.cat([first_box, last_box, shift, shift / span, path / span, first_time, last_time], dim=-1)

    @staticmethod
    def relative(values: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        """values (B, R, F) minus their mean over each sample's present regions; absent regions get zeros."""
        if present is None:
            present = torch.ones(values.shape[:2], dtype=torch.bool, device=values.device)
        weight = present.to(values.dtype).unsqueeze(-1)  # (B, R, 1)
        mean = (values * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp(min=1)
        return (values - mean) * weight

    def forward(
        self,
        boxes: torch.Tensor,
        visible: torch.Tensor | None,
        times: torch.Tensor | None,
        key_content: torch.Tensor,
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """boxes (B, R, K, 4), visible (B, R, K), times (B, K), key_content (B, R, C), present (B, R) -> (B, R, out)."""
        if times is not None:
            times = times[:, None, :].expand(boxes.shape[:-1])
        if present is None:
            present = torch.ones(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
        geometry = self.features(boxes, visible, times)  # (B, R, 15)
        relations = [self.relative(geometry, present), self.relative(key_content.to(geometry.dtype), present)]
        inputs = torch.cat([geometry, *relations], dim=-1)  # (B, R, F)
        rows = inputs[present]  # (n, F): padding regions take no part in the batch statistics
        out = self.mlp(_standardise(self.norm, rows))
        return out.new_zeros(*inputs.shape[:2], out.shape[-1]).index_put((present,), out)


class RelationEmbedding(nn.Module):
    """For each region after the first, how it relates to the first region, given the question; it takes the
    place of that region's track token (``region_track_token="relation"``).

    Its inputs, for region ``r`` against the first region ``1`` of the sample: both tracks' 15 geometry
    numbers (:meth:`TrackEmbedding.features`), their difference, absolute difference and product, the
    key-frame RoI features' difference, absolute difference and product, and the question: the mean input
    embedding of the prompt's text tokens. The absolute differences and products make "the same" and
    "in the same direction" linear read-outs (equality is not a sign of a difference; InferSent's
    ``[u, v, |u - v|, u * v]`` features do the same for sentence pairs), and the question says which of the
    numbers the answer depends on: a pair answer depends on both, and a two-layer LLM did not learn to
    combine them across its context (docs/experiments.md, "Why pairs are not learnt"). Inputs are
    standardised over the batch's rows (a BatchNorm without affine parameters), then an MLP and a LayerNorm.

    The first region of a sample, and a lone region, get zeros (the model then zeroes the first region's
    track token and keeps a lone region's geometry token).
    ``answer_head`` reads the token's answer: trained to predict the first answer token
    (``region_relation_loss``), it makes the token hold what the LLM is to say. Written by hand: no
    library has a relation token.
    """

    def __init__(self, content_dim: int, question_dim: int, out_dim: int, vocab_size: int, hidden: int = 256):
        super().__init__()
        geometry = TrackEmbedding.num_geometry
        in_dim = 5 * geometry + 3 * content_dim + question_dim
        self.question_dim = question_dim
        self.norm = nn.BatchNorm1d(in_dim, affine=False)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        self.out_norm = nn.LayerNorm(out_dim)
        self.answer_head = nn.Linear(out_dim, vocab_size)

    def forward(
        self,
        boxes: torch.Tensor,
        visible: torch.Tensor | None,
        times: torch.Tensor | None,
        key_content: torch.Tensor,
        present: torch.Tensor | None,
        question: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """boxes (B, R, K, 4), visible (B, R, K), times (B, K), key_content (B, R, C), present (B, R),
        question (B, Q) -> tokens (B, R, out) and which regions have a relation token (B, R) bool."""
        batch, regions = boxes.shape[:2]
        if times is not None:
            times = times[:, None, :].expand(boxes.shape[:-1])
        if present is None:
            present = torch.ones(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
        geometry = TrackEmbedding.features(boxes, visible, times)  # (B, R, 15)
        content = key_content.to(geometry.dtype)
        order = torch.cumsum(present.long(), 1)  # 1 at the first present region, 2 at the second, ...
        first = (order.eq(1) & present).float().argmax(1)  # (B,) index of each sample's first region
        rows = torch.arange(batch, device=boxes.device)
        first_geometry = geometry[rows, first][:, None].expand_as(geometry)  # (B, R, 15)
        first_content = content[rows, first][:, None].expand_as(content)  # (B, R, C)
        if question is None:  # no prompt given: an empty question
            question = geometry.new_zeros(batch, self.question_dim)
        question = question.to(geometry.dtype)[:, None].expand(batch, regions, -1)
        inputs = torch.cat(
            [
                geometry, first_geometry, geometry - first_geometry, (geometry - first_geometry).abs(),
                geometry * first_geometry, content - first_content, (content - first_content).abs(),
                content * first_content, question,
            ],
            dim=-1,
        )  # fmt: skip
        related = present & order.gt(1)  # (B, R) regions after the first
        out = inputs.new_zeros(batch, regions, self.out_norm.normalized_shape[0])
        if not bool(related.any()):
            return out, related
        chosen = inputs[related]  # (n, F)
        return out.index_put((related,), self.out_norm(self.mlp(_standardise(self.norm, chosen)))), related


class MaskEmbedding(nn.Module):
    """What a region given as a mask adds to the key token its box gives (``region_mask_mode="add"``).

    Its inputs: the key-frame RoI feature pooled from the maps inside the mask (as ``"replace"`` pools it),
    the same RoI's feature from the whole maps (what the box gives), and the mask's shape inside its box
    (the share of each of ``grid`` x ``grid`` cells over the box that it covers); a LayerNorm, then an MLP.
    Its last layer starts at zero, so a model given this embedding answers as before until it is trained,
    and a region given by its box never gets it: the box path is the same whatever the mask training did.
    With ``"replace"`` the masked key token took the box token's place, the region encoder learnt shape
    from the zeros around the silhouette and lost it on boxes, and the LLM lost the box token's colour on
    targets alone in their box (docs/experiments.md, runs 34-39). Written by hand: no library encodes a
    mask prompt beside a box.
    """

    grid = 8

    def __init__(self, content_dim: int, out_dim: int, hidden: int = 256):
        super().__init__()
        in_dim = 2 * content_dim + self.grid * self.grid
        self.norm = nn.LayerNorm(in_dim)
        self.hidden = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU())
        # The last layer's parameters are the module's own, so the model's weight initialisation (which
        # visits modules holding parameters) finds this module and starts them at zero.
        self.out_weight = nn.Parameter(torch.zeros(out_dim, hidden))
        self.out_bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, masked: torch.Tensor, box: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """masked, box (n, C) RoI features; shape (n, grid * grid) in [0, 1] -> (n, out)."""
        inputs = torch.cat([masked, box.to(masked.dtype), shape.to(masked.dtype)], -1)
        return F.linear(self.hidden(self.norm(inputs)), self.out_weight, self.out_bias)


def _carry_masks(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each key-frame mask moved onto every region frame's box: (n, S, S), boxes (n, K, 4) key first -> (n*K, S, S).

    The mask is scaled and shifted so that the key box lands on the frame's box (a target that only moves and
    changes size keeps its shape), by ``grid_sample`` with zeros outside.
    """
    count, frames = boxes.shape[:2]
    size = masks.shape[-1]
    key = boxes[:, :1]  # (n, 1, 4)
    scale = (key[..., 2:] - key[..., :2]) / (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)  # (n, K, 2)
    axis = (torch.arange(size, device=masks.device, dtype=masks.dtype) + 0.5) / size  # pixel centres in [0, 1]
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([grid_x, grid_y], -1)  # (S, S, 2) as (x, y)
    source = key[..., None, None, :2] + (points - boxes[..., None, None, :2]) * scale[..., None, None, :]
    grid = (source * 2 - 1).reshape(count * frames, size, size, 2)  # (n*K, S, S, 2) in [-1, 1]
    expanded = masks[:, None].expand(count, frames, size, size).reshape(count * frames, 1, size, size)
    return F.grid_sample(expanded, grid.to(masks.dtype), align_corners=False, padding_mode="zeros")[:, 0]


def _content_norm(kind: bool | str, width: int) -> nn.Module:
    """The RoI feature's normalisation (``region_content_norm``).

    ``"batch"`` has no affine parameters on purpose: with a learnable scale the RoI part could still
    shrink to nothing, which is the collapse it is there to prevent.
    """
    if kind == "batch":
        return nn.BatchNorm1d(width, affine=False)
    if kind in (True, "layer"):
        return nn.LayerNorm(width)
    return nn.Identity()


class RegionEncoder(nn.Module):
    """Boxes on frames -> one LLM-width token per box."""

    def __init__(self, config: ArtemisConfig):
        super().__init__()
        self.image_size = config.vision_config.image_size
        self.num_levels = len(config.region_feature_layers)
        self.output_size = config.roi_output_size
        self.sampling_ratio = config.roi_sampling_ratio
        self.roi_backend = config.roi_backend
        embed = config.region_embed_dim
        self.fuse = MultiLevelFuse(
            config.vision_config.hidden_size, embed, self.num_levels, config.region_num_fuse, config.region_norm_groups
        )
        self.level_convs = nn.ModuleList(nn.Conv2d(embed, embed, 3, padding=1) for _ in range(self.num_levels))
        self.flatten_linear = nn.Linear(embed * self.output_size**2, config.region_hidden_size)
        # Optional (not in the original): keeps the RoI feature on the box embedding's scale.
        self.content_norm = _content_norm(config.region_content_norm, config.region_hidden_size)
        self.box_embedding = BoxEmbedding(config.box_embedding, config.region_hidden_size)
        self.out_proj = nn.Linear(config.region_hidden_size, config.text_config.hidden_size)
        self.key_mask = bool(config.region_key_mask)
        self.mask_frames = config.region_mask_frames
        # Optional (not in the original): what a mask prompt adds to the box's key token.
        self.mask_embedding = (
            MaskEmbedding(config.region_hidden_size, config.text_config.hidden_size)
            if config.region_key_mask and config.region_mask_mode == "add"
            else None
        )
        # Optional (not in the original): one token per region for the geometry of its whole track.
        text = config.text_config
        self.track_embedding = (
            TrackEmbedding(config.region_hidden_size, text.hidden_size) if config.region_track_token else None
        )
        # Optional (not in the original): the track token of each region after the first.
        self.relation_embedding = (
            RelationEmbedding(config.region_hidden_size, text.hidden_size, text.hidden_size, text.vocab_size)
            if config.region_track_token == "relation"
            else None
        )

    def _masked_key_rois(
        self,
        hidden_states: list[torch.Tensor],
        rois: torch.Tensor,
        masks: torch.Tensor,
        frames: int,
        boxes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Each masked region's key-frame RoI pooled from its own masked maps: ``(rows, own, pooled, masks)``,
        the rows of ``rois`` they stand for, those RoIs indexed by mask (n, 5), the (n, C, o, o) pooled
        features and the (n, S, S) masks used; None when no region has a mask.

        With ``boxes`` (B, R, K, 4), every region frame's RoI of a masked region is pooled that way, from the
        key mask carried onto that frame's box (``region_mask_frames="all"``).

        Each masked region gets its own copy of its key frame's maps (the maps are shared by the regions of
        a frame, the masks are not). rois rows are frame-major: row ``(b * K + k) * R + r``.
        """
        regions = masks.shape[1]
        has_mask = torch.isfinite(masks).flatten(2).all(-1)  # (B, R)
        if not bool(has_mask.any()):
            return None
        sample, region = has_mask.nonzero(as_tuple=True)  # (n,), (n,)
        region_masks = masks[sample, region]  # (n, S, S)
        if boxes is None:
            masked_frames = sample * frames  # row of each key frame among the B*K region frames
        else:  # every region frame, with the key mask moved onto that frame's box
            offsets = torch.arange(frames, device=sample.device)
            masked_frames = (sample[:, None] * frames + offsets).flatten()  # (n*K,)
            region_masks = _carry_masks(region_masks, boxes[sample, region])  # (n*K, S, S)
            region = region.repeat_interleave(frames)
        maps = self.feature_maps([level[masked_frames] for level in hidden_states], region_masks)
        rows = masked_frames * regions + region  # rows of those RoIs
        own = torch.cat([torch.arange(len(rows), device=rois.device)[:, None].to(rois.dtype), rois[rows, 1:]], 1)
        return rows, own, self._pool(maps, own), region_masks

    def feature_maps(self, hidden_states: list[torch.Tensor], masks: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Patch tokens of each level (F, P, C) -> fused maps, finest (largest) first. L x (F, C, h_i, w_i)

        ``masks`` (F, S, S) in [0, 1] on the square model input, one per frame: the patch grid is multiplied
        by the mask's coverage of each patch, and each resized level again by its coverage of each cell (so
        the resize cannot carry a patch outside the mask into a cell inside it), before the fuse module.
        """
        frames, patches, channels = hidden_states[0].shape
        side = round(patches**0.5)

        def covered(grid: torch.Tensor) -> torch.Tensor:
            if masks is None:
                return grid
            coverage = F.interpolate(masks[:, None].to(grid.dtype), size=grid.shape[-2:], mode="area")  # (F, 1, h, w)
            return grid * coverage

        maps = []
        for level, tokens in enumerate(hidden_states):
            grid = covered(tokens.transpose(1, 2).reshape(frames, channels, side, side))  # (F, C, side, side)
            scale = 2 ** (self.num_levels - 1 - level)
            size = (side * scale, side * scale)
            maps.append(covered(F.interpolate(grid, size=size, mode="bilinear", align_corners=True)))  # (F, C, h, w)
        return self.fuse(maps)

    def _pool(self, maps: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """RoIAlign ``rois`` (N, 5: map index, pixel xyxy) on every level, a conv per level, summed. (N, C, o, o)"""
        roi_align = _roi_align_op(self.roi_backend)
        pooled = 0
        for conv, feature in zip(self.level_convs, maps, strict=True):
            scale = feature.shape[-1] / self.image_size  # feature cells per input pixel
            level = roi_align(feature, rois, self.output_size, scale, self.sampling_ratio, True)  # (N, C, o, o)
            pooled = pooled + conv(level)
        return pooled

    def forward(
        self,
        hidden_states: list[torch.Tensor],
        boxes: torch.Tensor,
        times: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        return_key_content: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode R boxes on each of the K region frames of B samples.

        Args:
            hidden_states: L tensors (B*K, P, C_v), patch tokens of the region frames at each level,
                sample-major (frame ``b * K + k``).
            boxes: (B, R, K, 4) normalised ``xyxy`` on the model's square input; frame 0 of K is the
                key frame.
            times: (B, K) normalised time of each region frame (used by the relative box embedding).
            masks: (B, R, S, S) each region's mask on the key frame, in [0, 1] on the square model input;
                NaN for a region given by its box. Used only with ``config.region_key_mask``.
            return_key_content: also return each region's key-frame RoI feature before the box embedding,
                (B, R, H_r) (what the track token compares between regions).

        Returns:
            (B, R, K, D) one LLM-width token per box.
        """
        batch, regions, frames, _ = boxes.shape
        maps = self.feature_maps(hidden_states)  # L x (B*K, C, h_i, w_i)
        per_frame = boxes.permute(0, 2, 1, 3).reshape(-1, 4)  # (B*K*R, 4), frame-major
        frame_ids = torch.arange(batch * frames, device=boxes.device).repeat_interleave(regions)  # (B*K*R,)
        rois = torch.cat([frame_ids[:, None].to(maps[0].dtype), per_frame.to(maps[0].dtype) * self.image_size], 1)
        pooled = self._pool(maps, rois)  # (B*K*R, C, o, o)
        masked = None
        if masks is not None and self.key_mask:
            carried = boxes if self.mask_frames == "all" else None
            masked = self._masked_key_rois(hidden_states, rois, masks, frames, carried)
        if masked is not None and self.mask_embedding is None:  # "replace": the mask's RoIs stand for the box's
            pooled = pooled.index_copy(0, masked[0], masked[2])
        tokens = self.content_norm(self.flatten_linear(F.relu(pooled).flatten(1)))  # (B*K*R, H_r)
        tokens = tokens.reshape(batch, frames, regions, -1).transpose(1, 2)  # (B, R, K, H_r)
        if times is not None:
            times = times[:, None, :].expand(batch, regions, frames)  # (B, R, K)
        content = tokens[:, :, 0]  # (B, R, H_r) the key-frame RoI feature, for the track token's relations
        tokens = tokens + self.box_embedding(boxes.to(tokens.dtype), times)
        tokens = self.out_proj(tokens)  # (B, R, K, D)
        if masked is not None and self.mask_embedding is not None:  # "add": the box's key token plus the mask's
            tokens = self._add_mask_embedding(tokens, pooled, masked, regions)
        return (tokens, content) if return_key_content else tokens

    def _add_mask_embedding(
        self,
        tokens: torch.Tensor,
        pooled: torch.Tensor,
        masked: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        regions: int,
    ) -> torch.Tensor:
        """``tokens`` (B, R, K, D) with each masked region's key token plus its :class:`MaskEmbedding`."""
        rows, own, masked_pooled, region_masks = masked

        def content(rows_pooled: torch.Tensor) -> torch.Tensor:
            # The running statistics of a "batch" content norm: these rows are extra views of RoIs the box
            # path has already counted, and must not move the statistics the box tokens are normalised by.
            flat = self.flatten_linear(F.relu(rows_pooled).flatten(1))
            if isinstance(self.content_norm, nn.BatchNorm1d):
                norm = self.content_norm
                return F.batch_norm(flat, norm.running_mean, norm.running_var, training=False, eps=norm.eps)
            return self.content_norm(flat)

        # The mask's own shape inside its box: the share of each cell of a grid over the box it covers.
        grid = self.mask_embedding.grid
        shape = _roi_align_op(self.roi_backend)(region_masks[:, None].to(own.dtype), own, grid, 1.0, 2, True)
        added = self.mask_embedding(content(masked_pooled), content(pooled[rows]), shape.flatten(1))  # (n, D)
        frame_rows, region = rows // regions, rows % regions
        frames = tokens.shape[2]
        sample, frame = frame_rows // frames, frame_rows % frames  # frame is 0: the key frame
        return tokens.index_put((sample, region, frame), added.to(tokens.dtype), accumulate=True)
