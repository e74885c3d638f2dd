"""``model.config`` on a ``model.base``: a later stage adds modules (a relation token, a mask embedding) to a
trained model, keeps every trained weight, and its output loads on its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_helpers import few_steps, mixed_referring_config, write_config

from artemis.cli import main
from artemis.errors import ConfigError
from artemis.train.config import load_config
from artemis.train.setup import build_model
from artemis.train.stages import load_stage


@pytest.fixture(scope="module")
def trained(synthref_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-step referring stage of a tiny model with a key mask and a geometry track token."""
    root = tmp_path_factory.mktemp("extend")
    config = mixed_referring_config(synthref_root, root / "first", "videoref45k_pairs.json", (1.0, 1.0))
    config["model"]["tiny"] |= {"region_key_mask": True, "region_track_token": True}
    assert main(["train", "--config", str(write_config(root / "first.yaml", config))]) == 0
    return root / "first"


def _extending(synthref_root: Path, base: Path, out: Path, changes: dict) -> dict:
    train = synthref_root / "train"
    return {
        "stage": "referring",
        "model": {"base": str(base), "config": changes},
        "train": {"projector": False, "llm": "frozen", "region_encoder": True, "vision_tower": False},
        "data": {
            "files": [
                {"format": "videoref45k", "path": str(train / "videoref45k.json")},
                {"format": "videoref45k", "path": str(train / "videoref45k_pairs.json")},
            ],
            "max_length": 320,
            "mask_prompts": 1.0,
        },
        "training": few_steps(out, 2),
    }


def test_a_stage_adds_modules_and_keeps_every_trained_weight(
    synthref_root: Path, trained: Path, tmp_path: Path
) -> None:
    changes = {"region_track_token": "relation", "region_mask_mode": "add"}
    path = write_config(tmp_path / "extend.yaml", _extending(synthref_root, trained, tmp_path / "second", changes))
    assert main(["train", "--config", str(path)]) == 0

    before, _ = load_stage(trained)
    start, _ = load_stage(tmp_path / "second" / "base")  # the extended start, saved with the stage
    after, processor = load_stage(tmp_path / "second")
    assert after.config.region_track_token == "relation" and after.config.region_mask_mode == "add"
    assert processor.num_region_tokens == after.config.num_region_tokens
    old = before.state_dict()
    new_names = sorted({name.split(".")[1] for name in start.state_dict() if name not in old})
    assert new_names == ["mask_embedding", "relation_embedding"]
    for name, tensor in old.items():
        assert torch.equal(start.state_dict()[name], tensor), name
    # The new modules trained in the second stage (the mask embedding starts at zero), and the frozen
    # language model did not move.
    trained_mask = after.region_encoder.mask_embedding.out_weight
    assert trained_mask.abs().sum() > 0
    assert torch.equal(start.region_encoder.mask_embedding.out_weight, torch.zeros_like(trained_mask))
    for name, tensor in before.language_model.state_dict().items():
        assert torch.equal(after.language_model.state_dict()[name], tensor), name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"region_hidden_size": 48}, "reshape"),
        ({"region_track_token": False}, "drop trained weights"),
        ({"region_mask_mod": "add"}, "region_mask_mod"),
    ],
)
def test_changes_that_would_lose_training_are_refused(
    synthref_root: Path, trained: Path, tmp_path: Path, changes: dict, message: str
) -> None:
    path = write_config(tmp_path / "bad.yaml", _extending(synthref_root, trained, tmp_path / "out", changes))
    with pytest.raises(ConfigError, match=message):
        build_model(load_config(path))


def test_an_added_track_token_is_counted_by_the_processor_and_the_prompt(tiny_model_dir: Path) -> None:
    from artemis.model.loading import extend_model

    model, processor = load_stage(tiny_model_dir)
    assert not model.config.region_track_token
    extended, new_processor = extend_model(model, processor, {"region_track_token": True})
    assert extended.region_encoder.track_embedding is not None
    assert new_processor.num_region_tokens == processor.num_region_tokens + 1 == extended.config.num_region_tokens
    assert model.config.region_track_token is False  # the trained model is left as it was
    old = model.state_dict()
    assert all(torch.equal(extended.state_dict()[name], tensor) for name, tensor in old.items())


def test_modules_are_not_added_to_a_model_quantised_while_loading(
    synthref_root: Path, trained: Path, tmp_path: Path
) -> None:
    config = _extending(synthref_root, trained, tmp_path / "out", {"region_mask_mode": "add"})
    config["train"]["llm"] = "lora"
    config["quantization"] = {"bits": 4}
    with pytest.raises(ConfigError, match="unquantised model only"):
        build_model(load_config(write_config(tmp_path / "q.yaml", config)))
