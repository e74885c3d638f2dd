"""QLoRA on CPU: the LLM loads in 4-bit NF4 (bitsandbytes), LoRA trains on top, the rest stays fp32."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import stage_config, write_config

from artemis.model.tiny import build_tiny_model
from artemis.train import load_config, load_stage, run_training
from artemis.train.runner import SUMMARY_FILE
from artemis.train.setup import build_model

bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (the train extra)")


def test_qlora_trains_on_cpu(synthref_root: Path, tmp_path: Path) -> None:
    texts = [r["caption"] for r in json.loads((synthref_root / "train" / "videoref45k.json").read_text())]
    model, processor = build_tiny_model(texts, seed=1, box_embedding="relative")
    model.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    raw = stage_config(
        synthref_root,
        tmp_path,
        "referring",
        model={"base": str(tmp_path / "base")},
        quantization={"bits": 4},
        training__max_steps=3,
    )
    config = load_config(write_config(tmp_path / "q.yaml", raw))
    quantised, _, _ = build_model(config)
    layers = {type(m).__name__ for name, m in quantised.named_modules() if name.startswith("language_model.model")}
    assert "Linear4bit" in layers
    assert not any(type(m).__name__ == "Linear4bit" for m in quantised.region_encoder.modules())
    out = run_training(config)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["saved"] == "lora" and summary["global_step"] == 3
    assert all(loss == loss and loss < 100 for _, loss in summary["losses"])  # finite
    merged, _ = load_stage(out)  # the adapter applies to the full-precision base
    assert not any(type(m).__name__ == "Linear4bit" for m in merged.modules())
