"""``artemis train`` on SynthRef's pair records (two regions per record) beside the one-region records."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from train_helpers import mixed_referring_config, write_config

from artemis.cli import main


def test_artemis_train_runs_on_pair_records_mixed_with_single_ones(synthref_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (synthref_root / "train" / "videoref45k_pairs.json").is_file()
    path = write_config(
        tmp_path / "pairs.yaml", mixed_referring_config(synthref_root, out, "videoref45k_pairs.json", (1.0, 0.25))
    )
    assert main(["train", "--config", str(path)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 3
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in summary["losses"])
    keys = [json.loads(line)["key"] for line in (out / "samples-rank0.jsonl").read_text().splitlines()]
    kinds = ["pair" if "videoref45k_pairs.json" in key else "single" for key in keys]
    batches = [set(kinds[i : i + 4]) for i in range(0, 12, 4)]  # no workers: items are read batch by batch
    assert any(batch == {"pair", "single"} for batch in batches), batches
    assert (out / "config.json").is_file()
