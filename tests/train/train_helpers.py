"""Tiny stage configs on a SynthRef split, shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# A tiny model small enough for a CPU test: 32 px CLIP, the test-sized Llama.
TINY_VISION = {
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 4,
    "projection_dim": 32,
}


def stage_config(root: Path, out: Path, stage: str, **changes: Any) -> dict[str, Any]:
    """A tiny-recipe stage config (``pretrain``, ``finetune`` or ``referring``) as a dict."""
    train_dir = root / "train"
    model: dict[str, Any]
    if stage == "pretrain":
        model = {
            "tiny": {
                "seed": 0,
                "vocab_from": [
                    f"llava:{train_dir / 'llava_stage1.json'}",
                    f"videoref45k:{train_dir / 'videoref45k.json'}",
                ],
                "box_embedding": "relative",
                "vision_config": TINY_VISION,
            }
        }
        trains = {"projector": True, "llm": "frozen", "region_encoder": False, "vision_tower": True}
        files = [{"format": "llava", "path": str(train_dir / "llava_stage1.json")}]
    elif stage == "finetune":
        model = {"base": str(out / "stage1")}
        trains = {"projector": True, "llm": "full", "region_encoder": False, "vision_tower": False}
        files = [{"format": "llava", "path": str(train_dir / "llava_stage1.json")}]
    else:
        model = {"base": str(out / "stage2")}
        trains = {"projector": True, "llm": "lora", "region_encoder": True, "vision_tower": False}
        files = [{"format": "videoref45k", "path": str(train_dir / "videoref45k.json")}]
    config: dict[str, Any] = {
        "stage": stage,
        "model": model,
        "train": trains,
        "data": {"files": files, "max_length": 256},
        "training": few_steps(out / {"pretrain": "stage1", "finetune": "stage2"}.get(stage, "stage3"), 4, save_steps=2),
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            config[section][name] = value
        else:
            config[section] = value
    return config


def few_steps(out: Path, steps: int, *, save_steps: int = 100) -> dict[str, Any]:
    """The ``training`` section of a stage that runs ``steps`` steps of batch 4 into ``out``."""
    return {
        "output_dir": str(out),
        "max_steps": steps,
        "per_device_train_batch_size": 4,
        "learning_rate": 2e-3,
        "logging_steps": 1,
        "save_steps": save_steps,
        "seed": 0,
        "disable_tqdm": True,
    }


def mixed_referring_config(root: Path, out: Path, second: str, weights: tuple[float, float]) -> dict[str, Any]:
    """A 3-step referring stage of a tiny model on a SynthRef split's one-region records and its file
    ``second`` (pairs, chats), with those file weights; the vocabulary covers both, each sample logged."""
    train = root / "train"
    first, other = str(train / "videoref45k.json"), str(train / second)
    return {
        "stage": "referring",
        "model": {
            "tiny": {
                "seed": 0,
                "vocab_from": [f"videoref45k:{first}", f"videoref45k:{other}"],
                "vision_config": TINY_VISION,
            }
        },
        "train": {"projector": True, "llm": "full", "region_encoder": True, "vision_tower": False},
        "data": {
            "files": [
                {"format": "videoref45k", "path": first, "weight": weights[0]},
                {"format": "videoref45k", "path": other, "weight": weights[1]},
            ],
            "max_length": 320,
            "log_samples": True,
        },
        "training": few_steps(out, 3),
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
