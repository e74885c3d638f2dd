"""The token selector: k-means is deterministic at inference, invisible frames are never chosen."""

from __future__ import annotations

import torch

from artemis.model.selector import TokenSelector


def _clustered_tokens() -> torch.Tensor:
    """Key token + 8 tracked tokens forming 4 tight, well separated pairs. (1, 9, 16)"""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=generator) * 10
    tracked = centres.repeat_interleave(2, 0) + 0.01 * torch.randn(8, 16, generator=generator)
    return torch.cat([torch.zeros(1, 16), tracked])[None]


def test_kmeans_keeps_one_token_per_cluster_in_time_order():
    selector = TokenSelector("kmeans", num_selected=4).eval()
    tokens = _clustered_tokens()
    selected, indices = selector(tokens)
    assert selected.shape == (1, 5, 16)
    assert torch.equal(selected[0, 0], tokens[0, 0])  # the key token stays first
    clusters = ((indices[0] - 1) // 2).tolist()  # positions 1,2 -> cluster 0; 3,4 -> 1; ...
    assert sorted(clusters) == [0, 1, 2, 3]
    assert indices[0].tolist() == sorted(indices[0].tolist())


def test_kmeans_is_deterministic_at_inference():
    selector = TokenSelector("kmeans", num_selected=3).eval()
    tokens = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(3))
    first = selector(tokens)[1]
    torch.manual_seed(12345)  # the global seed must not matter
    assert all(torch.equal(first, selector(tokens)[1]) for _ in range(3))


def test_invisible_frames_are_never_selected_and_short_lists_repeat_the_last():
    selector = TokenSelector("kmeans", num_selected=4).eval()
    tokens = _clustered_tokens()
    visible = torch.tensor([[True, False, False, True, False, False, False, False, True]])
    _, indices = selector(tokens, visible)
    assert indices[0].tolist() == [3, 8, 8, 8]
    none_visible = torch.tensor([[True] + [False] * 8])
    selected, indices = selector(tokens, none_visible)
    assert indices[0].tolist() == [0, 0, 0, 0]
    assert torch.equal(selected[0, 1], tokens[0, 0])


def test_uniform_random_and_all():
    tokens = torch.randn(1, 9, 4)
    assert TokenSelector("uniform", 4)(tokens)[1][0].tolist() == [1, 3, 6, 8]
    chosen = TokenSelector("random", 4).eval()(tokens)[1][0].tolist()
    assert len(set(chosen)) == 4 and chosen == sorted(chosen) and min(chosen) >= 1
    selected, indices = TokenSelector("all", 4)(tokens)
    assert selected.shape == (1, 9, 4) and indices[0].tolist() == list(range(1, 9))


def test_kmeans_member_ties_go_to_the_earliest_frame():
    """Two members equally near their centre: the earlier frame is kept whatever the rounding noise."""
    from artemis.model.selector import TokenSelector

    selector = TokenSelector("kmeans", num_selected=2, max_iter=3).eval()
    base = torch.tensor([[0.0, 0.0], [10.0, 10.0], [11.0, 10.0], [-10.0, -10.0], [-11.0, -10.0]])
    tokens = torch.cat([torch.zeros(1, 2), base[1:]])[None]  # (1, 5, 2): key token, then 4 tracked tokens
    chosen = []
    for noise in (1e-6, -1e-6):
        noisy = tokens.clone()
        noisy[0, 2, 0] += noise  # moves frame 2 a hair nearer or further from its cluster's centre
        noisy[0, 4, 0] -= noise
        _, indices = selector(noisy)
        chosen.append(indices[0].tolist())
    assert chosen[0] == chosen[1] == [1, 3]
