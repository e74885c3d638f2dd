"""``region_mask_mode="add"``: a mask prompt keeps its box's key token and adds a :class:`MaskEmbedding` of the
masked RoI feature and the mask's shape; the box path never changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from region_helpers import changed_right_half, left_half_masks, levels_and_boxes

from artemis import ArtemisModel
from artemis.data import read
from artemis.data.collator import ArtemisCollator
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.configuration import tiny_config
from artemis.model.region import MaskEmbedding
from artemis.regions import Region, load_mask

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("mask-embedding"), 3, seed=8, split="train", config=CONFIG).split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    return build_tiny_model(texts, seed=0, region_key_mask=True, region_mask_mode="add")


def _randomise(embedding: MaskEmbedding, seed: int = 0) -> None:
    """Give the zero-started last layer values, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embedding.out_weight.copy_(torch.randn(embedding.out_weight.shape, generator=generator))
        embedding.out_bias.copy_(torch.randn(embedding.out_bias.shape, generator=generator))


def test_a_new_mask_embedding_changes_nothing_and_a_trained_one_only_its_own_key_token(split: Path) -> None:
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    model, _ = build_tiny_model(texts, seed=0, region_key_mask=True, region_mask_mode="add")
    replace, _ = build_tiny_model(texts, seed=0, region_key_mask=True)  # the other mode, the same weights
    missing, unexpected = replace.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(name.startswith("region_encoder.mask_embedding.") for name in unexpected)
    model.eval()
    replace.eval()
    levels, boxes, times = levels_and_boxes(model)
    size = model.config.vision_config.image_size
    masks = left_half_masks(2, 2, size)  # sample 1, region 0: the left half only
    encoder = model.region_encoder
    with torch.no_grad():
        plain = encoder(levels, boxes, times)
        torch.testing.assert_close(plain, replace.region_encoder(levels, boxes, times), rtol=0, atol=0)
        assert torch.equal(encoder(levels, boxes, times, masks), plain)  # zero start: the box's tokens
        # the "replace" mode's masked key token differs from its box token, so the mask did reach the encoder
        assert (replace.region_encoder(levels, boxes, times, masks) - plain).abs().amax() > 1e-4
        _randomise(encoder.mask_embedding)
        masked = encoder(levels, boxes, times, masks)
    changed = (masked - plain).abs().amax(-1) > 1e-6  # (B, R, K)
    expected = torch.zeros_like(changed)
    expected[1, 0, 0] = True  # sample 1, region 0, key frame
    assert torch.equal(changed, expected)


def test_the_embedding_reads_the_masked_feature_the_box_feature_and_the_mask_shape_in_its_box(tiny) -> None:
    model, _ = tiny
    model.eval()
    levels, boxes, times = levels_and_boxes(model, batch=1, regions=1, seed=1)
    size = model.config.vision_config.image_size
    boxes[0, 0, 0] = torch.tensor([0.25, 0.25, 0.75, 0.75])
    masks = torch.zeros(1, 1, size, size)
    masks[0, 0, :, : size // 2] = 1.0  # the left half of the frame: the left half of the box
    inputs: list[tuple[torch.Tensor, ...]] = []
    encoder = model.region_encoder
    hook = encoder.mask_embedding.register_forward_hook(lambda module, args, out: inputs.append(args))
    changed_levels = changed_right_half(levels)  # key frame: everything right of the mask
    try:
        with torch.no_grad():
            encoder(levels, boxes, times, masks)
            encoder(changed_levels, boxes, times, masks)
    finally:
        hook.remove()
    (masked, box, shape), (masked_after, box_after, shape_after) = inputs
    grid = MaskEmbedding.grid
    expected = torch.zeros(grid, grid)
    expected[:, : grid // 2] = 1.0
    torch.testing.assert_close(shape.reshape(grid, grid), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(shape_after, shape)
    torch.testing.assert_close(masked_after, masked, rtol=0, atol=1e-5)  # what lies outside does not reach it
    assert (box_after - box).abs().amax() > 1e-2  # the box's feature does see it


def test_only_the_mask_embedding_learns_from_a_masked_item_and_a_box_item_gives_it_no_gradient(split: Path) -> None:
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    model, processor = build_tiny_model(texts, seed=0, region_key_mask=True, region_mask_mode="add")
    files = [("videoref45k", split / "videoref45k.json")]
    collate = ArtemisCollator(processor, model.config)
    embedding = model.region_encoder.mask_embedding
    model.train()
    for mask_prompts in (1.0, 0.0):
        dataset = ReferringDataset.from_files(files, processor, model.config, seed=0, mask_prompts=mask_prompts)
        batch = collate([dataset[i] for i in range(4)])
        assert ("region_masks" in batch) == (mask_prompts == 1.0)
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        grad = embedding.out_weight.grad
        if mask_prompts == 1.0:  # the zero-started last layer gets the gradient first
            assert grad is not None and float(grad.abs().sum()) > 0
        else:
            assert grad is None or float(grad.abs().sum()) == 0
    model.zero_grad(set_to_none=True)


def test_ask_with_a_mask_through_a_saved_model_adds_the_embedding_to_the_key_token_only(
    split: Path, tiny, tmp_path: Path
) -> None:
    model, processor = tiny
    _randomise(model.region_encoder.mask_embedding, seed=3)
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    loaded = ArtemisModel.from_pretrained(tmp_path / "m", tracker="opencv-kcf")
    sample = read("videoref45k", split / "videoref45k.json")[0]
    mask = load_mask(sample.metadata["key_frame_mask"])
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    video, frame = sample.resolve(sample.video), sample.key_frame_id
    tokens: list[torch.Tensor] = []
    encoder = loaded.model.region_encoder
    handle = encoder.register_forward_hook(lambda module, args, out: tokens.append(out.detach()))
    try:
        answers = [
            loaded.ask(video, regions=[region], question="What is it?", max_new_tokens=3)
            for region in (Region(mask=mask, frame=frame), Region(box=box, frame=frame))
        ]
    finally:
        handle.remove()
    assert all(isinstance(answer.text, str) for answer in answers)
    by_mask, by_box = tokens  # (1, 1, K, D) each
    torch.testing.assert_close(by_mask[0, 0, 1:], by_box[0, 0, 1:])  # the tracked tokens: the box's
    assert (by_mask[0, 0, 0] - by_box[0, 0, 0]).abs().amax() > 1e-3  # the key token: plus the mask's embedding
    saved = loaded.model.region_encoder.mask_embedding
    torch.testing.assert_close(saved.out_weight, model.region_encoder.mask_embedding.out_weight)


def test_mask_mode_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="region_mask_mode='bogus' is not valid"):
        tiny_config(region_key_mask=True, region_mask_mode="bogus")
    with pytest.raises(ConfigError, match="region_mask_frames='key'"):
        tiny_config(region_key_mask=True, region_mask_mode="add", region_mask_frames="all")
    plain = build_tiny_model(["a red circle ."], seed=0, region_mask_mode="add")[0]
    assert plain.region_encoder.mask_embedding is None  # without region_key_mask a mask gives its box only


def test_training_only_the_mask_embedding_keeps_every_statistic_of_the_box_path(split: Path) -> None:
    """The recipe's mask part: the batch norms of frozen parts (the RoI feature's, the track token's) keep
    their running statistics and normalise by them in train mode, so box prompts are answered exactly as
    before it, and parts downstream train on the tokens inference gives."""
    import copy

    from artemis.train.config import TrainableSection, TrainConfig
    from artemis.train.setup import set_trainable

    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    model, processor = build_tiny_model(
        texts, seed=0, region_key_mask=True, region_mask_mode="add", region_content_norm="batch",
        region_track_token="relation",
    )  # fmt: skip
    frozen = ["region_encoder.fuse", "region_encoder.level_convs", "region_encoder.flatten_linear",
              "region_encoder.content_norm", "region_encoder.box_embedding", "region_encoder.out_proj",
              "region_encoder.track_embedding", "region_encoder.relation_embedding"]  # fmt: skip
    files = [("videoref45k", split / "videoref45k.json")]
    dataset = ReferringDataset.from_files(files, processor, model.config, seed=0, mask_prompts=1.0)
    batch = ArtemisCollator(processor, model.config)([dataset[i] for i in range(4)])
    for freeze, norms, kept in ((frozen, "eval", True), ([], "eval", False), (frozen, "train", False)):
        trained = copy.deepcopy(model)
        train = TrainableSection(
            projector=False, llm="frozen", region_encoder=True, freeze=freeze, frozen_batch_norms=norms
        )
        set_trainable(trained, TrainConfig(stage="s", model=None, train=train))
        assert [n for n, p in trained.named_parameters() if p.requires_grad] == [
            n for n, _ in trained.named_parameters() if n.startswith("region_encoder.mask_embedding.")
        ] or not freeze
        before = {name: value.clone() for name, value in trained.state_dict().items() if "running" in name}
        assert {"region_encoder.content_norm.running_mean", "region_encoder.track_embedding.norm.running_var"} <= set(
            before
        )
        trained.train()
        trained(**batch).loss.backward()
        after = trained.state_dict()
        moved = {name for name, value in before.items() if not torch.equal(after[name], value)}
        levels, boxes, times = levels_and_boxes(trained)
        trained.train()
        with torch.no_grad():
            training = trained.region_encoder(levels, boxes, times)
            trained.eval()
            inference = trained.region_encoder(levels, boxes, times)
        if kept:
            assert not moved, moved
            torch.testing.assert_close(training, inference, rtol=0, atol=0)
        else:  # a trained region encoder (or frozen_batch_norms: train) follows its batches
            assert "region_encoder.content_norm.running_mean" in moved
            assert (training - inference).abs().amax() > 1e-3


def test_frozen_batch_norms_is_checked(tmp_path: Path) -> None:
    from artemis.train import load_config

    path = tmp_path / "c.yaml"
    path.write_text(
        "stage: referring\nmodel: {tiny: {seed: 0}}\ntrain: {frozen_batch_norms: frozen}\n"
        f"data: {{files: [{{format: videoref45k, path: {tmp_path / 'x.json'}}}]}}\n"
        f"training: {{output_dir: {tmp_path / 'out'}}}\n"
    )
    with pytest.raises(ConfigError, match=r"train\.frozen_batch_norms='frozen'; expected 'eval'"):
        load_config(path)
