"""The DeepSpeed configs run: 2 CPU processes (DeepSpeed's CPU accelerator, gloo) under ZeRO-2, ZeRO-2 with
optimizer offload and ZeRO-3, each launched by scripts/train/_launch.sh as on GPUs. The ZeRO-3 run's
saved stage output (weights gathered from both ranks) reloads to the logits of the ZeRO-2 run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import stage_config, write_config

from artemis.errors import ConfigError
from artemis.train import load_config, load_stage
from artemis.train.runner import training_arguments

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TRAINS = {"projector": True, "llm": "full", "region_encoder": False, "vision_tower": False}


def _run(root: Path, out: Path, deepspeed: str) -> Path:
    raw = stage_config(root, out, "pretrain", train=TRAINS, training__max_steps=3, training__save_steps=2)
    raw["training"].update(per_device_train_batch_size=2, deepspeed=str(REPO / "configs/deepspeed" / deepspeed))
    config = write_config(out / "stage.yaml", raw)
    env = {**os.environ, "NUM_GPUS": "2", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = ["bash", "-c", '. scripts/train/_launch.sh && launch_stage "$@"', "launch", str(config)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    (out / "launch.log").write_text(result.stdout + result.stderr)
    errors = [line for line in result.stderr.splitlines() if "Error" in line and "Warning" not in line]
    assert result.returncode == 0, "\n".join(errors[-20:]) or result.stderr[-3000:]
    return out / "stage1"


@pytest.fixture(scope="module")
def runs(synthref_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    names = ("zero2.json", "zero2_offload.json", "zero3.json")
    return {name: _run(synthref_root, tmp_path_factory.mktemp(name[:-5]), name) for name in names}


def _summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


@pytest.mark.parametrize("name", ["zero2.json", "zero2_offload.json", "zero3.json"])
def test_deepspeed_runs_on_two_processes(runs: dict[str, Path], name: str) -> None:
    summary = _summary(runs[name])
    assert summary["deepspeed_zero_stage"] == int(name[4]) and summary["world_size"] == 2
    assert summary["global_step"] == 3 and all(torch.isfinite(torch.tensor(loss)) for _, loss in summary["losses"])
    assert (runs[name] / "checkpoint-2").is_dir()  # a checkpoint during the run


def test_offload_trains_as_without_it(runs: dict[str, Path]) -> None:
    # DeepSpeed's CPU AdamW (the offload JSON's optimizer section) and the torch AdamW take the same steps.
    plain, offload = (_summary(runs[name])["losses"] for name in ("zero2.json", "zero2_offload.json"))
    assert torch.allclose(torch.tensor(plain), torch.tensor(offload), atol=1e-4)


def test_zero3_saves_whole_weights_that_reload(runs: dict[str, Path]) -> None:
    zero3, _ = load_stage(runs["zero3.json"])
    zero2, _ = load_stage(runs["zero2.json"])
    start, _ = load_stage(runs["zero3.json"] / "base")
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        logits = [model.eval()(input_ids=ids).logits for model in (zero3, zero2, start)]
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=1e-5)  # the same training, gathered
    assert (logits[0] - logits[2]).abs().max() > 1e-3  # and it did train
    # The checkpoint written during the run holds whole weights too (the Trainer gathers them for it).
    saved = load_file(str(runs["zero3.json"] / "checkpoint-2" / "model.safetensors"))
    own = start.state_dict()
    assert set(saved) == set(own) and all(saved[name].shape == own[name].shape for name in own)
    name = "mm_projector.linear_1.weight"
    assert not torch.equal(saved[name], own[name]) and not torch.equal(saved[name], zero3.state_dict()[name])


def test_deepspeed_without_torchrun_is_refused(synthref_root: Path, tmp_path: Path, monkeypatch) -> None:
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    raw = stage_config(synthref_root, tmp_path, "pretrain", train=TRAINS)
    raw["training"]["deepspeed"] = str(REPO / "configs/deepspeed/zero2.json")
    config = load_config(write_config(tmp_path / "stage.yaml", raw))
    with pytest.raises(ConfigError, match="torchrun"):
        training_arguments(config)
