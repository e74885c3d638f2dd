"""Per-frame video tokens of the ``"frames"`` layout: Elysium's T-Selector and a grid-cell position embedding.

:class:`FrameTokenSelector` keeps the ``k`` highest-scoring tokens of each frame, re-sorted into raster
order, as the T-Selector of the Elysium release does (Hon-Wong/Elysium, ``models/rantselector.py``, class
``RanTSelecor``, built as the model's ``adapter``). What we read there, and mirror parameter for parameter:

* it runs on the vision features before the projector (``llm_proj`` takes ``adapter.hidden_size`` =
  the CLIP width), one frame at a time, on that frame's own N patch tokens (CLS dropped; N = 576 for
  CLIP ViT-L/14-336). It does not look at the previous frame or at the prompt;
* ``pre_proj = nn.Linear(C, 1)``: weight (1, C), bias (1,): one saliency scalar per token;
* ``trans_weight``: (N, N), initialised to zeros; ``trans_bias``: (N,), initialised to 0.02 on ``k``
  cells spread over the raster order and 0 elsewhere, so the first selection is a fixed, spread-out
  subset of the grid;
* scores of a frame x (N, C): ``s = pre_proj(x)`` (N,), ``logits = s @ trans_weight + trans_bias`` (N,),
  ``scores = softmax(logits)`` over the N tokens; the top ``k`` by score (``argsort``, descending) are
  kept, their indices sorted ascending (raster order) and the tokens gathered unweighted. The softmax
  does not change the order, and ``argsort`` carries no gradient, so in the release only the projector
  trains (``freeze_adapter`` false, yet the adapter's weights never change);
* the release sets ``in_token_num=576``, ``out_token_num=108``, ``num_features=1024``. Its module also
  holds ``score_proj = nn.Linear(N, k)``, which ``forward`` never uses.

An importer maps ``adapter.pre_proj.{weight,bias}``, ``adapter.trans_weight`` and ``adapter.trans_bias``
one-to-one onto ``frame_selector.*`` (``frame_select_grid=24``, ``frame_select_tokens=108``,
``frame_select_gradient="none"``) and drops ``adapter.score_proj.*``.

Our additions are a gradient path (``gradient="straight_through"``), an ``order="score"`` that keeps the
tokens highest score first instead of in raster order (the most target-like token always in a frame's
first slot), :class:`FramePositionEmbedding`
(the LLM is told which grid cell each kept token came from) and an optional target query
(``query=True``): when the prompt gives the target's box (SOT), every cell's cosine similarity to the
mean feature inside that box on the clip's first frame, through a learned projection and a learned
scale, is added to the logits, so the tokens kept on each frame follow the target (:func:`box_query`);
with ``centre=True`` (``frame_select_centre``) that cosine is taken between features centred on their
frame's mean cell. With ``text_dim`` (``frame_select_text_query``) a sample without a box is scored
against its prompt instead: :meth:`FrameTokenSelector.text_query` maps the mean embedding of the
prompt's text into the vision width (``text_proj``), which then takes the box query's place; with
``text_pool="attention"`` (``frame_select_text_pool``) the prompt's words are weighed by a learned score
(:meth:`FrameTokenSelector.pool_text`) instead of averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import roi_align

__all__ = [
    "FRAME_TOKEN_MODULES",
    "FrameContext",
    "FrameIndexEmbedding",
    "FramePositionEmbedding",
    "FrameTokenSelector",
    "PixelStem",
    "aligned_positions",
    "box_cells_loss",
    "box_query",
    "frame_tags",
    "local_soft_argmax",
    "spread_cells",
]

QUERY_SCALE_INIT = 4.0
"""Initial weight of the target similarity in the selector's logits (cosines lie in -1..1)."""

FRAME_TOKEN_MODULES = ("frame_selector", "frame_positions", "frame_context", "frame_indices", "frame_stem")
"""Attributes of the model that turn frame features into tokens next to the projector (None when unused);
they train whenever the projector trains."""


def spread_cells(side: int, count: int) -> torch.Tensor:
    """``count`` cells of a ``side`` x ``side`` grid spread evenly over it, as raster indices (ascending).

    The cells of the smallest square lattice with at least ``count`` points, thinned evenly in raster order.
    The selector's bias starts positive there, so before training it keeps a uniform spread of the frame
    (Elysium's initial bias is a strided raster subset with the same purpose).
    """
    lattice_side = min(side, math.ceil(math.sqrt(count)))
    lines = torch.linspace(0, side - 1, lattice_side).round().long()  # (l,)
    lattice = (lines[:, None] * side + lines[None, :]).flatten()  # (l*l,) raster order
    if len(lattice) < count:  # a lattice as fine as the grid: any cells, taken evenly in raster order
        lattice = torch.arange(side * side)
    picks = torch.linspace(0, len(lattice) - 1, count).round().long()
    return lattice[picks].unique()[:count]


class FrameTokenSelector(nn.Module):
    """A learned top-k of each frame's tokens (Elysium's T-Selector), with an optional gradient path.

    Args:
        channels: width C of the features scored (the vision tower's, before the projector).
        side: side of the grid scored (``frame_select_grid``); N = side * side tokens per frame.
        keep: tokens kept per frame (k).
        gradient: ``"straight_through"`` or ``"none"`` (see :meth:`forward`).
        order: ``"raster"`` (the release's: kept tokens in raster order) or ``"score"`` (highest score first).

    Parameters (the release's names and shapes): ``pre_proj`` Linear(C, 1), ``trans_weight`` (N, N),
    ``trans_bias`` (N,).
    """

    def __init__(
        self,
        channels: int,
        side: int,
        keep: int,
        gradient: str = "straight_through",
        query: bool = False,
        centre: bool = False,
        text_dim: int | None = None,
        order: str = "raster",
        text_pool: str = "mean",
    ) -> None:
        super().__init__()
        if order not in ("raster", "score"):
            raise ValueError(f"order={order!r}: expected 'raster' or 'score'")
        self.order = order
        self.side = int(side)
        self.keep = int(keep)
        self.gradient = gradient
        self.centre = bool(centre)
        cells = self.side**2
        self.pre_proj = nn.Linear(channels, 1)
        self.trans_weight = nn.Parameter(torch.zeros(cells, cells))
        self.trans_bias = nn.Parameter(self.initial_bias())
        self.query_proj = self.query_scale = None
        if query:
            # Identity start: before training, the similarity is that of the vision features themselves,
            # which already tells the target's colour from the background's.
            self.query_proj = nn.Linear(channels, channels)
            self.query_scale = nn.Parameter(torch.tensor(QUERY_SCALE_INIT))
            self.reset_query()
        self.text_proj = self.text_pool = None
        if text_pool not in ("mean", "attention"):
            raise ValueError(f"text_pool={text_pool!r}: expected 'mean' or 'attention'")
        if text_dim is not None:
            if not query:
                raise ValueError("a text query (text_dim) needs the target query (query=True)")
            self.text_proj = nn.Linear(int(text_dim), channels)
            if text_pool == "attention":
                # One weight per word, zero at the start: the pooling begins as the plain mean.
                self.text_pool = nn.Linear(int(text_dim), 1)
                self.reset_text_pool()
        elif text_pool != "mean":
            raise ValueError("text_pool='attention' pools the text query's words; it needs text_dim")

    def reset_query(self) -> None:
        """Identity projection and the initial scale (also what ``_init_weights`` restores)."""
        if self.query_proj is None:
            return
        with torch.no_grad():
            nn.init.eye_(self.query_proj.weight)
            nn.init.zeros_(self.query_proj.bias)
            self.query_scale.fill_(QUERY_SCALE_INIT)

    def reset_text_pool(self) -> None:
        """Zero word scores: the attention pooling starts as the mean (also what ``_init_weights`` restores)."""
        if self.text_pool is not None:
            with torch.no_grad():
                nn.init.zeros_(self.text_pool.weight)
                nn.init.zeros_(self.text_pool.bias)

    def pool_text(self, embeds: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Each prompt's summary for :meth:`text_query` with ``text_pool="attention"`` (the mean needs no
        method: the model's prompt mean is it): (B, L, D) embeddings, (B, L) bool text positions -> (B, D),
        their softmax-weighted mean under a learned score per word, so the words that name the target can
        outweigh the template's. A sample without text positions gets zeros."""
        if self.text_pool is None:
            raise ValueError("this selector pools its text query by the mean (text_pool='mean'); use the prompt mean")
        scores = self.text_pool(embeds.to(self.text_pool.weight.dtype)).squeeze(-1)  # (B, L)
        scores = scores.masked_fill(~words, float("-inf"))
        attention = torch.nan_to_num(scores.softmax(-1), nan=0.0).to(embeds.dtype)  # (B, L); all -inf -> 0
        return (embeds * attention.unsqueeze(-1)).sum(1)

    def initial_bias(self) -> torch.Tensor:
        """(N,): 0.02 on the :func:`spread_cells` of the grid, 0 elsewhere (the release's value and idea)."""
        bias = torch.zeros(self.side**2)
        bias[spread_cells(self.side, self.keep)] = 0.02
        return bias

    def scores(self, tokens: torch.Tensor, query: torch.Tensor | None = None) -> torch.Tensor:
        """Selection logits of each frame's tokens: (B, T, N, C) -> (B, T, N).

        ``logits = pre_proj(x) @ trans_weight + trans_bias``: a saliency scalar per token, mixed across
        the frame's cells by a learned (N, N) map, plus a learned per-cell prior. With a query (B, C)
        (NaN rows: no query for that sample), ``query_scale * cos(query_proj(x), query_proj(q))`` is added.
        """
        if tokens.shape[-2] != self.side**2:
            raise ValueError(
                f"the frame selector scores a {self.side}x{self.side} grid ({self.side**2} tokens) but got "
                f"{tokens.shape[-2]} tokens per frame"
            )
        saliency = self.pre_proj(tokens).squeeze(-1)  # (..., N)
        logits = saliency @ self.trans_weight.to(saliency.dtype) + self.trans_bias.to(saliency.dtype)  # (..., N)
        if query is None or self.query_proj is None:
            return logits
        has_query = torch.isfinite(query).all(-1)  # (B,)
        target = self.query_proj(torch.nan_to_num(query))  # (B, C)
        cells = self.query_proj(_centred(tokens) if self.centre else tokens)  # (B, T, N, C)
        similarity = _cosine_to(cells, target)  # (B, T, N)
        similarity = similarity * has_query.to(similarity.dtype)[:, None, None]
        return logits + self.query_scale.to(logits.dtype) * similarity

    def target_query(self, grid: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """The query :meth:`scores` takes: :func:`box_query` of ``grid`` (B, T, N, C) and ``boxes`` (B, 4),
        on the first frame centred on its mean cell when the selector centres (``frame_select_centre``)."""
        return box_query(_centred(grid[:, :1]) if self.centre else grid, boxes)

    def text_query(self, text: torch.Tensor, query: torch.Tensor | None) -> torch.Tensor:
        """The query of each sample: its box query where it has one, else ``text_proj`` of its prompt.

        Args:
            text: (B, D) the mean embedding of each prompt's text tokens (the LLM's width).
            query: (B, C) :meth:`target_query` (NaN rows: no box), or None when no sample has a box.

        Returns:
            (B, C).
        """
        if self.text_proj is None:
            raise ValueError("this selector was built without a text query (frame_select_text_query)")
        weight = self.text_proj.weight
        from_text = self.text_proj(text.to(device=weight.device, dtype=weight.dtype))  # (B, C)
        if query is None:
            return from_text
        return torch.where(torch.isfinite(query).all(-1, keepdim=True), query, from_text.to(query.dtype))

    def forward(self, tokens: torch.Tensor, query: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the top ``k`` tokens of each frame, in raster order (or by score, highest first).

        Args:
            tokens: (B, T, N, C) each frame's features on the scored grid, raster order.
            query: (B, C) the target's feature (:func:`box_query`), NaN rows for samples without one; used
                only by a selector built with ``query=True``.

        Returns:
            ``(kept, cells)``: (..., k, C) the kept tokens, values unchanged, and (..., k) their raster
            indices, ascending (with ``order="score"``: in decreasing score).
        """
        return self.select(tokens, self.scores(tokens, query))

    def select(self, tokens: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the logits already computed by :meth:`scores` (the model also reads them for
        ``frame_select_box_loss``): tokens (..., N, C) and logits (..., N) -> ``(kept, cells)``."""
        cells = logits.topk(self.keep, dim=-1).indices  # (..., k) highest score first
        if self.order == "raster":
            cells = cells.sort(dim=-1).values  # (..., k) raster order
        kept = tokens.gather(-2, cells[..., None].expand(*cells.shape, tokens.shape[-1]))  # (..., k, C)
        if self.gradient == "straight_through":
            # Straight-through rather than a soft top-k: the forward pass must stay the release's hard
            # choice (same tokens, same values, so "none" and "straight_through" give identical outputs
            # and an imported checkpoint behaves as released), which a soft top-k would blur. The gate is
            # each kept token's softmax weight relative to a flat frame (N * softmax, 1 on average): its
            # gradient is the loss' preference for more of that token, and through the softmax it also
            # lowers the logits of the tokens left out when the kept ones help, so ranking, not the
            # logits' overall level, is what learns. ``weight - weight.detach()`` is exactly 0, so the
            # gate is exactly 1 and the kept values are bit-identical to "none".
            weight = logits.softmax(dim=-1).gather(-1, cells) * logits.shape[-1]  # (..., k)
            gate = 1.0 + (weight - weight.detach())  # (..., k), == 1 in value
            kept = kept * gate[..., None].to(kept.dtype)  # (..., k, C)
        return kept, cells


def box_cells_loss(logits: torch.Tensor, boxes: torch.Tensor, target: str = "inside") -> torch.Tensor | None:
    """How far each frame's selection is from the target's cells (``frame_select_box_loss``).

    Per frame with a target box, the cross-entropy of the softmax over the frame's cells against a
    distribution on the target's cells. With ``target="inside"``: uniform on the cells whose centre lies
    inside the box, or, for a box too small to hold a cell centre, the cell holding the box's centre.
    Minimising it ranks the target's cells first, which is what the top-k needs, in no order among
    themselves. With ``target="centre"`` (``frame_select_box_target``): a Gaussian of the distance from each
    cell's centre to the box's centre, ``exp(-d^2 / 2)`` with ``d`` in cells, normalised; the best-ranked
    cell is then the one holding the box's centre and the next ones lie towards where the centre sits
    inside it, so with ``frame_select_order="score"`` the first slots tell the centre to better than a
    cell. Written here because no library scores a grid against boxes this way.

    Args:
        logits: (B, T, N) the selector's logits (:meth:`FrameTokenSelector.scores`), N = side * side.
        boxes: (B, T', 4) normalised xyxy of the target on each frame, NaN rows where it is absent or for
            frames past the clip; T' <= T (the missing frames count as absent).
        target: ``"inside"`` or ``"centre"``.

    Returns:
        The mean over the frames with a box, or None when no frame has one.
    """
    frames, count = logits.shape[1:]
    side = math.isqrt(count)
    boxes = boxes.to(logits.device, torch.float32)
    boxes = nn.functional.pad(boxes, (0, 0, 0, frames - boxes.shape[1]), value=math.nan)  # (B, T, 4)
    present = torch.isfinite(boxes).all(-1)  # (B, T)
    if not bool(present.any()):
        return None
    safe = torch.nan_to_num(boxes)  # absent frames are dropped below
    centres = (torch.arange(side, device=logits.device, dtype=torch.float32) + 0.5) / side  # (s,)
    if target == "inside":
        cells = _inside_cells(safe, centres)  # (B, T, N)
    elif target == "centre":
        cells = _centre_cells(safe, centres)  # (B, T, N)
    else:
        raise ValueError(f"target={target!r}: expected 'inside' or 'centre'")
    log_p = logits.float().log_softmax(dim=-1)  # (B, T, N)
    per_frame = -(log_p * cells).sum(-1) / cells.sum(-1)  # (B, T)
    return per_frame[present].mean()


def _centre_cells(safe: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, T, N) ``exp(-d^2 / 2)``, ``d`` the distance in cells from each cell's centre to each box's (B, T, 4)
    centre; ``centres`` (s,) are the cell centres along a side, normalised."""
    side = len(centres)
    middle = (safe[..., 0:2] + safe[..., 2:4]) / 2  # (B, T, 2) x, y
    dx = (centres - middle[..., 0:1]) * side  # (B, T, s) in cells
    dy = (centres - middle[..., 1:2]) * side  # (B, T, s)
    return torch.exp(-(dy[..., :, None] ** 2 + dx[..., None, :] ** 2) / 2).flatten(-2)  # (B, T, N) raster order


def _inside_cells(safe: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, T, N) 1.0 on the cells whose centre lies inside each box (B, T, 4), or on the cell of its centre
    when none does; ``centres`` (s,) are the cell centres along a side, normalised."""
    side = len(centres)
    count = side * side
    in_x = (centres > safe[..., 0:1]) & (centres < safe[..., 2:3])  # (B, T, s)
    in_y = (centres > safe[..., 1:2]) & (centres < safe[..., 3:4])  # (B, T, s)
    cells = (in_y[..., :, None] & in_x[..., None, :]).flatten(-2)  # (B, T, N) raster order
    middle = ((safe[..., 0:2] + safe[..., 2:4]) / 2 * side).floor().clamp(0, side - 1).long()  # (B, T, 2) col, row
    nearest = nn.functional.one_hot(middle[..., 1] * side + middle[..., 0], count).bool()  # (B, T, N)
    return torch.where(cells.any(-1, keepdim=True), cells, nearest).float()


def _cosine_to(cells: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine of every cell with its sample's target: (B, T, N, C) and (B, C) -> (B, T, N).

    What ``F.cosine_similarity(cells, target[:, None, None, :], dim=-1)`` gives (to float rounding), written
    out because that function expands the target to every cell first and takes its norm, and the norm's
    gradient, once per cell: at 16 clips of 8 frames of 1,024 cells, 63 ms forward and backward against
    25 ms here (docs/experiments.md, "The stem at full length ...").
    """
    cells = cells / torch.linalg.vector_norm(cells, dim=-1, keepdim=True).clamp_min(eps)
    target = target / torch.linalg.vector_norm(target, dim=-1, keepdim=True).clamp_min(eps)
    return torch.einsum("btnc,bc->btn", cells, target)


def _centred(grid: torch.Tensor) -> torch.Tensor:
    """Each frame's cells minus that frame's mean cell: (..., N, C) -> (..., N, C)."""
    return grid - grid.mean(dim=-2, keepdim=True)


def box_query(grid: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The mean feature inside each sample's box on its first frame: the selector's target query.

    Args:
        grid: (B, T, N, C) per-frame features on a square grid (N = side * side), raster order.
        boxes: (B, 4) normalised xyxy on the square input; a NaN row means no box (the result row is NaN).

    Returns:
        (B, C). RoIAlign (torchvision) of the box on frame 0 at 2x2 bin centres, averaged.
    """
    batch, _, count, channels = grid.shape
    side = math.isqrt(count)
    first = grid[:, 0].transpose(1, 2).reshape(batch, channels, side, side)  # (B, C, s, s)
    has_box = torch.isfinite(boxes).all(-1)  # (B,)
    scaled = torch.nan_to_num(boxes.to(first.dtype)) * side  # (B, 4) in cells
    rois = torch.cat([torch.arange(batch, dtype=first.dtype, device=first.device)[:, None], scaled], dim=1)
    # One sample at the centre of each of the 2x2 bins: the points lie inside the box however small it is.
    pooled = roi_align(first, rois, output_size=2, spatial_scale=1.0, sampling_ratio=1, aligned=True)  # (B, C, 2, 2)
    query = pooled.mean(dim=(2, 3))  # (B, C)
    return torch.where(has_box[:, None], query, torch.full_like(query, float("nan")))


class FrameContext(nn.Module):
    """Residual 3x3 convolutions over each frame's feature grid, so a cell's feature tells what lies around
    it (``frame_context_layers``, ours), and optionally across neighbouring frames (``frame_context_time``).

    A vision tower with 8 px patches leaves the shape of a 20 px object in the layout of its cells, not in
    any one cell: the inside of a circle and of a square look alike cell by cell (docs/experiments.md, box
    output). The selector scores cells one by one and the LLM reads a few kept cells, so neither can tell
    "the triangle" from "the square" unless each cell carries its neighbourhood. Each block is
    ``x + conv(gelu(conv(x)))`` with the second convolution zero-initialised: the block starts as the
    identity, so turning it on changes nothing until it trains. With ``time`` the first convolution of
    each block is 3x3x3 over (frame, row, column), so a cell also sees the same place one frame before and
    after it: what moves, and which way, as "the circle moving left" needs.

    Args:
        channels: width C of the features (the vision tower's).
        layers: residual blocks (each widens a cell's view by two cells on every side).
        time: the first convolution of each block also spans the previous and the next frame.
    """

    def __init__(self, channels: int, layers: int, time: bool = False) -> None:
        super().__init__()
        self.time = bool(time)
        first = nn.Conv3d if self.time else nn.Conv2d  # 3x3x3 over (frame, row, column), or 3x3 per frame
        self.blocks = nn.ModuleList(
            nn.Sequential(
                first(channels, channels, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(channels, channels, 3, padding=1),
            )
            for _ in range(int(layers))
        )
        with torch.no_grad():  # the identity start; the model's _init_weights zeroes each conv marked zero_init
            for block in self.blocks:
                block[-1].zero_init = True
                nn.init.zeros_(block[-1].weight)
                nn.init.zeros_(block[-1].bias)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, T, N, C) each frame's cells in raster order on a square grid -> (B, T, N, C)."""
        batch, frames, count, channels = grid.shape
        side = math.isqrt(count)
        maps = grid.reshape(batch * frames, side, side, channels).permute(0, 3, 1, 2)  # (B*T, C, s, s)
        for block in self.blocks:
            if self.time:  # the first convolution runs on (B, C, T, s, s), the rest frame by frame
                clip = maps.reshape(batch, frames, channels, side, side).transpose(1, 2)  # (B, C, T, s, s)
                hidden = block[0](clip).transpose(1, 2).reshape(batch * frames, channels, side, side)
                maps = maps + block[2](block[1](hidden))
            else:
                maps = maps + block(maps)
        return maps.permute(0, 2, 3, 1).reshape(batch, frames, count, channels)


class PixelStem(nn.Module):
    """A cheap convolutional view of each frame's pixels on a grid finer than the vision tower's
    (``frame_stem_grid``, ours), added to the tower's features upsampled to that grid.

    With 8 px patches the selector keeps whole 8 px cells, and a box read off cell positions is only as
    precise as the cells: on SynthRef, a box of the first frame's size centred on the mean centre of the
    cells whose centre lies in the target's box scores a mean IoU of 0.704 at 16x16 cells and 0.778 at
    32x32 (docs/experiments.md, box output); the box model reads a frame at about 0.70. A tower with 4 px patches
    would cost four times the tokens and sixteen times the attention; this stem is a strided convolution
    (one cell of the fine grid per stride) and a 3x3 convolution, zero-initialised, so a model starts as
    the tower's features upsampled and learns what the finer cells add. Written here because the choice of
    where to add it (after the tower's context block, before the selector) is the model's own.

    Args:
        channels: width C of the features it is added to (the vision tower's).
        image_size: side S of the frames in pixels.
        side: side G of the fine grid; ``S % G == 0`` (each fine cell is ``S // G`` pixels).
    """

    def __init__(self, channels: int, image_size: int, side: int) -> None:
        super().__init__()
        self.side = int(side)
        stride = int(image_size) // self.side
        self.patch = nn.Conv2d(3, channels, stride, stride=stride)
        self.act = nn.GELU()
        self.mix = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():  # the upsampled tower's features at the start; _init_weights keeps it zero
            self.mix.zero_init = True
            nn.init.zeros_(self.mix.weight)
            nn.init.zeros_(self.mix.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised frames -> (N, G*G, C), raster order."""
        maps = self.mix(self.act(self.patch(frames)))  # (N, C, G, G)
        return maps.flatten(2).transpose(1, 2)

    @staticmethod
    def upsampled(grid: torch.Tensor, side: int) -> torch.Tensor:
        """(B, T, g*g, C) each frame's cells -> (B, T, side*side, C), bilinear (cell centres aligned)."""
        batch, frames, count, channels = grid.shape
        coarse = math.isqrt(count)
        maps = grid.reshape(batch * frames, coarse, coarse, channels).permute(0, 3, 1, 2)  # (B*T, C, g, g)
        fine = nn.functional.interpolate(maps, size=(side, side), mode="bilinear", align_corners=False)
        return fine.permute(0, 2, 3, 1).reshape(batch, frames, side * side, channels)


class FramePositionEmbedding(nn.Module):
    """A learned vector per grid cell, added to the frame tokens in the LLM's space.

    Zero-initialised: turning it on leaves a model's outputs unchanged until it trains, and the gradient
    reaching a cell's vector is the sum of its tokens' gradients, so zero is no obstacle to learning.

    Args:
        cells: grid cells per frame (``frame_feature_grid**2``).
        dim: the LLM's hidden size.
    """

    def __init__(self, cells: int, dim: int, init: str = "zeros") -> None:
        super().__init__()
        self.init = init
        self.weight = nn.Parameter(self.initial_weight(cells, dim))  # (cells, D)

    def initial_weight(self, cells: int | None = None, dim: int | None = None) -> torch.Tensor:
        """(cells, D): zeros, or with ``init="sincos"`` a fixed 2D sine-cosine code of each cell's column
        (first half of the channels) and row (second half), RMS 0.1, so a cell's position can be read
        linearly from the first step instead of being learnt from nothing."""
        cells = self.weight.shape[0] if cells is None else cells
        dim = self.weight.shape[1] if dim is None else dim
        if self.init != "sincos":
            return torch.zeros(cells, dim)
        side = math.isqrt(cells)
        half, quarter = dim // 2, dim // 4
        frequencies = 1.0 / (side ** (torch.arange(quarter, dtype=torch.float32) / max(quarter, 1)))  # (D/4,)
        index = torch.arange(cells)
        table = torch.zeros(cells, dim)
        for offset, coordinate in ((0, index % side), (half, index // side)):  # column, then row
            angles = (coordinate.float() + 0.5)[:, None] * frequencies[None, :] * math.pi  # (cells, D/4)
            table[:, offset : offset + quarter] = angles.sin()
            table[:, offset + quarter : offset + 2 * quarter] = angles.cos()
        return table * (0.1 / table.pow(2).mean().sqrt())

    def forward(
        self, tokens: torch.Tensor, cells: torch.Tensor | None = None, first_at: torch.Tensor | None = None
    ) -> torch.Tensor:
        """tokens (..., n, D) + the embedding of each token's cell; ``cells`` (..., n) raster indices, or
        None when the n tokens are the whole grid in raster order. ``first_at`` (..., 2), normalised x, y:
        the first token's embedding is instead the table read at that point (:meth:`at`)."""
        if cells is None:
            return tokens + self.weight.to(tokens.dtype)  # (..., n, D), n == cells
        positions = self.weight.to(tokens.dtype)[cells]  # (..., n, D)
        if first_at is not None:
            positions = torch.cat([self.at(first_at).to(tokens.dtype)[..., None, :], positions[..., 1:, :]], dim=-2)
        return tokens + positions  # (..., n, D)

    def at(self, points: torch.Tensor) -> torch.Tensor:
        """The table read at continuous points (..., 2), normalised x, y on the frame: (..., D).

        Bilinear between the four nearest cell centres (``grid_sample``; a cell's centre returns exactly its
        row of the table, points past the outer centres take the border's). Differentiable in ``points``.
        """
        cells, dim = self.weight.shape
        side = math.isqrt(cells)
        table = self.weight.t().reshape(1, dim, side, side)  # (1, D, s, s)
        flat = points.reshape(1, -1, 1, 2).to(table.dtype) * 2 - 1  # (1, P, 1, 2) in -1..1, x then y
        sampled = nn.functional.grid_sample(table, flat, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled[0, :, :, 0].t().reshape(*points.shape[:-1], dim)  # (..., D)


class FrameIndexEmbedding(nn.Module):
    """A learned vector per frame of a clip, added to all of that frame's tokens in the LLM's space.

    The box answer names each frame ("Frame 3: [...]"), and the LLM must read frame 3's tokens to write it.
    The prompt's "Frame 3:" words stand before the first of them only; this tags every token of the frame
    alike, so one attention head can match the frame number it is writing against the frame a token
    belongs to. Starts as a fixed 1D sine-cosine code of the frame's place in the clip at RMS 0.1 (readable
    from the first step, and no draw from the random generator, so turning it on leaves every other
    initial weight as it was).

    Args:
        frames: frames per clip (``num_frames``).
        dim: the LLM's hidden size.
    """

    def __init__(self, frames: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(self.initial_weight(frames, dim))  # (T, D)

    def initial_weight(self, frames: int | None = None, dim: int | None = None) -> torch.Tensor:
        """(T, D): sines and cosines of the frame's place at ``dim // 2`` frequencies, RMS 0.1."""
        frames = self.weight.shape[0] if frames is None else frames
        dim = self.weight.shape[1] if dim is None else dim
        half = dim // 2
        frequencies = 1.0 / (max(frames, 2) ** (torch.arange(half, dtype=torch.float32) / max(half, 1)))  # (D/2,)
        angles = (torch.arange(frames, dtype=torch.float32) + 0.5)[:, None] * frequencies[None, :] * math.pi
        table = torch.zeros(frames, dim)
        table[:, :half], table[:, half : 2 * half] = angles.sin(), angles.cos()
        return table * (0.1 / table.pow(2).mean().sqrt())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, n, D) + each frame's vector."""
        return tokens + self.weight.to(tokens.dtype)[None, :, None, :]


def _frame_numbers(input_ids: torch.Tensor, label_ids: Sequence[int]) -> torch.Tensor:
    """(B, L) k at the number of each "Frame k" (``label_ids``: the id of "Frame", then those of 1..T), 0
    elsewhere. Causal: whether a token is such a number depends on it and the token before it."""
    frame_word, numbers = label_ids[0], torch.as_tensor(list(label_ids[1:]), device=input_ids.device)
    previous = torch.roll(input_ids, 1, dims=1)
    previous[:, 0] = -1  # roll wrapped around
    match = input_ids[..., None] == numbers  # (B, L, T)
    named = (previous == frame_word) & match.any(-1)
    return torch.where(named, match.float().argmax(-1) + 1, 0)


def _latest(where: torch.Tensor) -> torch.Tensor:
    """(B, L) the position of the latest True at or before each token, -1 before any."""
    positions = torch.arange(where.shape[1], device=where.device).expand_as(where)
    return torch.cummax(torch.where(where, positions, -1), dim=1).values


def frame_tags(input_ids: torch.Tensor, label_ids: Sequence[int]) -> torch.Tensor:
    """(B, L) the frame each token is about: k (1-based) for every token after the words "Frame k" up to the
    next "Frame" word (which keeps the previous tag; its number starts the new one), 0 before any.

    ``label_ids`` holds the id of "Frame" then those of the numbers 1..T. A "Frame" not followed by one of
    those numbers starts no tag; the SOT question's "in Frame 1" does start one. Causal: a token's tag
    depends only on the tokens up to it.
    """
    number = _frame_numbers(input_ids, label_ids)
    latest = _latest(number > 0)  # (B, L) where the latest tag began (-1: none yet)
    tag = torch.gather(number, 1, latest.clamp(min=0))  # the number named there
    return torch.where(latest >= 0, tag, torch.zeros_like(tag))


def aligned_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, label_ids: Sequence[int], video_token_id: int
) -> torch.Tensor:
    """(B, L) position ids under which the text about frame k lies as far from frame k's tokens as the
    text about frame 1 lies from frame 1's.

    Plain positions count tokens, so the answer's "Frame k: [..]" (some 12 tokens a frame) drifts against the
    prompt's "Frame k: <frame tokens>" (some 20 a frame) as k grows, and an attention head that reaches back
    a fixed distance finds frame 1's tokens from frame 1's box but another frame's from frame 5's. Here each
    "Frame k" after the last video token starts a run of positions at ``start + (q_k - q_1)``, where ``q_k``
    is the position of the prompt's "Frame k" label and ``start`` that of the first such run after the video,
    so every frame's text keeps one distance to its frame (a run begins at the number k; the word "Frame"
    before it still belongs to the run before). Positions are otherwise the plain ones (the running count
    of attended tokens, as generation uses with left padding). Causal: a token's position depends only on
    the tokens up to it, so cached decoding and one forward give the same positions.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    plain = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, L)
    frame_word, numbers = label_ids[0], {number: k for k, number in enumerate(label_ids[1:], start=1)}
    rows = []
    for ids, counts in zip(input_ids.tolist(), plain.tolist(), strict=True):
        last_video = max((p for p, token in enumerate(ids) if token == video_token_id), default=-1)
        row = list(counts)
        labels: dict[int, int] = {}  # frame number -> plain position of the prompt's "Frame k"
        start = base = shift = None  # the first run's plain start; the current run's first token and start
        for p, token in enumerate(ids):
            # A run starts at the number of a "Frame k" (the "Frame" word itself cannot know it starts one:
            # while decoding, its position is fixed before the number is written).
            named = numbers.get(token, 0) if p and ids[p - 1] == frame_word else 0
            if named and p < last_video:
                labels.setdefault(named, counts[p])
            elif named in labels and 1 in labels:  # after the video (a prompt's labels come before its end)
                start = counts[p] if start is None else start
                base, shift = p, start + labels[named] - labels[1]
            if base is not None:
                row[p] = shift + counts[p] - counts[base]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long, device=input_ids.device)


def isolation_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    label_ids: Sequence[int],
    video_token_id: int,
    rows: int | None = None,
) -> torch.Tensor:
    """(B, 1, L, L) True where a query token may attend to a key token: causal and padding as usual, and the
    answer's text about frame k (from the number of its "Frame k" on) does not see the text about the frames
    written before it in the same answer. ``rows``: only the last that many query rows, (B, 1, rows, L), as
    a decoding step needs.

    The answer begins at the last "Frame 1" after the video (the SOT question's "in Frame 1" comes before
    the answer's own, so its words stay visible); a query in the run of "Frame k" loses the keys from the
    answer's first frame number up to that run's number. The prompt (video, question, the given box) stays
    visible to every token. Causal once the sequence holds the whole prompt: a token's row depends only on
    the tokens up to it, so cached decoding and one forward give the same mask. A padding query keeps
    itself, so that no row is empty. Hand-written: transformers builds causal and padding masks only.
    """
    length = input_ids.shape[1]
    rows = length if rows is None else rows
    keys = torch.arange(length, device=input_ids.device)
    last_video = _latest(input_ids == video_token_id)[:, -1:]  # (B, 1)
    number = _frame_numbers(input_ids, label_ids)
    starts = (number > 0) & (keys > last_video)  # a run of the answer begins at its number
    run_start = _latest(starts)[:, -rows:, None]  # (B, rows, 1) -1: none yet
    answer_start = _latest(starts & (number == 1))[:, -rows:, None]
    queries = keys[-rows:, None]  # (rows, 1)
    hidden = (answer_start >= 0) & (keys >= answer_start) & (keys < run_start)
    allowed = (keys <= queries) & ~hidden  # (B, rows, L)
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, :]
    allowed = allowed | (keys == queries)  # a padding row keeps itself
    return allowed[:, None]


def local_soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Where each frame's selector places the target, to better than a cell: (..., N) -> (..., 2).

    The softmax-weighted mean of the centres of the 3x3 cells around the best-scoring one (cells off the
    grid left out), normalised x, y. Only the neighbourhood counts, so a distractor elsewhere on the frame
    does not pull the point towards it, as a soft-argmax over the whole grid would. Differentiable in the
    logits of that neighbourhood. Hand-written: torchvision and torch have no windowed soft-argmax.
    """
    count = logits.shape[-1]
    side = math.isqrt(count)
    best = logits.argmax(dim=-1)  # (...,)
    row, col = best // side, best % side
    offsets = torch.arange(-1, 2, device=logits.device)  # (3,)
    rows = row[..., None, None] + offsets[:, None]  # (..., 3, 1)
    cols = col[..., None, None] + offsets[None, :]  # (..., 1, 3)
    rows, cols = torch.broadcast_tensors(rows, cols)  # (..., 3, 3)
    inside = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)
    index = (rows.clamp(0, side - 1) * side + cols.clamp(0, side - 1)).flatten(-2)  # (..., 9)
    window = logits.gather(-1, index).masked_fill(~inside.flatten(-2), float("-inf"))  # (..., 9)
    weight = window.float().softmax(dim=-1)  # (..., 9)
    x = ((cols.flatten(-2).float() + 0.5) / side * weight).sum(-1)
    y = ((rows.flatten(-2).float() + 0.5) / side * weight).sum(-1)
    return torch.stack([x, y], dim=-1).to(logits.dtype)  # (..., 2)
