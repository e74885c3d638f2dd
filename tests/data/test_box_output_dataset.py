"""``BoxOutDataset`` on a generated SynthRef split: SOT/RSOT clips, exact answers, the inference prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artemis.boxes import parse_elysium_frames
from artemis.data import SynthRefConfig, generate_split, read
from artemis.data.box_output_dataset import BoxOutDataset, read_record_frames
from artemis.data.collator import ArtemisCollator
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.processing import IGNORE_INDEX


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    config = SynthRefConfig(width=64, height=48, num_frames=20, min_objects=2, max_objects=2)
    return generate_split(tmp_path_factory.mktemp("boxout-data"), 2, seed=5, split="train", config=config).split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [r["object_description"] for r in json.loads((split / "elysium.json").read_text())]
    return build_tiny_model(texts, seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"])


def test_clips_and_exact_answers(split: Path, tiny) -> None:
    model, processor = tiny
    dataset = BoxOutDataset.from_files([split / "elysium.json"], processor, model.config)
    samples = read("elysium", split / "elysium.json")
    # 20 frames: clips start at 0, 7, 12; SOT where the target shows on the clip's first frame; RSOT always.
    expected = []
    for index, sample in enumerate(samples):
        visible = sample.boxes_array()[1]
        for start in (0, 7, 12):
            positions = tuple(range(start, start + 8))
            if visible[start]:
                expected.append((index, "sot", positions))
            expected.append((index, "rsot", positions))
    assert [(c.record, c.task, c.positions) for c in dataset.clips] == expected

    for number, clip in enumerate(dataset.clips[:4]):
        item = dataset[number]
        sample = samples[clip.record]
        assert item["pixel_values"].shape == (8, 3, 32, 32) and item["frame_mask"].all()
        answer = processor.decode([t for t in item["labels"].tolist() if t != IGNORE_INDEX])
        parsed = parse_elysium_frames(answer, 8)
        square = processor.video_processor.transform_for(64, 48)
        boxes, visible = sample.boxes_array()
        for offset, position in enumerate(clip.positions):
            if visible[position]:
                wanted = np.round(square.boxes_to_model(boxes[position]) * 100) / 100
                np.testing.assert_allclose(parsed[offset], wanted, atol=1e-12)
            else:
                np.testing.assert_array_equal(parsed[offset], [0, 0, 0, 0])  # absent or hidden
        # The prompt is exactly what inference builds for the same clip (the processor's call, as
        # artemis.tasks.box_output uses it), and so are the pixels.
        frames = read_record_frames(sample, clip.positions)
        if clip.task == "sot":
            inference = processor(frames, task="sot", box=boxes[clip.positions[0]])
        else:
            inference = processor(frames, task="rsot", expression=sample.caption)
        prompt = inference["input_ids"][0].tolist()
        assert item["input_ids"].tolist()[: len(prompt)] == prompt
        torch.testing.assert_close(inference["pixel_values"][0], item["pixel_values"], rtol=0, atol=0)
        assert set(item["labels"].tolist()[: len(prompt)]) == {IGNORE_INDEX}
        assert item["labels"].tolist()[-1] == processor.tokenizer.eos_token_id


def test_collator_batches_items_and_the_model_trains_on_them(split: Path, tiny) -> None:
    model, processor = tiny
    dataset = BoxOutDataset.from_files([split / "elysium.json"], processor, model.config, tasks=("sot",))
    assert {c.task for c in dataset.clips} == {"sot"}
    batch = ArtemisCollator(processor, model.config)([dataset[0], dataset[1], dataset[2]])
    assert batch["pixel_values"].shape == (3, 8, 3, 32, 32) and batch["frame_mask"].shape == (3, 8)
    model.train()
    loss = model(**batch).loss
    loss.backward()
    model.zero_grad()
    model.eval()
    assert torch.isfinite(loss)


def test_refusals(split: Path, tiny) -> None:
    model, processor = tiny
    pooled, pooled_processor = build_tiny_model(seed=0)
    samples = read("elysium", split / "elysium.json")
    with pytest.raises(ConfigError, match=r"the model to train was not trained to write boxes"):
        BoxOutDataset(samples, pooled_processor, pooled.config)
    with pytest.raises(ConfigError, match="tasks=\\['reg'\\]"):
        BoxOutDataset(samples, processor, model.config, tasks=("reg",))
    for sample in samples:
        sample.caption = None
    with pytest.raises(ConfigError, match="RSOT a description"):
        BoxOutDataset(samples, processor, model.config, tasks=("rsot",))
