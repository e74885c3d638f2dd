"""``artemis train`` on SynthRef's conversations (two turns per record) beside the one-region records."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from train_helpers import TINY_VISION, few_steps, write_config

from artemis.cli import main


def _config(root: Path, out: Path) -> dict:
    train = root / "train"
    single, chats = str(train / "videoref45k.json"), str(train / "videoref45k_chat.json")
    return {
        "stage": "referring",
        "model": {
            "tiny": {
                "seed": 0,
                "vocab_from": [f"videoref45k:{single}", f"videoref45k:{chats}"],
                "vision_config": TINY_VISION,
            }
        },
        "train": {"projector": True, "llm": "full", "region_encoder": True, "vision_tower": False},
        "data": {
            "files": [
                {"format": "videoref45k", "path": single, "weight": 0.25},
                {"format": "videoref45k", "path": chats},
            ],
            "max_length": 320,
            "log_samples": True,
        },
        "training": few_steps(out, 3),
    }


def test_artemis_train_runs_on_conversations_mixed_with_single_turns(synthref_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    chats = synthref_root / "train" / "videoref45k_chat.json"
    assert all(len(r["conversations"]) == 4 for r in json.loads(chats.read_text()))
    path = write_config(tmp_path / "chat.yaml", _config(synthref_root, out))
    assert main(["train", "--config", str(path)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 3
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in summary["losses"])
    keys = [json.loads(line)["key"] for line in (out / "samples-rank0.jsonl").read_text().splitlines()]
    assert any("videoref45k_chat.json" in key for key in keys[:12])
