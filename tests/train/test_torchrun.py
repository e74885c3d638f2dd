"""A 2-process torchrun (DDP over gloo on CPU): ranks end with identical weights and split the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import stage_config, write_config

pytestmark = pytest.mark.slow


def test_two_process_torchrun(synthref_root: Path, tmp_path: Path) -> None:
    raw = stage_config(
        synthref_root,
        tmp_path,
        "pretrain",
        train={"projector": True, "llm": "full", "region_encoder": False, "vision_tower": True},
        training__max_steps=3,
        training__per_device_train_batch_size=2,
        training__save_steps=100,
    )
    raw["data"]["log_samples"] = True
    config = write_config(tmp_path / "ddp.yaml", raw)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "artemis.cli", "train", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "stage1"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 3

    digests = [json.loads((out / "ranks" / f"rank{r}.json").read_text())["weights_sha256"] for r in (0, 1)]
    assert digests[0] == digests[1]

    seen = [[json.loads(line) for line in (out / f"samples-rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [len(s) for s in seen] == [6, 6]  # 3 steps x 2 samples on each rank
    keys = [{(s["epoch"], s["index"]) for s in rank} for rank in seen]
    assert not keys[0] & keys[1]  # no sample trained on both ranks
