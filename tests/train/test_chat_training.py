"""``artemis train`` on SynthRef's conversations (two turns per record) beside the one-region records."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from train_helpers import mixed_referring_config, write_config

from artemis.cli import main


def test_artemis_train_runs_on_conversations_mixed_with_single_turns(synthref_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    chats = synthref_root / "train" / "videoref45k_chat.json"
    assert all(len(r["conversations"]) == 4 for r in json.loads(chats.read_text()))
    path = write_config(
        tmp_path / "chat.yaml", mixed_referring_config(synthref_root, out, "videoref45k_chat.json", (0.25, 1.0))
    )
    assert main(["train", "--config", str(path)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 3
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in summary["losses"])
    keys = [json.loads(line)["key"] for line in (out / "samples-rank0.jsonl").read_text().splitlines()]
    assert any("videoref45k_chat.json" in key for key in keys[:12])
