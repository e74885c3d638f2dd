"""The selector's padding follows the original release for imported checkpoints, and ours otherwise.

When k-means leaves clusters empty (tracked tokens that repeat, as on a short track the original's
inference pads by repeating its last frame), the original (``prepare_inputs_labels_for_multimodal`` in
its ``llava_arch.py``) lists one member per cluster in ascending label order, repeats the last of them,
and only then sorts by time. artemis-trained models sort first and repeat the latest frame.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from artemis.errors import ConfigError
from artemis.model.configuration import ArtemisConfig, tiny_config
from artemis.model.importers import config_from_llava
from artemis.model.selector import TokenSelector

BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "artemis" / "assets" / "synthref-tiny"


def _tokens(pattern: list[int], width: int = 16) -> torch.Tensor:
    """Key token + tracked tokens that are exact copies of a few distinct vectors. (1, 1 + len, width)"""
    values = torch.randn(max(pattern) + 1, width, generator=torch.Generator().manual_seed(0))
    return torch.cat([torch.zeros(1, width), values[pattern]])[None]


def _kmeans_labels(tracked: torch.Tensor, clusters: int) -> list[int]:
    """torch_kmeans as the original builds it (n_clusters, max_iter 3, the library's default seed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        from torch_kmeans import KMeans

    return KMeans(n_clusters=clusters, max_iter=3, verbose=False)(tracked[None].float()).labels[0].tolist()


def _originals_rule(labels: list[int], slots: int) -> list[int]:
    """The original's positions (1-based, after the key token): one member per label in ascending label
    order, the last one repeated into the empty slots, then sorted. The tokens of a cluster are exact
    copies here, so any member is the same token; the first member stands for the cluster."""
    picked = [1 + labels.index(label) for label in sorted(set(labels))]
    picked += [picked[-1]] * (slots - len(picked))
    return sorted(picked)


@pytest.mark.parametrize(
    ("pattern", "original", "latest"),
    [
        # Two groups of exact duplicates, interleaved in time: k-means finds 2 clusters for 4 slots.
        ([0, 1, 0, 1, 0, 1, 0, 1], [1, 1, 1, 2], [1, 2, 2, 2]),
        # A 3-frame track padded to 8 by repeating its last frame, as the original's inference does.
        ([0, 1, 2, 2, 2, 2, 2, 2], [1, 1, 2, 3], [1, 2, 3, 3]),
    ],
)
def test_fewer_clusters_than_slots(pattern, original, latest):
    tokens = _tokens(pattern)
    labels = _kmeans_labels(tokens[0, 1:], clusters=4)
    assert len(set(labels)) < 4  # the case under test: k-means leaves clusters empty
    expected = _originals_rule(labels, 4)
    assert expected == original  # the rule, worked out by hand for these labels

    selected, indices = TokenSelector("kmeans", 4, padding="original").eval()(tokens)
    assert indices[0].tolist() == expected
    assert torch.equal(selected[0], tokens[0, [0, *expected]])

    _, indices = TokenSelector("kmeans", 4, padding="latest").eval()(tokens)
    assert indices[0].tolist() == latest  # sorted first, the latest frame repeated
    _, indices = TokenSelector("kmeans", 4).eval()(tokens)
    assert indices[0].tolist() == latest  # "latest" stays the default


def test_short_candidate_lists_are_kept_whole_in_both_paddings():
    # torch_kmeans refuses n_clusters >= points, so with 4 visible frames for 4 slots nothing is clustered.
    tokens = _tokens([0, 1, 1, 1, 2, 2, 2, 2])
    visible = torch.tensor([[True, True, False, True, False, True, False, False, True]])
    for padding in ("original", "latest"):
        _, indices = TokenSelector("kmeans", 4, padding=padding).eval()(tokens, visible)
        assert indices[0].tolist() == [1, 3, 5, 8]
        _, indices = TokenSelector("kmeans", 4, padding=padding).eval()(tokens, visible & (torch.arange(9) < 6))
        assert indices[0].tolist() == [1, 3, 5, 5]


def test_both_paddings_agree_when_every_cluster_is_filled():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=generator) * 10
    tracked = centres.repeat_interleave(2, 0) + 0.01 * torch.randn(8, 16, generator=generator)
    tokens = torch.cat([torch.zeros(1, 16), tracked])[None]
    original = TokenSelector("kmeans", 4, padding="original").eval()(tokens)[1]
    latest = TokenSelector("kmeans", 4, padding="latest").eval()(tokens)[1]
    assert torch.equal(original, latest)
    assert sorted(((original[0] - 1) // 2).tolist()) == [0, 1, 2, 3]


def test_padding_setting_reaches_the_model_and_defaults_to_latest():
    from artemis.model.modeling import ArtemisForConditionalGeneration

    assert ArtemisConfig.from_pretrained(BUNDLED_MODEL).selector_padding == "latest"  # config.json has no field
    assert ArtemisForConditionalGeneration(tiny_config()).selector.padding == "latest"
    model = ArtemisForConditionalGeneration(tiny_config(selector_padding="original"))
    assert model.selector.padding == "original"
    with pytest.raises(ConfigError, match="selector_padding='first'"):
        TokenSelector("kmeans", 4, padding="first")


LLAVA = {
    "model_type": "llava",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "vocab_size": 32000,
    "mm_hidden_size": 1024,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_layer": -2,
    "mm_image_tower": "openai/clip-vit-large-patch14",
    "mm_spi_model": True,
}


@pytest.mark.parametrize(
    ("k_means", "selector", "region_tokens"),
    [(True, "kmeans", 5), (False, "all", 9), (None, "all", 9)],
)
def test_config_from_llava_runs_kmeans_only_when_k_means_is_true(k_means, selector, region_tokens):
    llava = dict(LLAVA) if k_means is None else {**LLAVA, "k_means": k_means}
    config = config_from_llava(llava)
    assert config.selector == selector
    assert config.num_region_tokens == region_tokens  # without k-means: the key token + all 8 tracked
    assert config.selector_padding == "original"
