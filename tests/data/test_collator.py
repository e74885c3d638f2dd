"""``ArtemisCollator``: padding and masks of mixed batches, and a forward + backward through the tiny model."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from artemis.data import read
from artemis.data.collator import ArtemisCollator
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.model import ArtemisForConditionalGeneration, build_tiny_model
from artemis.model.processing import IGNORE_INDEX
from artemis.prompts import referring_prompt

TWO_REGIONS = "What are <region> and <region> doing?"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReferringDataset, ArtemisForConditionalGeneration]:
    """Referring, video, image and text samples over four SynthRef videos (64x48, 12 frames)."""
    split = generate_split(
        tmp_path_factory.mktemp("synthref"), 4, seed=5, config=SynthRefConfig(width=64, height=48, num_frames=12)
    ).split_dir
    cv2.imwrite(str(split / "blue.png"), np.full((30, 50, 3), (255, 0, 0), dtype=np.uint8))
    misc = [
        {"id": "img", "image": "blue.png", "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                                             {"from": "gpt", "value": "It is blue."}]},
        {"id": "txt", "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "hi"}]},
    ]  # fmt: skip
    (split / "misc.json").write_text(json.dumps(misc))
    files = [
        ("videoref45k", split / "videoref45k.json"),
        ("llava", split / "llava_stage1.json"),
        ("llava", split / "misc.json"),
    ]
    texts = [s.caption for s in read(*files[0])] + [referring_prompt(TWO_REGIONS, 2)]
    texts += [t["value"] for f in files[1:] for s in read(*f) for t in s.conversations]
    model, processor = build_tiny_model(texts, seed=0)
    return ReferringDataset.from_files(files, processor, model.config), model


@pytest.fixture(scope="module")
def dataset(setup: tuple[ReferringDataset, ArtemisForConditionalGeneration]) -> ReferringDataset:
    return setup[0]


@pytest.fixture(scope="module")
def model(setup: tuple[ReferringDataset, ArtemisForConditionalGeneration]) -> ArtemisForConditionalGeneration:
    return setup[1]


def _mixed(dataset: ReferringDataset) -> list[dict[str, torch.Tensor]]:
    """A referring, a video-only, an image and a text-only item, in that order."""
    kinds = [e.kind for e in dataset.entries]
    return [dataset[kinds.index(kind)] for kind in ("referring", "video", "image", "text")]


def test_mixed_batch_shapes_and_masks(dataset: ReferringDataset, model: ArtemisForConditionalGeneration) -> None:
    config, processor = model.config, dataset.processor
    items = _mixed(dataset)
    batch = ArtemisCollator(processor, config)(items)
    lengths = [len(item["input_ids"]) for item in items]
    B, L, K = 4, max(lengths), config.num_region_frames
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (B, L)
    for row, (item, n) in enumerate(zip(items, lengths, strict=True)):
        assert torch.equal(batch["input_ids"][row, :n], item["input_ids"])  # right padding
        assert torch.equal(batch["labels"][row, :n], item["labels"])
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (L - n)
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, n:] == processor.tokenizer.pad_token_id).all()

    assert batch["pixel_values"].shape == (B, 8, 3, 32, 32)
    assert batch["frame_mask"].sum(1).tolist() == [8, 8, 1, 0]  # the image is a 1-frame video; text has none
    assert (batch["pixel_values"][2, 1:] == 0).all() and (batch["pixel_values"][3] == 0).all()
    assert torch.equal(batch["pixel_values"][0], items[0]["pixel_values"])

    assert batch["region_pixel_values"].shape == (B, K, 3, 32, 32)
    assert batch["region_boxes"].shape == (B, 1, K, 4) and batch["region_visible"].shape == (B, 1, K)
    assert batch["region_times"].shape == (B, K)
    assert torch.equal(batch["region_boxes"][0], items[0]["region_boxes"])
    assert torch.isnan(batch["region_boxes"][1:]).all() and not batch["region_visible"][1:].any()


def _two_region_item(dataset: ReferringDataset) -> dict[str, torch.Tensor]:
    """A referring item asking about two targets (the same track twice, enough for shapes and the forward)."""
    item = dict(dataset[0])
    item["region_boxes"] = item["region_boxes"].repeat(2, 1, 1)  # (2, K, 4)
    item["region_visible"] = item["region_visible"].repeat(2, 1)  # (2, K)
    encoded = dataset.processor.encode_conversation([(referring_prompt(TWO_REGIONS, 2), "they move")])
    item["input_ids"] = torch.tensor(encoded.input_ids)
    item["labels"] = torch.tensor(encoded.labels)
    return item


def test_different_region_counts_pad_with_nan_regions(
    dataset: ReferringDataset, model: ArtemisForConditionalGeneration
) -> None:
    collate = ArtemisCollator(dataset.processor, model.config)
    batch = collate([_two_region_item(dataset), dataset[1]])
    assert batch["region_boxes"].shape[:2] == (2, 2)
    assert torch.isfinite(batch["region_boxes"][0]).all()
    assert torch.isfinite(batch["region_boxes"][1, 0]).all() and torch.isnan(batch["region_boxes"][1, 1]).all()
    assert not batch["region_visible"][1, 1].any()


def test_text_only_batch_has_no_visual_inputs(
    dataset: ReferringDataset, model: ArtemisForConditionalGeneration
) -> None:
    kinds = [e.kind for e in dataset.entries]
    batch = ArtemisCollator(dataset.processor, model.config)([dataset[kinds.index("text")]] * 2)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


def test_forward_and_backward_on_a_collated_mixed_batch(
    dataset: ReferringDataset, model: ArtemisForConditionalGeneration
) -> None:
    model.train()
    model.zero_grad()
    try:
        items = [*_mixed(dataset), _two_region_item(dataset)]
        batch = ArtemisCollator(dataset.processor, model.config)(items)
        output = model(**batch)
        assert torch.isfinite(output.loss)
        output.loss.backward()
    finally:
        model.eval()
    # Gradients reach the projector (video tokens) and the region encoder (region tokens).
    for module in (model.mm_projector, model.region_encoder):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), type(module).__name__
