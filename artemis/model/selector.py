"""Choose a few tracked RoI tokens per region (Artemis' k-means selector and its ablation baselines).

Input: K tokens per region, index 0 the key-frame token, 1..K-1 the tracked frames in time order, and a
visibility mask. Output: the key token followed by ``num_selected`` tracked tokens in time order. With no
visible tracked frame the key token stands in.

When fewer tokens than slots come out (few visible frames, or k-means leaving clusters empty on a short
track whose frames repeat), ``padding`` says how the empty slots are filled:

- ``"original"`` (imported original checkpoints): the k-means members are listed in ascending label
  order, the missing slots repeat the member of the last cluster in that order, and only then are the
  slots sorted by time. This is the original's ``LlavaMetaForCausalLM.prepare_inputs_labels_for_multimodal``
  (docs/checkpoints.md).
- ``"latest"`` (artemis-trained models, the default): the chosen tokens are sorted by time first and the
  latest one repeats. A departure from the original, kept because the models trained here learned it.

Both run k-means only when there are more candidates than slots (``torch_kmeans`` refuses as many
clusters as points); with fewer or as many, every candidate is kept in time order and the latest repeats.
The original always had 8 tracked tokens for 4 clusters, so it never reached that case.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from artemis.errors import ConfigError

METHODS = ("kmeans", "uniform", "random", "all")
PADDINGS = ("latest", "original")


class TokenSelector(nn.Module):
    """Select ``num_selected`` of the tracked tokens: ``kmeans``, ``uniform``, ``random`` or ``all``.

    k-means (``torch_kmeans.KMeans`` with a fixed seed) clusters the visible tracked tokens; one member
    per cluster is kept. At inference it is the member nearest the cluster's centre, so the selection is
    deterministic (the original picked a random member even at evaluation); in training a random member
    can be chosen with ``random_member=True``. ``padding`` (``"latest"`` or ``"original"``) fills the
    slots left empty when fewer tokens come out; see the module docstring.
    """

    def __init__(
        self,
        method: str,
        num_selected: int,
        max_iter: int = 3,
        random_member: bool = False,
        seed: int = 0,
        padding: str = "latest",
    ):
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"selector={method!r} is not valid; expected kmeans, uniform, random or all")
        if padding not in PADDINGS:
            raise ConfigError(
                f"selector_padding={padding!r} is not valid; expected 'latest' (artemis-trained models) or "
                f"'original' (the original Artemis release)"
            )
        self.method = method
        self.num_selected = num_selected
        self.max_iter = max_iter
        self.random_member = random_member
        self.seed = seed
        self.padding = padding

    def forward(self, tokens: torch.Tensor, visible: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Select tokens.

        Args:
            tokens: (N, K, D), index 0 the key-frame token.
            visible: (N, K) bool; tracked frames where the target was not visible are never selected.

        Returns:
            ``(selected, indices)``: (N, 1 + k, D) tokens and (N, k) the chosen frame positions (1..K-1,
            or 0 where the key token stands in), in time order. For ``all``, k = K - 1 and every token
            is kept.
        """
        count, frames, _ = tokens.shape
        if self.method == "all":
            indices = torch.arange(1, frames, device=tokens.device).expand(count, -1)
            return tokens, indices
        if visible is None:
            visible = torch.ones(count, frames, dtype=torch.bool, device=tokens.device)
        rows = [self._select_one(tokens[n], visible[n]) for n in range(count)]
        indices = torch.stack(rows)  # (N, k)
        gathered = torch.gather(tokens, 1, indices[..., None].expand(-1, -1, tokens.shape[-1]))  # (N, k, D)
        return torch.cat([tokens[:, :1], gathered], dim=1), indices

    def _select_one(self, tokens: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Positions (k,) chosen among the visible tracked tokens of one region; tokens (K, D)."""
        k = self.num_selected
        candidates = torch.nonzero(visible[1:]).flatten() + 1  # (n,) visible tracked positions
        if candidates.numel() == 0:
            return torch.zeros(k, dtype=torch.long, device=tokens.device)
        if candidates.numel() <= k:
            chosen = candidates
        elif self.method == "uniform":
            picks = torch.linspace(0, candidates.numel() - 1, k, device=tokens.device).round().long()
            chosen = candidates[picks]
        elif self.method == "random":
            generator = None if self.training else torch.Generator().manual_seed(self.seed)
            picks = torch.randperm(candidates.numel(), generator=generator)[:k].to(tokens.device)
            chosen = candidates[picks.sort().values]
        else:
            chosen = self._kmeans(tokens[candidates], candidates)  # (c,) in k-means label order, c <= k
            if self.padding == "original":  # pad in label order, then sort (the original's order)
                return _pad_with_last(chosen, k).sort().values
        return _pad_with_last(chosen.sort().values, k)

    def _kmeans(self, features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One position per non-empty k-means cluster of ``features`` (n, D), in ascending label order."""
        with warnings.catch_warnings():
            # torch_kmeans 0.2 calls torch.jit.script at import, which torch now flags as deprecated.
            warnings.filterwarnings("ignore", category=FutureWarning)
            from torch_kmeans import KMeans

        kmeans = KMeans(n_clusters=self.num_selected, max_iter=self.max_iter, verbose=False, seed=123)
        result = kmeans(features.detach().float()[None])  # batch of one: (1, n, D)
        labels, centers = result.labels[0], result.centers[0]  # (n,), (k, D)
        chosen = []
        for cluster in torch.unique(labels):  # sorted: the original's order
            members = torch.nonzero(labels == cluster).flatten()
            if self.training and self.random_member:
                member = members[torch.randint(members.numel(), (1,)).item()]
            else:
                distances = (features[members].detach().float() - centers[cluster]).pow(2).sum(-1)
                # The earliest of the members nearest the centre: in a two-member cluster both are equally
                # near, and argmin alone would let float rounding (batch shape, thread count) choose.
                near = distances <= distances.min() * (1 + 1e-4) + 1e-8
                member = members[near][0]
            chosen.append(positions[member])
        return torch.stack(chosen)


def _pad_with_last(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat the last position until there are ``length`` of them."""
    if positions.numel() >= length:
        return positions[:length]
    return torch.cat([positions, positions[-1:].expand(length - positions.numel())])
