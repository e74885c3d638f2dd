"""Every config in configs/ validates; bad keys, paths and starting points fail before any compute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from train_helpers import stage_config, write_config

from artemis.errors import CheckpointError, ConfigError
from artemis.train.config import apply_overrides, check_paths, load_config
from artemis.train.stages import load_stage

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
ENV = ("ARTEMIS_CLIP_DIR", "ARTEMIS_LLM_DIR", "ARTEMIS_DATA", "ARTEMIS_OUT", "SYNTHREF", "OUT")


def test_presets_exist() -> None:
    names = {path.relative_to(REPO / "configs").as_posix() for path in CONFIGS}
    assert {"stage1_pretrain.yaml", "stage2_finetune.yaml", "stage3_referring.yaml"} <= names
    assert {
        f"synthref_tiny/stage{i}_{s}.yaml" for i, s in ((1, "pretrain"), (2, "finetune"), (3, "referring"))
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_every_config_validates(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.chdir(REPO)
    config = load_config(path)
    assert config.output_dir.is_relative_to(tmp_path)
    assert all(f.path.startswith(str(tmp_path)) for f in config.data.files)
    deepspeed = config.training.get("deepspeed")
    if deepspeed is not None:  # the DeepSpeed file it names ships with the repo
        assert (REPO / deepspeed).is_file()


def test_published_stage_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.setenv(name, str(tmp_path))
    stage1 = load_config(REPO / "configs/stage1_pretrain.yaml")
    stage2 = load_config(REPO / "configs/stage2_finetune.yaml")
    stage3 = load_config(REPO / "configs/stage3_referring.yaml")
    assert (stage1.train.llm, stage1.train.projector, stage1.training["learning_rate"]) == ("frozen", True, 1e-3)
    assert (stage2.train.llm, stage2.training["learning_rate"]) == ("full", 2e-5)
    assert (stage3.train.llm, stage3.train.region_encoder, stage3.training["learning_rate"]) == ("lora", True, 4e-5)
    assert (stage3.lora.r, stage3.lora.alpha, stage3.lora.dropout) == (16, 16, 0.05)
    # The original's stage 3 schedule is `constant`: no warm-up (its --warmup_ratio is ignored by it).
    assert stage3.training["num_train_epochs"] == 3 and stage3.training["lr_scheduler_type"] == "constant"
    assert "warmup_steps" not in stage3.training and "warmup_ratio" not in stage3.training
    # The original never clips gradients, and groups stages 2-3 batches by modality and length.
    assert all(stage.training["max_grad_norm"] == 0 for stage in (stage1, stage2, stage3))
    assert not stage1.data.group_by_modality_length
    assert stage2.data.group_by_modality_length and stage3.data.group_by_modality_length


@pytest.mark.parametrize("path", sorted((REPO / "configs/deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_configs(path: Path) -> None:
    config = json.loads(path.read_text())
    zero = config["zero_optimization"]
    assert zero["stage"] == int(path.stem[4])
    offload = "offload" in path.stem
    assert ("offload_optimizer" in zero) == offload
    assert ("offload_param" in zero) == (offload and zero["stage"] == 3)
    # "auto" values are filled by the Trainer from TrainingArguments, so the two never disagree.
    assert config["train_micro_batch_size_per_gpu"] == "auto" and config["gradient_accumulation_steps"] == "auto"


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("training.learnig_rate", "learning_rate"),
        ("train.projecter", "projector"),
        ("lora.alhpa", "alpha"),
        ("data.max_lenght", "max_length"),
        ("quantisation", "quantization"),
    ],
)
def test_unknown_key_names_the_closest(key: str, suggestion: str, synthref_root: Path, tmp_path: Path) -> None:
    raw = stage_config(synthref_root, tmp_path, "pretrain")
    apply_overrides(raw, [f"--{key}", "1"])
    path = write_config(tmp_path / "bad.yaml", raw)
    with pytest.raises(ConfigError, match=rf"unknown config key '{key}'.*did you mean '{suggestion}'"):
        load_config(path)


def test_overrides(synthref_root: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", stage_config(synthref_root, tmp_path, "pretrain"))
    other = str(synthref_root / "train" / "llava_stage2.json")
    config = load_config(
        path, ["--training.learning_rate", "1e-4", f"--data.files.0.path={other}", "--train.llm", "lora"]
    )
    assert config.training["learning_rate"] == 1e-4
    assert config.data.files[0].path == other
    assert config.train.llm == "lora"
    with pytest.raises(ConfigError, match="has no value"):
        load_config(path, ["--training.learning_rate"])
    with pytest.raises(ConfigError, match="not an index"):
        load_config(path, ["--data.files.3.path", "x"])


def test_overrides_of_mappings_and_lists(synthref_root: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", stage_config(synthref_root, tmp_path, "pretrain"))
    other = str(synthref_root / "train" / "llava_stage2.json")
    config = load_config(
        path,
        [
            *("--model.tiny.seed", "5"),  # one key of a free-form mapping; the others stay
            *("--data.files", f"[{{format: llava, path: {other}, weight: 2}}]"),  # a whole list is replaced
            *("--train.freeze", "[region_encoder.fuse]"),
        ],
    )
    assert config.model.tiny["seed"] == 5 and config.model.tiny["box_embedding"] == "relative"
    assert [(f.format, f.path, f.weight) for f in config.data.files] == [("llava", other, 2.0)]
    assert config.train.freeze == ["region_encoder.fuse"]
    with pytest.raises(ConfigError, match=r"an entry of data\.files has no 'path'"):
        load_config(path, ["--data.files", "[{format: llava}]"])  # not filled in from the YAML's entry


def test_overrides_nested_inside_a_mapping(synthref_root: Path, tmp_path: Path) -> None:
    """A key two levels inside a free-form mapping is read as YAML and merged into the YAML's mapping."""
    raw = stage_config(synthref_root, tmp_path, "pretrain")
    raw["model"]["tiny"]["text_config"] = {"hidden_size": 48, "intermediate_size": 96}
    path = write_config(tmp_path / "c.yaml", raw)
    config = load_config(
        path,
        [
            *("--model.tiny.text_config.num_hidden_layers", "3"),
            *("--model.tiny.vision_config.image_size=64",),
            *("--training.max_steps", "7"),
        ],
    )
    text = config.model.tiny["text_config"]
    assert text == {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 3}
    assert isinstance(text["num_hidden_layers"], int)
    assert config.model.tiny["vision_config"] == {**raw["model"]["tiny"]["vision_config"], "image_size": 64}
    assert config.model.tiny["seed"] == raw["model"]["tiny"]["seed"]
    assert config.training["max_steps"] == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--lora.r", "x"], "lora.r=x: expected int; fix it in config .* or pass --lora.r VALUE"),
        (["--data.max_length", "long"], "data.max_length=long: expected int or null"),
        (["--train.projector", "maybe"], "train.projector=maybe: expected bool"),
        (["--data.files.0.pathh", "x"], r"unknown config key 'data\.files\[\]\.pathh'; did you mean 'path'\?"),
        (["--train.projecter", "true"], r"unknown config key 'train\.projecter'; did you mean 'projector'\?"),
        (["--train", "3"], "config section 'train' must be a mapping"),
        (["nonsense"], "expected an override like --section.key VALUE"),
        (["--data.box_history_noise", "30"], r"data\.box_history_noise=30: .* whole number from 0 \(exact\) to 20"),
        (["--data.box_history_noise", "-1"], r"data\.box_history_noise=-1: .* whole number from 0 \(exact\) to 20"),
        (["--data.sot_box_shift", "2"], r"data\.sot_box_shift=2\.0: .* its size kept, .* from 0 \(no move\) to 1"),
        (["--train.box_label_sigma", "-0.5"], r"train\.box_label_sigma=-0\.5: expected a number >= 0"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(
    override: list[str], message: str, synthref_root: Path, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "c.yaml", stage_config(synthref_root, tmp_path, "pretrain"))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path, override)
    assert "\n" not in str(error.value)


def test_empty_section_takes_the_defaults(synthref_root: Path, tmp_path: Path) -> None:
    raw = stage_config(synthref_root, tmp_path, "pretrain", quantization=None, lora=None)
    config = load_config(write_config(tmp_path / "c.yaml", raw))
    assert config.quantization.bits is None and config.lora.r == 16
    raw.pop("stage")
    with pytest.raises(ConfigError, match="needs a 'stage'"):
        load_config(write_config(tmp_path / "c.yaml", raw))


def test_bad_value_fails_in_the_cli(synthref_root: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", stage_config(synthref_root, tmp_path, "pretrain"))
    result = subprocess.run(
        [sys.executable, "-m", "artemis.cli", "train", "--config", str(path), "--check", "--lora.r", "x"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "lora.r=x: expected int" in result.stderr


def test_unset_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARTEMIS_OUT", raising=False)
    for name in ("ARTEMIS_CLIP_DIR", "ARTEMIS_LLM_DIR", "ARTEMIS_DATA"):
        monkeypatch.setenv(name, str(tmp_path))
    with pytest.raises(ConfigError, match="environment variable that is not set"):
        load_config(REPO / "configs/stage1_pretrain.yaml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train__llm": "half"}, "train.llm='half'"),
        ({"quantization": {"bits": 3}}, "quantization.bits=3"),
        ({"data__key_frame_jitter": 1.5}, "data.key_frame_jitter=1.5: it is a probability"),
        ({"train": {"projector": False, "llm": "frozen"}}, "nothing trains"),
        ({"model": {"base": "x", "tiny": {}}}, "exactly one of model.base"),
        ({"training": {"learning_rate": 1.0}}, "training.output_dir is required"),
    ],
)
def test_inconsistent_configs(change: dict, message: str, synthref_root: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", stage_config(synthref_root, tmp_path, "pretrain", **change))
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(path)


def test_missing_data_path_fails_in_the_cli(synthref_root: Path, tmp_path: Path) -> None:
    raw = stage_config(synthref_root, tmp_path, "pretrain")
    raw["data"]["files"][0]["path"] = str(tmp_path / "nowhere.json")
    path = write_config(tmp_path / "c.yaml", raw)
    result = subprocess.run(
        [sys.executable, "-m", "artemis.cli", "train", "--config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "data.files.0.path" in result.stderr and "nowhere.json does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "stage1").exists()  # nothing was built or written


def test_missing_previous_stage(synthref_root: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", stage_config(synthref_root, tmp_path, "finetune"))
    with pytest.raises(ConfigError, match=r"model\.base: .*stage1 does not exist"):
        check_paths(load_config(path))


def test_checkpoint_of_another_architecture(tmp_path: Path) -> None:
    from train_helpers import TINY_VISION
    from transformers import CLIPVisionConfig, CLIPVisionModel

    clip = CLIPVisionModel(CLIPVisionConfig(**{k: v for k, v in TINY_VISION.items() if k != "model_type"}))
    clip.save_pretrained(tmp_path / "clip")
    with pytest.raises(CheckpointError, match="holds a 'clip_vision_model' model, not an artemis one"):
        load_stage(tmp_path / "clip")


def test_damaged_stage_output(tmp_path: Path) -> None:
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "artemis_stage.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_stage(tmp_path / "stage")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("stage: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
