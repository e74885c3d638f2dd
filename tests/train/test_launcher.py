"""scripts/train/_launch.sh: the one launch of every stage, at world size 1 and 2 (real torchrun processes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from train_helpers import stage_config, write_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _launch(config: Path, env: dict[str, str], *overrides: str) -> subprocess.CompletedProcess:
    script = '. scripts/train/_launch.sh && launch_stage "$@"'
    command = ["bash", "-c", script, "launch", str(config), *overrides]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.parametrize("processes", [1, 2])
def test_launch_stage_trains_and_checkpoints(synthref_root: Path, tmp_path: Path, processes: int) -> None:
    raw = stage_config(synthref_root, tmp_path, "pretrain", training__max_steps=3, training__save_steps=2)
    raw["training"]["per_device_train_batch_size"] = 2
    config = write_config(tmp_path / "stage.yaml", raw)
    env = {**os.environ, "NUM_GPUS": str(processes), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = _launch(config, env, "--training.logging_steps", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "stage1"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == processes and summary["global_step"] == 3
    assert (out / "checkpoint-2" / "trainables.safetensors").is_file()  # saved during the run
    assert (out / "trainables.safetensors").is_file()
    assert not (out / "ranks").exists()  # no per-rank weight digest unless data.log_samples asks for it


def test_several_nodes_need_a_rendezvous(tmp_path: Path) -> None:
    env = {**os.environ, "NUM_GPUS": "1", "NNODES": "2"}
    env.pop("NODE_RANK", None)
    env.pop("MASTER_ADDR", None)
    result = _launch(tmp_path / "never-read.yaml", env)
    assert result.returncode == 2 and "set NODE_RANK first" in result.stderr
