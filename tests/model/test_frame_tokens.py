"""Per-frame video tokens: average pooling, the learned top-k (Elysium's T-Selector) and the cell embedding."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from artemis import ArtemisModel
from artemis.errors import ConfigError
from artemis.model import ArtemisConfig, build_tiny_model, tiny_config
from artemis.model.features import VisionFeatureExtractor
from artemis.model.frame_tokens import FrameContext, aligned_positions, frame_tags, isolation_mask
from artemis.model.generation import generate
from artemis.train.config import TrainableSection, TrainConfig
from artemis.train.setup import set_trainable
from artemis.train.stages import trainable_state

SELECT = {"video_layout": "frames", "frame_tokens": "select", "frame_select_tokens": 5}


def _clip(seed: int, frames: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (frames, 32, 32, 3), dtype=np.uint8)


def test_token_counts_and_validation() -> None:
    pool = tiny_config(video_layout="frames", frame_pool_size=2)
    assert (pool.tokens_per_frame, pool.num_video_tokens, pool.num_video_features) == (4, 8 * 4, 8 * 4)
    select = tiny_config(**SELECT)  # scores the full 8x8 patch grid
    assert select.frame_select_grid == 8 and select.frame_feature_grid == 8
    assert (select.tokens_per_frame, select.num_video_tokens, select.num_video_features) == (5, 8 * 5, 8 * 64)
    # The budget defaults to pooling's, frame_pool_size**2; the grid can be pooled first.
    budget = tiny_config(video_layout="frames", frame_tokens="select", frame_pool_size=3, frame_select_grid=4)
    assert (budget.frame_select_tokens, budget.num_video_tokens, budget.num_video_features) == (9, 8 * 9, 8 * 16)
    # Defaults keep every existing model as it was: no new module, no new parameter.
    assert ArtemisConfig().frame_tokens == "pool" and not ArtemisConfig().frame_position_embedding
    model, _ = build_tiny_model(seed=0, video_layout="frames", frame_pool_size=2)
    assert model.frame_selector is None and model.frame_positions is None
    assert not [name for name in model.state_dict() if name.startswith("frame_")]

    errors = {
        "frame_tokens='crop' is not valid": {"video_layout": "frames", "frame_tokens": "crop"},
        "frame_select_gradient='gumbel' is not valid": {**SELECT, "frame_select_gradient": "gumbel"},
        "frame_select_order='random' is not valid; expected one of raster, score": {
            **SELECT,
            "frame_select_order": "random",
        },
        "frame_tokens='select' applies to per-frame video tokens but video_layout='pooled'": {"frame_tokens": "select"},
        "frame_position_embedding=True applies .* set video_layout='frames'": {"frame_position_embedding": True},
        "frame_select_grid=9 must be between 1 and the patch grid's side 8": {**SELECT, "frame_select_grid": 9},
        r"frame_select_tokens=17 must be between 1 and frame_select_grid\*\*2=16": {
            **SELECT,
            "frame_select_grid": 4,
            "frame_select_tokens": 17,
        },
        "frame_position_embedding='yes' is not valid": {"video_layout": "frames", "frame_position_embedding": "yes"},
    }
    for message, overrides in errors.items():
        with pytest.raises(ConfigError, match=message):
            tiny_config(**overrides)


def _reference_cells(selector, tokens: torch.Tensor) -> np.ndarray:
    """The release's math in numpy: s = x w + b, logits = s W + bias, softmax, argsort descending, top k, sorted."""
    x = tokens.detach().double().numpy()  # (..., N, C)
    w = selector.pre_proj.weight.detach().double().numpy()[0]  # (C,)
    b = selector.pre_proj.bias.detach().double().numpy()[0]
    saliency = x @ w + b  # (..., N)
    logits = saliency @ selector.trans_weight.detach().double().numpy() + selector.trans_bias.detach().double().numpy()
    scores = np.exp(logits - logits.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    return np.sort(np.argsort(-scores, axis=-1)[..., : selector.keep], axis=-1)


def test_selected_tokens_are_the_top_k_in_raster_order() -> None:
    model, _ = build_tiny_model(seed=0, **SELECT, frame_select_grid=4)
    selector = model.frame_selector
    # Before training the bias keeps a spread of the grid (trans_weight is zero, so content plays no part).
    assert selector.trans_weight.abs().sum() == 0 and int((selector.trans_bias > 0).sum()) == 5
    with torch.no_grad():
        selector.trans_weight.normal_(generator=torch.Generator().manual_seed(1))  # as after training
    patches = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(2))  # (B, T, P, C)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    features = model.pool_video_features(patches, mask)  # (B, N_t * 16, C): 2x2 patch blocks, not selected yet
    assert features.shape == (2, 8 * 16, 32)
    blocks = patches.reshape(2, 3, 4, 2, 4, 2, 32).mean(dim=(3, 5)).reshape(2, 3, 16, 32)
    torch.testing.assert_close(features.reshape(2, 8, 16, 32)[0, :3], blocks[0])

    grid = features.reshape(2, 8, 16, 32)
    kept, cells = selector(grid)  # (B, N_t, 5, C), (B, N_t, 5)
    assert kept.shape == (2, 8, 5, 32) and cells.shape == (2, 8, 5)
    expected = _reference_cells(selector, grid)
    np.testing.assert_array_equal(cells.numpy(), expected)
    assert (np.diff(cells.numpy(), axis=-1) > 0).all()  # raster order
    assert len({tuple(row) for row in cells[0, :3].tolist()}) > 1  # content matters: frames differ
    torch.testing.assert_close(kept, torch.gather(grid, 2, cells[..., None].expand(-1, -1, -1, 32)), rtol=0, atol=0)
    # The video tokens are the projected kept tokens, frame after frame.
    with torch.no_grad():
        tokens = model.video_tokens(patches, mask)  # (B, N_v, D)
        torch.testing.assert_close(tokens, model.mm_projector(kept).flatten(1, 2))
    assert tokens.shape == (2, model.config.num_video_tokens, 64)


def test_score_order_keeps_the_same_tokens_highest_score_first(tmp_path: Path) -> None:
    raster, processor = build_tiny_model(seed=0, **SELECT, frame_select_grid=4, frame_position_embedding=True)
    with torch.no_grad():  # as after training: content decides, and every cell has its own position vector
        raster.frame_selector.trans_weight.normal_(generator=torch.Generator().manual_seed(1))
        raster.frame_positions.weight.normal_(generator=torch.Generator().manual_seed(3))
    scored = copy.deepcopy(raster)
    scored.config.frame_select_order = "score"
    scored.frame_selector.order = "score"
    patches = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(2))  # (B, T, P, C)
    mask = torch.ones(2, 3, dtype=torch.bool)
    grid = raster.pool_video_features(patches, mask).reshape(2, 8, 16, 32)
    logits = scored.frame_selector.scores(grid)  # (B, N_t, 16)
    kept, cells = scored.frame_selector(grid)
    # The same cells as raster order, now in decreasing score: the first is each frame's argmax.
    np.testing.assert_array_equal(np.sort(cells.numpy(), axis=-1), _reference_cells(raster.frame_selector, grid))
    picked = logits.gather(-1, cells)
    assert (picked[..., :-1] >= picked[..., 1:]).all()
    # (frames 3-7 are padding, whose cells all tie)
    np.testing.assert_array_equal(cells[:, :3, 0].numpy(), logits[:, :3].argmax(-1).numpy())
    torch.testing.assert_close(kept, torch.gather(grid, 2, cells[..., None].expand(-1, -1, -1, 32)), rtol=0, atol=0)
    # Each token keeps its own cell's position vector: the video tokens are a per-frame permutation.
    with torch.no_grad():
        by_raster = raster.video_tokens(patches, mask).reshape(2, 8, 5, -1)
        by_score = scored.video_tokens(patches, mask).reshape(2, 8, 5, -1)
    _, raster_cells = raster.frame_selector(grid)
    order = (cells[..., :, None] == raster_cells[..., None, :]).float().argmax(-1)  # (B, N_t, 5) slot in raster
    torch.testing.assert_close(by_score, by_raster.gather(2, order[..., None].expand_as(by_raster)))
    assert not torch.equal(by_score, by_raster)
    # The order is part of the saved config.
    ArtemisModel(scored, processor).save_pretrained(tmp_path)
    loaded = ArtemisModel.from_pretrained(tmp_path)
    assert loaded.config.frame_select_order == "score" and loaded.model.frame_selector.order == "score"


def test_local_soft_argmax_reads_the_best_cells_neighbourhood_only() -> None:
    from artemis.model.frame_tokens import local_soft_argmax

    side = 8
    logits = torch.full((3, side * side), -4.0)
    logits[0, 2 * side + 3] = 5.0  # one peak at column 3, row 2: its centre exactly
    logits[1, 5 * side + 6] = logits[1, 5 * side + 7] = 5.0  # two equal cells: halfway between their centres
    logits[1, 0] = 4.9  # a distractor far away does not pull the point
    logits[2, 0] = 5.0  # a corner: the cells off the grid are left out
    logits[2, 1] = 5.0 + np.log(3.0)  # three times the weight of cell 0, beside it
    points = local_soft_argmax(logits)
    rest = np.exp(-9.0)  # each other cell of a window next to a peak of 5 (weight e^-9 against e^0)
    torch.testing.assert_close(points[0], torch.tensor([3.5, 2.5]) / side)
    torch.testing.assert_close(points[1], torch.tensor([7.0, 5.5]) / side, atol=1e-3, rtol=0)
    # Cells (0, 0) and (1, 0) weigh 1 and 3; the window's other cells on the grid are (2, 0), (0, 1), (1, 1), (2, 1).
    x = (0.5 * 1 + 1.5 * 3 + (2.5 + 0.5 + 1.5 + 2.5) * rest) / (4 + 4 * rest)
    torch.testing.assert_close(points[2, 0], torch.tensor(x / side, dtype=torch.float32), atol=1e-3, rtol=0)
    # Differentiable in the neighbourhood's logits, not in the distractor's.
    logits.requires_grad_(True)
    local_soft_argmax(logits)[1].sum().backward()
    assert logits.grad[1, 5 * side + 7] > 0 and logits.grad[1, 0] == 0


def test_refined_position_tells_the_llm_where_in_the_cell_and_trains_the_selector(tmp_path: Path) -> None:
    settings = {**SELECT, "frame_select_order": "score", "frame_position_embedding": True}
    model, processor = build_tiny_model(
        seed=0, tasks=["boxes"], frame_position_init="sincos", frame_position_refine=True, **settings
    )
    positions = model.frame_positions
    side = math.isqrt(positions.weight.shape[0])
    # Read at a cell's centre, the table gives that cell's row; halfway between two centres, their mean.
    centre = torch.tensor([[3.5, 2.5]]) / side
    torch.testing.assert_close(positions.at(centre)[0], positions.weight[2 * side + 3], atol=1e-6, rtol=0)
    halfway = torch.tensor([[4.0, 2.5]]) / side
    expected = (positions.weight[2 * side + 3] + positions.weight[2 * side + 4]) / 2
    torch.testing.assert_close(positions.at(halfway)[0], expected, atol=1e-6, rtol=0)
    # The first token of each frame takes the refined point's vector; the others keep their cell's.
    tokens = torch.zeros(1, 2, 5, positions.weight.shape[1])
    cells = torch.tensor([[[19, 0, 1, 2, 3], [40, 4, 5, 6, 7]]])
    out = positions(tokens, cells, halfway.expand(1, 2, 2))
    torch.testing.assert_close(out[0, :, 0], expected.expand(2, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0, :, 1:], positions.weight[cells[0, :, 1:]])
    # In the model the LM loss reaches the selector through that position, even without the straight-through
    # gate (frame_select_gradient="none").
    frozen_gate, _ = build_tiny_model(
        seed=0, tasks=["boxes"], frame_position_refine=True, frame_select_gradient="none", **settings
    )
    frozen_gate.train()
    with torch.no_grad():
        frozen_gate.frame_positions.weight.normal_(generator=torch.Generator().manual_seed(4))
    frozen_gate(**_sot_batch(processor, _clip(0))).loss.backward()
    assert frozen_gate.frame_selector.trans_bias.grad.abs().sum() > 0
    plain, _ = build_tiny_model(seed=0, tasks=["boxes"], frame_select_gradient="none", **settings)
    plain.train()
    plain(**_sot_batch(processor, _clip(0))).loss.backward()
    assert plain.frame_selector.trans_bias.grad is None
    # Saved and reloaded, it still refines.
    ArtemisModel(model, processor).save_pretrained(tmp_path)
    assert ArtemisModel.from_pretrained(tmp_path).config.frame_position_refine is True
    for overrides, wrong in [
        ({**SELECT, "frame_position_embedding": True}, "frame_select_order='score' \\(got 'raster'\\)"),
        ({**SELECT, "frame_select_order": "score"}, "frame_position_embedding=true \\(got False\\)"),
    ]:
        with pytest.raises(ConfigError, match=f"frame_position_refine=true refines .*{wrong}"):
            tiny_config(frame_position_refine=True, **overrides)


def _sot_batch(processor, clip: np.ndarray) -> dict[str, torch.Tensor]:
    item = processor.box_output_item(clip, box=(3.2, 6.4, 9.6, 12.8), answer_boxes=np.tile([4.0, 6, 10, 13], (6, 1)))
    return processor.collate([item])


@pytest.mark.parametrize("mode", ["straight_through", "none"])
def test_selector_gradient_reaches_the_scores_only_straight_through(mode: str) -> None:
    model, processor = build_tiny_model(seed=0, **SELECT, frame_select_gradient=mode)
    model.train()
    batch = _sot_batch(processor, _clip(0))
    model(**batch).loss.backward()
    selector = model.frame_selector
    grads = {name: p.grad for name, p in selector.named_parameters()}
    if mode == "none":
        assert all(grad is None for grad in grads.values())
        return
    # trans_weight starts at zero, so pre_proj's gradient (which flows through it) is zero on the first step.
    assert grads["trans_weight"].abs().sum() > 0 and grads["trans_bias"].abs().sum() > 0
    assert grads["pre_proj.weight"].abs().sum() == 0
    torch.optim.SGD(selector.parameters(), lr=1.0).step()
    model.zero_grad()
    model(**batch).loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in selector.parameters())


def test_forward_is_identical_with_and_without_the_gradient_path() -> None:
    straight, processor = build_tiny_model(seed=0, **SELECT)
    hard, _ = build_tiny_model(seed=0, **SELECT, frame_select_gradient="none")
    with torch.no_grad():
        straight.frame_selector.trans_weight.normal_(generator=torch.Generator().manual_seed(3))
    hard.load_state_dict(straight.state_dict())
    batch = _sot_batch(processor, _clip(1))
    straight.train()  # the gate is built with grad enabled
    hard.train()
    first, second = straight(**batch), hard(**batch)
    assert torch.equal(first.logits, second.logits) and torch.equal(first.loss, second.loss)


@pytest.mark.parametrize(
    "overrides", [{"video_layout": "frames", "frame_pool_size": 2}, SELECT], ids=["pool", "select"]
)
def test_position_embedding_adds_one_vector_per_cell(overrides: dict) -> None:
    model, _ = build_tiny_model(seed=0, frame_position_embedding=True, **overrides)
    config = model.config
    positions = model.frame_positions.weight
    assert positions.shape == (config.frame_feature_grid**2, 64) and positions.abs().sum() == 0  # zero-init
    patches = torch.randn(1, 3, 64, 32, generator=torch.Generator().manual_seed(4))
    mask = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        plain = model.video_tokens(patches, mask)
        positions.normal_(generator=torch.Generator().manual_seed(5))
        placed = model.video_tokens(patches, mask)
    added = (placed - plain).reshape(config.num_frames, config.tokens_per_frame, 64)  # (N_t, n, D)
    if model.frame_selector is None:
        cells = torch.arange(config.tokens_per_frame).expand(config.num_frames, -1)
    else:
        grid = model.pool_video_features(patches, mask).reshape(config.num_frames, -1, 32)
        cells = model.frame_selector(grid)[1]  # (N_t, k)
    torch.testing.assert_close(added, positions.detach()[cells])
    assert (added[0, 0] - added[0, 1]).abs().sum() > 0  # different cells, different vectors


def test_box_output_model_with_selected_tokens(tmp_path: Path) -> None:
    model, processor = build_tiny_model(
        ["the red circle"], seed=2, **SELECT, frame_position_embedding=True, tasks=["describe", "boxes"]
    )
    with torch.no_grad():  # as after training, so that a save that lost them would show
        model.frame_selector.trans_weight.normal_(generator=torch.Generator().manual_seed(6))
        model.frame_positions.weight.normal_(generator=torch.Generator().manual_seed(7))
    inputs = processor(_clip(2), task="sot", box=(3.2, 6.4, 9.6, 12.8))
    ids = inputs["input_ids"]
    assert processor.tokens_per_frame == 5 and processor.num_video_tokens == 40
    assert int((ids == model.config.video_token_id).sum()) == 40  # 6 frames + 2 padding frames, 5 tokens each
    texts = generate(model, processor, inputs, max_new_tokens=8)
    assert len(texts) == 1 and isinstance(texts[0], str)

    ArtemisModel(model, processor).save_pretrained(tmp_path)
    loaded = ArtemisModel.from_pretrained(tmp_path)
    assert loaded.config.frame_tokens == "select" and loaded.config.frame_select_tokens == 5
    assert loaded.processor.tokens_per_frame == 5
    pixels, mask = inputs["pixel_values"], inputs["frame_mask"]
    with torch.no_grad():
        expected = model(input_ids=ids, pixel_values=pixels, frame_mask=mask).logits
        actual = loaded.model(input_ids=ids, pixel_values=pixels, frame_mask=mask).logits
        # Cached vision features hold the grid before selection, so the selector still runs (and trains).
        video, _ = VisionFeatureExtractor(loaded.model)(pixels[0], range(6), [])
        assert video.shape == (model.config.num_video_features, 32)
        cached = loaded.model(input_ids=ids, video_features=video[None]).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    torch.testing.assert_close(cached, expected)


def test_selector_and_positions_train_with_the_projector() -> None:
    model, _ = build_tiny_model(seed=0, **SELECT, frame_position_embedding=True)
    config = TrainConfig(stage="s", model=None, train=TrainableSection(projector=True))
    counts = set_trainable(copy.deepcopy(model), config)
    selector = sum(p.numel() for p in model.frame_selector.parameters())
    positions = model.frame_positions.weight.numel()
    projector = sum(p.numel() for p in model.mm_projector.parameters())
    assert counts["projector"] == projector + selector + positions
    trained = copy.deepcopy(model)
    set_trainable(trained, config)
    names = set(trainable_state(trained))
    assert {"frame_selector.trans_weight", "frame_selector.pre_proj.weight", "frame_positions.weight"} <= names
    frozen = copy.deepcopy(model)
    counts = set_trainable(frozen, TrainConfig(stage="s", model=None, train=TrainableSection(projector=False)))
    assert counts["projector"] == 0 and not frozen.frame_selector.trans_weight.requires_grad


def test_query_keeps_the_target_cells_on_every_frame() -> None:
    """With a target query (SOT's frame-1 box), the kept cells follow the target, not a brighter distractor."""
    from artemis.model.frame_tokens import FrameTokenSelector, box_query

    side, channels = 8, 6
    rng = np.random.default_rng(3)
    target, distractor = rng.normal(size=channels), rng.normal(size=channels) * 5  # the distractor is salient
    grid = torch.as_tensor(rng.normal(scale=0.05, size=(1, 3, side * side, channels)), dtype=torch.float32)
    target_cells = {0: [9, 10, 17, 18], 1: [11, 12, 19, 20], 2: [13, 14, 21, 22]}  # moving right
    for frame, cells in target_cells.items():
        grid[0, frame, cells] += torch.as_tensor(target, dtype=torch.float32)
        grid[0, frame, [50, 51, 58, 59]] += torch.as_tensor(distractor, dtype=torch.float32)
    box = torch.tensor([[1 / side, 1 / side, 3 / side, 3 / side]])  # cells (1..2, 1..2) of frame 0
    query = box_query(grid, box)
    assert torch.allclose(query[0], grid[0, 0, [9, 10, 17, 18]].mean(0), atol=1e-5)
    selector = FrameTokenSelector(channels, side, keep=4, query=True)
    with torch.no_grad():  # a saliency that prefers the distractor, which the query must overrule
        selector.pre_proj.weight.copy_(torch.as_tensor(distractor / np.linalg.norm(distractor), dtype=torch.float32))
        selector.trans_weight.copy_(torch.eye(side * side) * 0.1)
    _, plain = selector(grid)
    _, guided = selector(grid, query)
    assert plain[0, 1].tolist() == [50, 51, 58, 59]
    for frame, cells in target_cells.items():
        assert guided[0, frame].tolist() == cells
    # A NaN query row (an RSOT clip beside an SOT clip) leaves that sample's choice as without a query.
    both = torch.cat([grid, grid])
    _, mixed = selector(both, torch.cat([query, torch.full_like(query, float("nan"))]))
    assert torch.equal(mixed[0], guided[0]) and torch.equal(mixed[1], plain[0])


def test_query_cosine_is_torchs_cosine_similarity_values_and_gradients() -> None:
    """The selector's cell-to-query cosine is written out (so the query is not expanded to every cell); it
    gives what ``F.cosine_similarity`` over the broadcast gives, gradients included, a zero cell too."""
    from artemis.model.frame_tokens import _cosine_to

    generator = torch.Generator().manual_seed(11)
    cells = torch.randn(3, 4, 25, 6, generator=generator) * torch.rand(3, 4, 25, 1, generator=generator) * 5
    cells[1, 2, 7] = 0.0  # a zero cell: cosine 0, not NaN
    target = torch.randn(3, 6, generator=generator)
    weights = torch.randn(3, 4, 25, generator=generator)
    results = []
    for function in (_cosine_to, lambda c, t: torch.nn.functional.cosine_similarity(c, t[:, None, None, :], dim=-1)):
        c, t = cells.clone().requires_grad_(), target.clone().requires_grad_()
        values = function(c, t)
        (values * weights).sum().backward()
        results.append((values.detach(), c.grad, t.grad))
    for ours, torchs in zip(results[0], results[1], strict=True):
        assert ours.shape == torchs.shape
        torch.testing.assert_close(ours, torchs, rtol=1e-5, atol=1e-6)
    assert results[0][0][1, 2, 7] == 0.0


def test_query_reaches_the_model_from_the_sot_prompt_and_trains() -> None:
    model, processor = build_tiny_model(
        seed=0, tasks=["describe", "boxes"], frame_select_query=True, frame_position_embedding=True, **SELECT
    )
    model.train()
    clip = _clip(5)
    boxes = np.tile([4.0, 6.0, 20.0, 18.0], (len(clip), 1))
    sot = processor.box_output_item(clip, box=boxes[0], answer_boxes=boxes)
    rsot = processor.box_output_item(clip, expression="the red circle", answer_boxes=boxes)
    assert "query_boxes" in sot and "query_boxes" not in rsot
    batch = processor.collate([sot, rsot])
    assert torch.isfinite(batch["query_boxes"][0]).all() and torch.isnan(batch["query_boxes"][1]).all()
    model(**batch).loss.backward()
    selector = model.frame_selector
    assert selector.query_proj.weight.grad.abs().sum() > 0 and selector.query_scale.grad.abs() > 0
    # Generation carries the query into the prefill: SOT and the same clip without the box differ in tokens.
    inputs = processor(clip, task="sot", box=boxes[0])
    assert "query_boxes" in inputs
    model.eval()
    with torch.no_grad():
        guided = model(**inputs).logits
        unguided = model(**{k: v for k, v in inputs.items() if k != "query_boxes"}).logits
    assert not torch.allclose(guided, unguided)
    # Refused without the selector it belongs to.
    with pytest.raises(ConfigError, match="frame_select_query"):
        tiny_config(video_layout="frames", frame_select_query=True)


def test_centred_query_ignores_what_every_cell_of_a_frame_shares(tmp_path: Path) -> None:
    """``frame_select_centre``: a colour shared by the whole frame (a plain background) changes nothing."""
    from artemis.model.frame_tokens import FrameTokenSelector, box_query

    side, channels = 8, 6
    rng = np.random.default_rng(5)
    grid = torch.as_tensor(rng.normal(scale=0.05, size=(1, 3, side * side, channels)), dtype=torch.float32)
    target = torch.as_tensor(rng.normal(size=channels), dtype=torch.float32)
    target_cells = {0: [9, 10, 17, 18], 1: [11, 12, 19, 20], 2: [13, 14, 21, 22]}
    for frame, cells in target_cells.items():
        grid[0, frame, cells] += target
    background = torch.as_tensor(rng.normal(size=channels) * 20, dtype=torch.float32)  # shared by every cell
    shifted = grid + background
    box = torch.tensor([[0.0, 0.0, 3 / side, 3 / side]])  # the target's 4 cells and 5 of background
    centred, plain = (FrameTokenSelector(channels, side, keep=4, query=True, centre=c) for c in (True, False))
    for selector in (centred, plain):
        with torch.no_grad():
            selector.trans_bias.zero_()
    # The query is the box's mean on the first frame, centred on that frame's mean cell.
    first = grid[:, :1] - grid[:, :1].mean(dim=2, keepdim=True)
    torch.testing.assert_close(centred.target_query(grid, box), box_query(first, box))
    torch.testing.assert_close(plain.target_query(grid, box), box_query(grid, box))
    _, kept = centred(grid, centred.target_query(grid, box))
    _, kept_shifted = centred(shifted, centred.target_query(shifted, box))
    for frame, cells in target_cells.items():
        assert kept[0, frame].tolist() == cells
    assert torch.equal(kept_shifted, kept)
    # The raw cosine is pulled to the shared colour: with it, the kept cells are no longer the target's.
    _, plain_shifted = plain(shifted, plain.target_query(shifted, box))
    assert not torch.equal(plain_shifted, kept)

    model, _ = build_tiny_model(seed=0, tasks=["boxes"], frame_select_query=True, frame_select_centre=True, **SELECT)
    assert model.frame_selector.centre
    model.save_pretrained(tmp_path / "m")
    assert ArtemisConfig.from_pretrained(tmp_path / "m").frame_select_centre is True
    with pytest.raises(ConfigError, match=r"frame_select_centre=true .* frame_select_query=false"):
        tiny_config(frame_select_centre=True, **SELECT)
    with pytest.raises(ConfigError, match="frame_select_centre='yes' is not valid"):
        tiny_config(frame_select_query=True, frame_select_centre="yes", **SELECT)


def test_box_cells_loss_is_the_cross_entropy_against_the_targets_cells() -> None:
    from artemis.model.frame_tokens import box_cells_loss

    logits = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(0))  # a 4x4 grid, 3 frames
    boxes = torch.tensor(
        [
            [
                [0.2, 0.2, 0.7, 0.7],  # holds the centres of cells (1, 1), (2, 1), (1, 2), (2, 2)
                [0.8, 0.05, 0.85, 0.1],  # holds no cell centre: the cell of its centre, (3, 0)
            ]
        ]
    )  # frame 3 has no box: absent
    log_p = logits.log_softmax(-1)
    expected = (-log_p[0, 0, [5, 6, 9, 10]].mean() - log_p[0, 1, 3]) / 2
    torch.testing.assert_close(box_cells_loss(logits, boxes), expected)
    nan = torch.full((1, 2, 4), float("nan"))
    torch.testing.assert_close(
        box_cells_loss(logits, torch.cat([boxes[:, :1], nan], 1)), -log_p[0, 0, [5, 6, 9, 10]].mean()
    )
    assert box_cells_loss(logits, nan) is None


def test_centre_target_ranks_the_cell_of_the_box_centre_first() -> None:
    from artemis.model.frame_tokens import box_cells_loss

    side = 8
    boxes = torch.tensor([[[0.30, 0.40, 0.62, 0.58], [0.05, 0.70, 0.22, 0.95]]])  # centres (0.46, 0.49), (0.135, 0.825)
    # The loss against a soft target is least where the softmax equals the target: recover it by descent.
    logits = torch.zeros(1, 2, side * side, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        optimiser.zero_grad()
        box_cells_loss(logits, boxes, "centre").backward()
        optimiser.step()
    p = logits.detach().softmax(-1)[0]  # (2, 64)
    cx = (torch.arange(side) + 0.5) / side
    for frame, (x, y) in enumerate([(0.46, 0.49), (0.135, 0.825)]):
        best = int(p[frame].argmax())
        assert (best % side, best // side) == (int(x * side), int(y * side))  # the cell holding the centre
        d2 = ((cx[None, :] - x) ** 2 + (cx[:, None] - y) ** 2).flatten() * side**2
        expected = torch.exp(-d2 / 2)
        torch.testing.assert_close(p[frame], expected / expected.sum(), atol=2e-3, rtol=0)
    # Next come the neighbours on the side the centre leans to: x = 0.46 is 3.68 cells, right of cell 3's
    # centre (3.5), so cell (4, 3) outranks (2, 3).
    assert p[0, 3 * side + 4] > p[0, 3 * side + 2]
    with pytest.raises(ValueError, match="target='middle'"):
        box_cells_loss(logits, boxes, "middle")
    with pytest.raises(ConfigError, match="frame_select_box_target='middle' is not valid"):
        tiny_config(**SELECT, frame_select_box_target="middle")


def test_selector_box_loss_trains_the_selector_from_the_answer_boxes() -> None:
    model, processor = build_tiny_model(
        seed=0, tasks=["boxes"], frame_select_query=True, frame_select_box_loss=0.5, **SELECT
    )
    clip = _clip(7)
    boxes = np.tile([4.0, 6.0, 20.0, 18.0], (len(clip), 1))
    boxes[2] = np.nan  # absent on the third frame
    sot = processor.box_output_item(clip, box=boxes[0], answer_boxes=boxes)
    rsot = processor.box_output_item(clip[:4], expression="the red circle", answer_boxes=boxes[:4])
    inference = processor.box_output_item(clip, box=boxes[0])
    assert "frame_boxes" not in inference
    batch = processor.collate([sot, rsot])
    assert batch["frame_boxes"].shape == (2, len(clip), 4)
    assert torch.isnan(batch["frame_boxes"][0, 2]).all() and torch.isnan(batch["frame_boxes"][1, 4:]).all()
    torch.testing.assert_close(batch["frame_boxes"][0, 0], batch["query_boxes"][0])
    model.train()
    with_loss = model(**batch)
    selector_loss = model.frame_select_loss
    assert selector_loss is not None and selector_loss > 0
    model.config.frame_select_box_loss = 0.0
    without = model(**batch)
    torch.testing.assert_close(with_loss.loss - without.loss, 0.5 * selector_loss)
    model.zero_grad()
    model.config.frame_select_box_loss = 0.5
    model(**batch).loss.backward()
    assert model.frame_selector.trans_bias.grad.abs().sum() > 0 and model.frame_selector.query_scale.grad.abs() > 0
    model.eval()
    with torch.no_grad():
        model(**batch)
    assert model.frame_select_loss is None  # a training loss only
    with pytest.raises(ConfigError, match="frame_select_box_loss=-1 is not valid"):
        tiny_config(frame_select_box_loss=-1, **SELECT)
    with pytest.raises(ConfigError, match="frame_select_box_loss=True is not valid"):
        tiny_config(frame_select_box_loss=True, **SELECT)
    with pytest.raises(ConfigError, match="frame_tokens='pool'"):
        tiny_config(video_layout="frames", frame_select_box_loss=1.0)


def test_text_query_scores_rsot_clips_against_their_expression_and_trains() -> None:
    """``frame_select_text_query``: a clip without a box is scored against its prompt; a box still wins."""
    texts = ["the red circle", "the blue square"]
    model, processor = build_tiny_model(
        texts, seed=0, tasks=["boxes"], frame_select_query=True, frame_select_text_query=True,
        frame_select_box_loss=1.0, **SELECT,
    )  # fmt: skip
    plain, _ = build_tiny_model(texts, seed=0, tasks=["boxes"], frame_select_query=True, **SELECT)
    plain.load_state_dict(model.state_dict(), strict=False)  # the same weights, without the text query
    clip = _clip(9)
    boxes = np.tile([4.0, 6.0, 20.0, 18.0], (len(clip), 1))
    kept = {}
    original = model.frame_selector.select

    def record(tokens, logits):
        kept["cells"] = original(tokens, logits)[1]
        return original(tokens, logits)

    model.frame_selector.select = record
    model.eval()
    with torch.no_grad():
        for text in texts:
            model(**processor(clip, task="rsot", expression=text))
            kept[text] = kept["cells"]
        sot = processor(clip, task="sot", box=boxes[0])
        torch.testing.assert_close(model(**sot).logits, plain(**sot).logits)  # a box query is used as before
    assert not torch.equal(kept[texts[0]], kept[texts[1]])  # the expression chooses the cells
    model.train()
    rsot = processor.box_output_item(clip, expression=texts[0], answer_boxes=boxes)
    model(**processor.collate([rsot]))
    model.frame_select_loss.backward()  # the selector's loss alone reaches the expression's words
    assert model.frame_selector.text_proj.weight.grad.abs().sum() > 0
    red = processor.tokenizer.convert_tokens_to_ids("red")
    assert model.get_input_embeddings().weight.grad[red].abs().sum() > 0
    with pytest.raises(ConfigError, match=r"frame_select_text_query=true .* but frame_select_query=false"):
        tiny_config(frame_select_text_query=True, **SELECT)


def test_attention_pooled_text_query_starts_as_the_mean_and_learns_which_words_count(tmp_path: Path) -> None:
    """``frame_select_text_pool="attention"``: zero word scores give the mean; scores move the summary to
    the words they favour; padding never counts; the scores train and survive a save."""
    texts = ["the red circle", "the blue square"]
    options = dict(tasks=["boxes"], frame_select_query=True, frame_select_text_query=True, **SELECT)
    model, processor = build_tiny_model(texts, seed=0, frame_select_text_pool="attention", **options)
    mean, _ = build_tiny_model(texts, seed=0, **options)
    mean.load_state_dict(model.state_dict(), strict=False)  # the same weights, pooled by the mean
    selector = model.frame_selector
    assert selector.text_pool.weight.abs().sum() == 0 and selector.text_pool.bias.abs().sum() == 0
    clip = _clip(4)
    rsot = processor(clip, task="rsot", expression=texts[0])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**rsot).logits, mean(**rsot).logits)  # the mean at the start
        embeds = torch.randn(2, 5, selector.text_proj.in_features)
        words = torch.tensor([[True, True, True, False, False], [False, False, False, False, False]])
        torch.testing.assert_close(selector.pool_text(embeds, words)[0], embeds[0, :3].mean(0))
        assert selector.pool_text(embeds, words)[1].abs().sum() == 0  # no words: zeros, not NaN
        selector.text_pool.weight.copy_(embeds[0, 1] * 50)  # a score that singles out the second word
        pooled = selector.pool_text(embeds, words)[0]
        assert torch.linalg.vector_norm(pooled - embeds[0, 1]) < 0.05 * torch.linalg.vector_norm(embeds[0, 1])
        embeds[0, 3:] = 1e4  # padding changes nothing
        torch.testing.assert_close(selector.pool_text(embeds, words)[0], pooled)
        selector.reset_text_pool()
    model.train()
    boxes = np.tile([4.0, 6.0, 20.0, 18.0], (len(clip), 1))
    model(
        **processor.collate([processor.box_output_item(clip, expression=texts[1], answer_boxes=boxes)])
    ).loss.backward()
    assert selector.text_pool.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        selector.text_pool.weight.normal_()
    ArtemisModel(model, processor).save_pretrained(tmp_path / "pooled")
    reloaded = ArtemisModel.from_pretrained(tmp_path / "pooled").model
    torch.testing.assert_close(reloaded.frame_selector.text_pool.weight, selector.text_pool.weight)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**rsot).logits, model(**rsot).logits)
    with pytest.raises(ConfigError, match=r"frame_select_text_pool='attention' .* frame_select_text_query=false"):
        tiny_config(frame_select_text_pool="attention", frame_select_query=True, **SELECT)
    with pytest.raises(ConfigError, match=r"frame_select_text_pool='max' is not valid"):
        tiny_config(frame_select_text_pool="max", **SELECT)


def test_sincos_position_start_tells_every_cell_apart_and_survives_reload(tmp_path: Path) -> None:
    model, processor = build_tiny_model(
        seed=0, tasks=["boxes"], frame_position_embedding=True, frame_position_init="sincos", **SELECT
    )
    table = model.frame_positions.weight.detach()  # (64, D) for the 8x8 grid
    assert table.shape[0] == 64 and torch.isclose(table.pow(2).mean().sqrt(), torch.tensor(0.1), atol=1e-4)
    distances = torch.cdist(table, table) + torch.eye(64) * 1e9
    assert distances.min() > 1e-3  # no two cells share a code
    # Neighbouring columns are closer than far ones: the code carries position, not just identity.
    assert torch.dist(table[0], table[1]) < torch.dist(table[0], table[7])
    with torch.no_grad():
        model.frame_positions.weight.add_(0.5)  # "trained": a reload must keep these values, not re-initialise
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    reloaded = type(model).from_pretrained(tmp_path / "m")
    assert torch.equal(reloaded.frame_positions.weight, model.frame_positions.weight)
    with pytest.raises(ConfigError, match="frame_position_init"):
        tiny_config(video_layout="frames", frame_position_embedding=True, frame_position_init="random")


def test_frame_context_starts_as_the_identity_sees_its_neighbours_and_trains(tmp_path: Path) -> None:
    settings = {**SELECT, "tasks": ["boxes"], "frame_select_query": True, "frame_position_embedding": True}
    plain, processor = build_tiny_model(seed=3, **settings)
    model, _ = build_tiny_model(seed=3, frame_context_layers=2, **settings)
    clip = _clip(4)
    boxes = np.tile([4.0, 6.0, 20.0, 18.0], (len(clip), 1))
    inputs = processor(clip, task="sot", box=boxes[0])
    with torch.no_grad():  # zero output convolutions: the same model as without them, weight for weight
        torch.testing.assert_close(model(**inputs).logits, plain(**inputs).logits, rtol=0, atol=0)

    # Once trained, a cell's feature depends on the cells within two of it per block, and on no other.
    context = model.frame_context
    with torch.no_grad():
        for block in context.blocks:
            block[-1].weight.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
    side = model.config.frame_select_grid
    grid = torch.randn(1, 1, side * side, model.config.vision_config.hidden_size)
    moved = grid.clone()
    moved[0, 0, 0] += 1.0  # the top-left cell only
    with torch.no_grad():
        changed = (context(moved) - context(grid)).abs().sum(-1)[0, 0].reshape(side, side) > 0
    reach = torch.zeros(side, side, dtype=torch.bool)
    reach[:5, :5] = True  # two blocks of two 3x3 convolutions: four cells each way
    assert torch.equal(changed, reach)

    # It trains with the projector, from the first step (the gradient reaches the zero convolution).
    config = TrainConfig(stage="s", model=None, train=TrainableSection(projector=True))
    counts = set_trainable(model, config)
    assert "frame_context.blocks.0.0.weight" in set(trainable_state(model))
    parts = (model.mm_projector, model.frame_selector, model.frame_positions, context)
    assert counts["projector"] == sum(p.numel() for part in parts for p in part.parameters())
    model.train()
    batch = processor.collate([processor.box_output_item(clip, box=boxes[0], answer_boxes=boxes)])
    model(**batch).loss.backward()
    assert context.blocks[0][-1].weight.grad.abs().sum() > 0

    loaded_dir = tmp_path / "m"
    ArtemisModel(model, processor).save_pretrained(loaded_dir)
    loaded = ArtemisModel.from_pretrained(loaded_dir)
    assert torch.equal(loaded.model.frame_context.blocks[1][-1].weight, context.blocks[1][-1].weight)
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="frame_context_layers"):
            tiny_config(frame_context_layers=bad, **SELECT)
    with pytest.raises(ConfigError, match="frame_context_layers"):
        tiny_config(frame_context_layers=1)  # the default video layout has no frame grids


@pytest.mark.parametrize("time", [False, True])
def test_frame_context_over_time_sees_the_frames_before_and_after(time: bool) -> None:
    context = FrameContext(8, layers=1, time=time)
    grid = torch.randn(2, 5, 16, 8)  # 2 clips of 5 frames, 4x4 cells
    torch.testing.assert_close(context(grid), grid, rtol=0, atol=0)  # the identity until it trains
    with torch.no_grad():
        context.blocks[0][-1].weight.normal_(std=0.1, generator=torch.Generator().manual_seed(2))
    moved = grid.clone()
    moved[1, 2, 5] += 1.0  # one cell of the middle frame of the second clip
    with torch.no_grad():
        changed = (context(moved) - context(grid)).abs().sum(dim=(-1, -2)) > 0  # (2, 5) frames touched
    expected = torch.zeros(2, 5, dtype=torch.bool)
    expected[1, 1:4] = time
    expected[1, 2] = True
    assert torch.equal(changed, expected)  # never the other clip, and across frames only with time
    model, _ = build_tiny_model(seed=0, frame_context_layers=1, frame_context_time=True, **SELECT)
    assert isinstance(model.frame_context.blocks[0][0], torch.nn.Conv3d)
    assert not model.frame_context.blocks[0][-1].weight.any()  # built zero through _init_weights
    with pytest.raises(ConfigError, match="frame_context_time"):
        tiny_config(frame_context_time=True, **SELECT)  # no context blocks to span frames
    with pytest.raises(ConfigError, match="frame_context_time"):
        tiny_config(frame_context_layers=1, frame_context_time="yes", **SELECT)


def test_frame_index_embedding_tags_every_token_of_a_frame_and_trains(tmp_path: Path) -> None:
    settings = {**SELECT, "tasks": ["boxes"], "frame_select_query": True, "frame_position_embedding": True}
    plain, processor = build_tiny_model(seed=4, **settings)
    model, _ = build_tiny_model(seed=4, frame_index_embedding=True, **settings)
    # Turning it on draws nothing from the random generator: every other weight starts as it was.
    plain_state = plain.state_dict()
    for name, value in model.state_dict().items():
        if not name.startswith("frame_indices."):
            assert torch.equal(value, plain_state[name]), name
    table = model.frame_indices.weight.detach()
    frames, dim = model.config.num_frames, model.config.text_config.hidden_size
    assert table.shape == (frames, dim)
    assert math.isclose(table.pow(2).mean().sqrt().item(), 0.1, rel_tol=1e-5)
    assert torch.cdist(table, table)[~torch.eye(frames, dtype=torch.bool)].min() > 0.1  # frames told apart

    # Every token of frame t moves by the same vector, frame t's row, and by nothing else.
    features = torch.randn(2, model.config.num_video_features, model.config.vision_config.hidden_size)
    box = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8]])
    with torch.no_grad():
        tagged = model.project_video_features(features, query_boxes=box)
        untagged = plain.project_video_features(features, query_boxes=box)
    per_frame = (tagged - untagged).reshape(2, frames, model.config.tokens_per_frame, dim)
    torch.testing.assert_close(per_frame, table[None, :, None, :].expand_as(per_frame), rtol=0, atol=1e-6)

    # It trains with the projector, and is saved and loaded with the model.
    config = TrainConfig(stage="s", model=None, train=TrainableSection(projector=True))
    set_trainable(model, config)
    assert "frame_indices.weight" in set(trainable_state(model))
    model.train()
    clip = _clip(5)
    boxes = np.tile([4.0, 6.0, 20.0, 18.0], (len(clip), 1))
    batch = processor.collate([processor.box_output_item(clip, box=boxes[0], answer_boxes=boxes)])
    model(**batch).loss.backward()
    assert model.frame_indices.weight.grad.abs().sum(-1).gt(0).all()  # every frame's row learns
    with torch.no_grad():
        model.frame_indices.weight.add_(0.5)
    ArtemisModel(model, processor).save_pretrained(tmp_path / "m")
    loaded = ArtemisModel.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.model.frame_indices.weight, model.frame_indices.weight)
    for bad in (1, "yes", None):
        with pytest.raises(ConfigError, match="frame_index_embedding"):
            tiny_config(frame_index_embedding=bad, **SELECT)
    with pytest.raises(ConfigError, match="frame_index_embedding"):
        tiny_config(frame_index_embedding=True)  # the default video layout has no frames of its own


def test_frame_index_text_tags_the_answer_for_each_frame_and_decodes_as_it_trains() -> None:
    settings = {**SELECT, "tasks": ["boxes"], "frame_select_query": True, "frame_index_embedding": True}
    model, processor = build_tiny_model(seed=6, frame_index_text=True, **settings)
    untagged, _ = build_tiny_model(seed=6, **settings)
    words = processor.tokenizer.convert_ids_to_tokens(model.config.frame_label_ids)
    assert words == ["Frame", *(str(k) for k in range(1, model.config.num_frames + 1))]
    clip = _clip(7, frames=5)
    boxes = np.array([[4.0, 6.0, 20.0, 18.0], [5, 6, 21, 18], [np.nan] * 4, [7, 8, 23, 20], [8, 8, 24, 20]])
    batch = processor.collate([processor.box_output_item(clip, box=boxes[0], answer_boxes=boxes)])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    tags = frame_tags(batch["input_ids"], model.config.frame_label_ids)[0]
    # In the answer, "Frame k: [x1,y1,x2,y2]," is about frame k from its number on; "Frame" keeps the
    # frame before it.
    tokens = processor.tokenizer.convert_ids_to_tokens(ids.tolist())
    numbers = [str(k) for k in range(1, model.config.num_frames + 1)]
    named, expected = 0, []
    for position, token in enumerate(tokens):
        if position and tokens[position - 1] == "Frame" and token in numbers:
            named = int(token)
        expected.append(named)
    assert tags.tolist() == expected
    answer = (labels != -100).nonzero()[:, 0]
    assert expected[answer[0] - 1] == 1 and max(expected[answer[0] :]) == len(clip)  # frames 1..5 named
    # Each video token sits after "Frame k:" and is tagged k (it gets its vector in project_video_features).
    video = (ids == model.config.video_token_id).nonzero()[:, 0]
    per_frame = model.config.tokens_per_frame
    assert tags[video[: len(clip) * per_frame]].tolist() == [k // per_frame + 1 for k in range(len(clip) * per_frame)]

    # The tags change what the model computes, once its table is not the untagged model's zero.
    with torch.no_grad():
        model.frame_indices.weight.mul_(20.0)
        untagged.frame_indices.weight.copy_(model.frame_indices.weight)
        assert not torch.allclose(model(**batch).logits, untagged(**batch).logits)
    # Decoding with the KV cache tags each new token from the whole sequence, as the training forward does:
    # continued from the answer's "Frame 4: [", greedy generation (whose tokens are about frame 4 until it
    # writes another "Frame") equals the argmax of one forward over everything it read and wrote.
    fourth = next(p for p in answer.tolist() if tokens[p - 1] == "Frame" and tokens[p] == "4")
    prefix = ids[None, : fourth + 3]  # up to "Frame 4: ["
    visual = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels", "frame_boxes")}
    _assert_cached_decoding_matches_one_forward(model, prefix, visual)
    with pytest.raises(ConfigError, match="frame_label_ids"):
        tiny_config(frame_index_embedding=True, frame_index_text=True, **SELECT)
    with pytest.raises(ConfigError, match="frame_index_embedding"):
        tiny_config(frame_index_text=True, frame_label_ids=list(range(9)), **SELECT)


def test_frame_aligned_positions_keep_each_frame_text_one_distance_from_its_frame() -> None:
    settings = {**SELECT, "tasks": ["boxes"], "frame_select_query": True}
    model, processor = build_tiny_model(seed=8, frame_aligned_positions=True, **settings)
    plain, _ = build_tiny_model(seed=8, **settings)
    clip = _clip(9, frames=5)
    boxes = np.array([[4.0, 6.0, 20.0, 18.0], [5, 6, 21, 18], [np.nan] * 4, [7, 8, 23, 20], [8, 8, 24, 20]])
    for expression in (None, "the red circle"):  # SOT (whose question names "Frame 1" again) and RSOT
        item = processor.box_output_item(
            clip, box=None if expression else boxes[0], expression=expression, answer_boxes=boxes
        )
        batch = processor.collate([item])
        ids, labels = batch["input_ids"][0], batch["labels"][0]
        positions = aligned_positions(
            batch["input_ids"], batch["attention_mask"], model.config.frame_label_ids, model.config.video_token_id
        )[0]
        tokens = processor.tokenizer.convert_ids_to_tokens(ids.tolist())
        answer = int((labels != -100).nonzero()[0, 0])
        named = {  # frame number -> (position of the prompt's "Frame k", of the answer's "Frame k")
            int(tokens[p + 1]): p for p in range(answer) if tokens[p] == "Frame" and tokens[p + 2] == ":"
        }
        written = {int(tokens[p + 1]): p for p in range(answer - 1, len(tokens) - 1) if tokens[p] == "Frame"}
        assert sorted(written) == sorted(named)[: len(clip)] == [1, 2, 3, 4, 5]
        # A frame's text starts at its number: "Frame k: [..]," in the answer, "Frame k: <frame>" in the prompt.
        distances = {int(positions[written[k] + 1] - positions[named[k] + 1]) for k in written}
        assert len(distances) == 1  # every frame's box text as far from its frame as frame 1's
        plain_distances = {written[k] - named[k] for k in written}
        assert len(plain_distances) == len(written)  # plain positions drift frame by frame
        # Within a frame's text, positions run on one by one; before the video's end they are the plain ones.
        assert positions[: named[5] + 2].tolist() == list(range(named[5] + 2))
        assert (positions[written[3] + 1 : written[4] + 1].diff() == 1).all()
        # Causal: each prefix gets the positions (and tags) it has inside the whole sequence, so a token's
        # position is fixed when it is written, and cached decoding sees what the training forward sees.
        label_ids, video_id = model.config.frame_label_ids, model.config.video_token_id
        for end in range(answer - 2, len(ids) + 1):
            prefix = batch["input_ids"][:, :end]
            assert torch.equal(aligned_positions(prefix, None, label_ids, video_id)[0], positions[:end])
            assert torch.equal(frame_tags(prefix, label_ids)[0], frame_tags(batch["input_ids"], label_ids)[0, :end])
    # The model changes only through its positions: the training forward and cached decoding agree.
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits, plain(**batch).logits)
    fourth = written[4]
    prefix = ids[None, : fourth + 3]  # up to "Frame 4: ["
    visual = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels", "frame_boxes")}
    _assert_cached_decoding_matches_one_forward(model, prefix, visual)
    with pytest.raises(ConfigError, match="frame_label_ids"):
        tiny_config(frame_aligned_positions=True, **SELECT)
    with pytest.raises(ConfigError, match="frame_aligned_positions"):
        tiny_config(frame_aligned_positions=True, frame_label_ids=list(range(9)))


def test_frame_answer_isolation_writes_each_box_without_reading_the_boxes_before_it() -> None:
    settings = {**SELECT, "tasks": ["boxes"], "frame_select_query": True, "frame_select_text_query": True}
    model, processor = build_tiny_model(seed=11, frame_answer_isolation=True, **settings)
    plain, _ = build_tiny_model(seed=11, **settings)
    clip = _clip(12, frames=5)
    boxes = np.array([[4.0, 6.0, 20.0, 18.0], [5, 6, 21, 18], [np.nan] * 4, [7, 8, 23, 20], [8, 8, 24, 20]])
    moved = boxes + np.array([[9.0, 3, 9, 3]])  # other boxes for frames 1-3 (frame 4 on stays)
    moved[3:] = boxes[3:]
    label_ids, video_id = model.config.frame_label_ids, model.config.video_token_id
    for expression in (None, "the red circle"):  # SOT (whose question names "Frame 1" too) and RSOT
        items = [
            processor.box_output_item(clip, box=None if expression else boxes[0], expression=expression, answer_boxes=b)
            for b in (boxes, moved)
        ]
        batch = processor.collate(items)
        ids, labels = batch["input_ids"][0], batch["labels"][0]
        tokens = processor.tokenizer.convert_ids_to_tokens(ids.tolist())
        answer = int((labels != -100).nonzero()[0, 0])
        written = {int(tokens[p + 1]): p + 1 for p in range(answer - 1, len(tokens) - 1) if tokens[p] == "Frame"}
        assert sorted(written) == [1, 2, 3, 4, 5]  # frame number -> position of its number in the answer
        allowed = isolation_mask(batch["input_ids"], batch["attention_mask"], label_ids, video_id)[0, 0]
        # Expected, from the tokens: a query about frame k >= 2 sees everything before the answer's "1" and
        # its own text from its "k" on; frame 1's text and everything before the answer see all before them.
        for query in range(len(ids)):
            later = [k for k, p in written.items() if p <= query]
            start = written[max(later)] if later and max(later) > 1 else written[1]
            visible = [key <= query and not (written[1] <= key < start) for key in range(len(ids))]
            assert allowed[query].tolist() == visible, tokens[query]
        # Causal once the prompt is whole: each prefix gets the rows it has inside the whole sequence.
        for end in range(answer - 2, len(ids) + 1):
            prefix = batch["input_ids"][:1, :end]
            assert torch.equal(isolation_mask(prefix, None, label_ids, video_id)[0, 0], allowed[:end, :end])
        # Through the model: what it writes for frames 4 and 5 is the same whatever boxes frames 1-3 got,
        # where a plain model's changes; what it writes for frame 2 does change with frame 1's own text.
        with torch.no_grad():
            logits = model(**batch).logits
            plain_logits = plain(**batch).logits
        fourth = written[4]
        torch.testing.assert_close(logits[0, fourth:], logits[1, fourth:], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(plain_logits[0, fourth:], plain_logits[1, fourth:], atol=1e-3)
        assert not torch.allclose(logits[0, written[1] + 3 : written[2]], logits[1, written[1] + 3 : written[2]])
        # Padding: a shorter sample in a batch gets the logits it gets alone.
        short = processor.box_output_item(clip[:3], box=None if expression else boxes[0], expression=expression,
                                          answer_boxes=boxes[:3])  # fmt: skip
        pair = processor.collate([items[0], short])
        alone = processor.collate([short])
        with torch.no_grad():
            together = model(**pair).logits[1, : alone["input_ids"].shape[1]]
            torch.testing.assert_close(together, model(**alone).logits[0], rtol=1e-4, atol=1e-5)
        # Cached decoding builds each step's mask from the whole sequence, as the training forward does (SOT:
        # an RSOT clip's text query reads every word it is given, so one forward over the written answer
        # scores other cells than the prompt alone did).
        prefix = batch["input_ids"][:1, : written[4] + 2]  # up to "Frame 4: ["
        visual = {
            k: v[:1] for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels", "frame_boxes")
        }
        if expression is None:
            _assert_cached_decoding_matches_one_forward(model, prefix, visual)
        else:  # the text query reads the prompt's 2-D mask while the LLM attends through the isolation mask
            out = model.generate(input_ids=prefix, attention_mask=torch.ones_like(prefix), **visual, max_new_tokens=4)
            assert out.shape == (1, prefix.shape[1] + 4)
    with pytest.raises(ConfigError, match="frame_label_ids"):
        tiny_config(frame_answer_isolation=True, **SELECT)
    with pytest.raises(ConfigError, match="frame_answer_isolation"):
        tiny_config(frame_answer_isolation=True, frame_label_ids=list(range(9)))


def _assert_cached_decoding_matches_one_forward(model, prefix: torch.Tensor, visual: dict) -> None:
    """Greedy generation with the KV cache from ``prefix`` gives, step by step, the logits of one forward
    over everything it read and wrote."""
    banned = [model.config.video_token_id, model.config.region_token_id]
    out = model.generate(
        input_ids=prefix,
        attention_mask=torch.ones_like(prefix),
        **visual,
        max_new_tokens=12,
        min_new_tokens=12,
        bad_words_ids=[[token] for token in banned],
        output_logits=True,
        return_dict_in_generate=True,
    )
    written = out.sequences
    assert written.shape[1] == prefix.shape[1] + 12
    with torch.no_grad():
        logits = model(input_ids=written, attention_mask=torch.ones_like(written), **visual).logits
    stepwise = torch.stack(out.logits, dim=1)  # (1, 12, V) each step's logits before the ban
    torch.testing.assert_close(stepwise, logits[:, prefix.shape[1] - 1 : -1], rtol=1e-4, atol=1e-5)


def test_pixel_stem_gives_the_selector_a_finer_grid_that_starts_as_the_tower_upsampled(tmp_path: Path) -> None:
    settings = {
        **SELECT,
        "tasks": ["boxes"],
        "frame_select_query": True,
        "frame_position_embedding": True,
        "frame_context_layers": 1,
    }
    model, processor = build_tiny_model(["the red circle"], seed=5, frame_stem_grid=16, **settings)
    config = model.config
    assert (config.frame_select_grid, config.frame_feature_grid, config.frame_token_grid) == (16, 8, 16)
    assert model.frame_selector.side == 16 and model.frame_positions.weight.shape[0] == 256
    assert config.num_video_features == config.num_frames * 64  # the cacheable grid stays the tower's
    clip = _clip(7)
    boxes = np.tile([4.0, 6.0, 20.0, 18.0], (len(clip), 1))
    inputs = processor(clip, task="sot", box=boxes[0])
    pixels, mask = inputs["pixel_values"], inputs["frame_mask"]

    # Zero output convolution: the grid the selector scores is the tower's grid (after the context block)
    # upsampled bilinearly, cell centres aligned, and nothing of the pixels is added yet.
    layer = config.vision_config.num_hidden_layers + 1 + config.vision_feature_layer
    with torch.no_grad():
        stem = model.stem_features(pixels[mask], mask)
        assert stem.shape == (1, 6, 256, 32) and stem.abs().sum() == 0
        patches = model.vision_tower(pixel_values=pixels[0], output_hidden_states=True).hidden_states[layer][:, 1:]
        pooled = model.pool_video_features(patches[None], mask)  # (1, N_t * 64, C)
        grid = model._frame_grid(pooled, stem)  # (1, N_t, 256, C)
        coarse = model.frame_context(pooled.reshape(1, config.num_frames, 64, 32))[0, 0]  # frame 1, (64, C)
    coarse = coarse.reshape(8, 8, 32)
    # A fine cell's centre (i + 0.5) / 16 of the frame lies at (i + 0.5) / 2 - 0.5 in coarse cells.
    for row, col in [(0, 0), (5, 9), (15, 15), (7, 8)]:
        y, x = (row + 0.5) / 2 - 0.5, (col + 0.5) / 2 - 0.5
        y0, x0 = max(math.floor(y), 0), max(math.floor(x), 0)
        y1, x1 = min(y0 + 1, 7), min(x0 + 1, 7)
        wy, wx = min(max(y - y0, 0.0), 1.0), min(max(x - x0, 0.0), 1.0)
        expected = (1 - wy) * ((1 - wx) * coarse[y0, x0] + wx * coarse[y0, x1]) + wy * (
            (1 - wx) * coarse[y1, x0] + wx * coarse[y1, x1]
        )
        torch.testing.assert_close(grid[0, 0, row * 16 + col], expected, rtol=1e-5, atol=1e-6)

    # Trained, a fine cell reads the pixels of its own 2x2 block and of the cells next to it, no further.
    stem_module = model.frame_stem
    with torch.no_grad():
        stem_module.mix.weight.normal_(std=0.1, generator=torch.Generator().manual_seed(2))
        moved = pixels.clone()
        moved[0, 0, :, 10:12, 20:22] += 1.0  # the pixels of fine cell (5, 10)
        changed = (model.stem_features(moved[mask], mask) - model.stem_features(pixels[mask], mask)).abs().sum(-1)
    reach = torch.zeros(6, 16, 16, dtype=torch.bool)
    reach[0, 4:7, 9:12] = True
    assert torch.equal(changed[0].reshape(6, 16, 16) > 0, reach)

    # The kept tokens come from the fine grid, and the stem trains with the projector from the first step.
    with torch.no_grad():
        query = model.frame_selector.target_query(grid, inputs["query_boxes"])
        assert model.frame_selector.scores(grid, query).shape == (1, config.num_frames, 256)
    section = TrainConfig(stage="s", model=None, train=TrainableSection(projector=True))
    set_trainable(model, section)
    assert "frame_stem.mix.weight" in set(trainable_state(model))
    with torch.no_grad():
        stem_module.mix.weight.zero_()
    model.train()
    batch = processor.collate([processor.box_output_item(clip, box=boxes[0], answer_boxes=boxes)])
    model(**batch).loss.backward()
    assert stem_module.mix.weight.grad.abs().sum() > 0 and stem_module.patch.weight.grad is not None
    model.eval()

    # Saved and loaded with its stem; generation and chained clips (the template's query) run through it.
    with torch.no_grad():
        stem_module.mix.weight.normal_(std=0.1, generator=torch.Generator().manual_seed(3))
        expected = model(**inputs).logits
    ArtemisModel(model, processor).save_pretrained(tmp_path / "m")
    loaded = ArtemisModel.from_pretrained(tmp_path / "m")
    assert loaded.config.frame_stem_grid == 16
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**inputs).logits, expected, rtol=0, atol=0)
    frames = np.random.default_rng(0).integers(0, 255, (10, 24, 40, 3), dtype=np.uint8)
    track = loaded.track_with_llm(frames, box=(4, 4, 20, 16), max_new_tokens=12)
    assert track.num_frames == 10 and len(track.texts) == 2

    # Precomputed features lack the pixels the stem reads: one clear error, not a wrong answer.
    with pytest.raises(ConfigError, match=r"pixel stem \(frame_stem_grid=16\).*without a features cache"):
        VisionFeatureExtractor(loaded.model)
    with torch.no_grad():
        video = loaded.model.pool_video_features(patches[None], mask)
        with pytest.raises(ValueError, match=r"pixel stem .*frame_stem_grid=16.*pass pixel_values"):
            loaded.model(input_ids=inputs["input_ids"], video_features=video, query_boxes=inputs["query_boxes"])

    for overrides, wrong in [
        ({**SELECT, "frame_stem_grid": 12}, "multiple of the patch grid's side 8"),
        ({**SELECT, "frame_stem_grid": 8}, "multiple of the patch grid's side 8 above it"),
        ({**SELECT, "frame_stem_grid": 24}, "divides image_size 32"),
        ({**SELECT, "frame_stem_grid": -1}, "frame_stem_grid=-1 is not valid"),
        ({**SELECT, "frame_stem_grid": True}, "frame_stem_grid=True is not valid"),
        ({"video_layout": "frames", "frame_stem_grid": 16}, "frame_tokens='select' \\(got 'frames' and 'pool'\\)"),
        ({**SELECT, "frame_stem_grid": 16, "frame_select_grid": 8}, "set frame_select_grid to 16"),
    ]:
        with pytest.raises(ConfigError, match=wrong):
            tiny_config(**overrides)
