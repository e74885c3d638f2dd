"""The region_words objective and train.freeze: what trains, what is saved, and the loss they optimise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import stage_config, write_config

from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.train import load_config, load_stage, run_training
from artemis.train.region_words import RegionWordsObjective
from artemis.train.runner import SUMMARY_FILE


def test_targets_mark_each_answer_word_once() -> None:
    model, processor = build_tiny_model(["the red circle moves left"], seed=0)
    objective = RegionWordsObjective(model)
    ids = processor.tokenizer.convert_tokens_to_ids(["red", "circle", "left", "the"])
    red, circle, left, the = ids
    labels = torch.tensor(
        [
            [-100, -100, red, circle, red, -100],  # "red" twice: still one target
            [-100, left, -100, -100, -100, -100],
        ]
    )
    targets = objective.targets(labels)
    assert targets.shape == (2, model.config.text_config.vocab_size)
    assert targets[0].nonzero().flatten().tolist() == sorted([red, circle])
    assert targets[1].nonzero().flatten().tolist() == [left]
    assert targets[:, the].sum() == 0  # in the vocabulary, outside the answers


def test_position_bins_tell_word_order_apart() -> None:
    words = "from the top left to the bottom right"
    model, processor = build_tiny_model([words], seed=0)
    vocab = model.config.text_config.vocab_size

    def labels(text: str) -> torch.Tensor:
        ids = processor.tokenizer.convert_tokens_to_ids(text.split())
        return torch.tensor([[-100, -100, *ids]])

    forward, backward = labels(words), labels("from the bottom right to the top left")
    one, two = RegionWordsObjective(model), RegionWordsObjective(model, bins=2)
    assert torch.equal(one.targets(forward), one.targets(backward))  # the same bag of words
    assert not torch.equal(two.targets(forward), two.targets(backward))
    # Eight answer tokens in two parts: the first four in part 0, the last four in part 1.
    targets = two.targets(forward)[0]
    assert targets.shape == (2 * vocab,)
    first, second = words.split()[:4], words.split()[4:]
    assert targets[:vocab].nonzero().flatten().tolist() == sorted(processor.tokenizer.convert_tokens_to_ids(first))
    assert targets[vocab:].nonzero().flatten().tolist() == sorted(
        set(processor.tokenizer.convert_tokens_to_ids(second))
    )
    with pytest.raises(ValueError, match="bins=0"):
        RegionWordsObjective(model, bins=0)


def _region_words_config(root: Path, out: Path, bins: int = 1, **changes) -> Path:
    raw = stage_config(root, out, "pretrain", **changes)
    raw["model"]["tiny"]["region_content_norm"] = "batch"
    raw["train"] = {
        "projector": False,
        "llm": "frozen",
        "region_encoder": True,
        "vision_tower": False,
        "objective": "region_words",
        "region_words_bins": bins,
    }
    raw["data"]["files"] = [{"format": "videoref45k", "path": str(root / "train" / "videoref45k.json")}]
    raw["training"].update({"max_steps": 16, "save_steps": 8, "per_device_train_batch_size": 8})
    out.mkdir(parents=True, exist_ok=True)
    return write_config(out / "region_words.yaml", raw)


@pytest.mark.slow
@pytest.mark.parametrize("bins", [1, 2])
def test_region_words_stage_trains_and_saves_only_the_region_encoder(
    synthref_root: Path, tmp_path: Path, bins: int
) -> None:
    stage = run_training(load_config(_region_words_config(synthref_root, tmp_path, bins)))
    summary = json.loads((stage / SUMMARY_FILE).read_text())
    losses = [loss for _, loss in summary["losses"]]
    assert len(losses) == 16 and all(0 < loss < 1 for loss in losses)
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert summary["trainable_parameters"]["llm"] == 0

    saved = load_file(str(stage / "trainables.safetensors"))
    assert {name.split(".")[0] for name in saved} == {"region_encoder"}  # no objective head, no LLM
    # The BatchNorm's running statistics belong to the trained region encoder and are kept with it.
    assert "region_encoder.content_norm.running_mean" in saved
    assert not torch.equal(saved["region_encoder.content_norm.running_mean"], torch.zeros(32))

    trained, _ = load_stage(stage)
    start, _ = load_stage(stage / "base")
    for name, value in start.state_dict().items():
        if name.startswith("region_encoder."):
            assert torch.equal(trained.state_dict()[name], saved[name]), name
        else:
            assert torch.equal(trained.state_dict()[name], value), name
    assert not torch.equal(trained.region_encoder.flatten_linear.weight, start.region_encoder.flatten_linear.weight)


@pytest.mark.slow
def test_freeze_keeps_the_named_parameters(synthref_root: Path, tmp_path: Path) -> None:
    start = run_training(load_config(_region_words_config(synthref_root, tmp_path / "words")))
    out = tmp_path / "referring"
    out.mkdir()
    raw = stage_config(synthref_root, out, "referring", model={"base": str(start)})
    frozen = ["region_encoder.fuse", "region_encoder.flatten_linear"]
    raw["train"] = {"projector": True, "llm": "full", "region_encoder": True, "freeze": frozen}
    stage = run_training(load_config(write_config(out / "c.yaml", raw)))
    before, _ = load_stage(start)
    after, _ = load_stage(stage)
    for name, value in before.named_parameters():
        if name.startswith(("region_encoder.fuse.", "region_encoder.flatten_linear.")):
            assert torch.equal(dict(after.named_parameters())[name], value), name
    assert not torch.equal(after.region_encoder.out_proj.weight, before.region_encoder.out_proj.weight)
    assert not torch.equal(after.region_encoder.level_convs[0].weight, before.region_encoder.level_convs[0].weight)


def test_freeze_prefix_that_matches_nothing_names_the_closest(synthref_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    raw = stage_config(synthref_root, out, "pretrain")
    raw["train"]["freeze"] = ["region_encoder.flaten_linear"]
    with pytest.raises(ConfigError, match=r"'region_encoder\.flaten_linear' matches no parameter.*flatten_linear"):
        run_training(load_config(write_config(out / "c.yaml", raw)))
    assert not (out / "stage1" / SUMMARY_FILE).exists()


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"objective": "words"}, "train.objective='words'"),
        ({"objective": "region_words", "region_encoder": False}, "set train.region_encoder: true"),
        ({"objective": "region_words", "region_encoder": True, "llm": "lora"}, "set train.llm: frozen"),
        ({"objective": "region_words", "region_encoder": True, "projector": True}, "train.projector: false"),
        ({"freeze": "region_encoder"}, "expected a list of parameter-name prefixes"),
        ({"region_words_bins": 0}, "train.region_words_bins=0"),
        ({"region_words_bins": 2}, "applies to train.objective: region_words only"),
    ],
)
def test_inconsistent_objective_settings(train: dict, message: str, synthref_root: Path, tmp_path: Path) -> None:
    raw = stage_config(synthref_root, tmp_path, "pretrain")
    raw["train"].update(train)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(write_config(tmp_path / "c.yaml", raw))
