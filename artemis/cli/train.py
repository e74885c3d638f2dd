"""``artemis train --config configs/<stage>.yaml [--section.key value ...]`` and ``artemis merge-lora``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train one stage from a YAML config (Hugging Face Trainer; torchrun / DeepSpeed aware)",
        description="Train one stage. Any config key can be overridden: --training.learning_rate 1e-4, "
        "--model.base DIR, --data.files.0.path FILE. A run resumes from the last checkpoint in "
        "training.output_dir unless --no-resume is given.",
    )
    train.add_argument("--config", required=True, type=Path, help="stage config (see configs/)")
    train.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    train.add_argument("--resume-from", help="resume from this checkpoint directory")
    train.add_argument("--check", action="store_true", help="validate the config and its paths, then stop")
    train.set_defaults(func=run_train)

    merge = subparsers.add_parser(
        "merge-lora",
        help="merge a LoRA stage output into its base and write one full model directory",
    )
    merge.add_argument("stage_dir", type=Path, help="a stage output (LoRA, trainables or full)")
    merge.add_argument("out", type=Path, help="directory for the merged model")
    merge.set_defaults(func=run_merge)


def run_train(args: argparse.Namespace, overrides: list[str] | None = None) -> int:
    from artemis.train.config import check_paths, load_config

    config = load_config(args.config, overrides if overrides is not None else args.overrides)
    check_paths(config)
    if args.check:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    from artemis.train.runner import SUMMARY_FILE, run_training

    resume = False if args.no_resume else (args.resume_from or "auto")
    out = run_training(config, resume=resume)
    summary = out / SUMMARY_FILE
    if summary.exists():
        info = json.loads(summary.read_text())
        print(
            f"stage {info['stage']}: {info['global_step']} steps in {info['seconds']} s, "
            f"train loss {info['train_loss']:.4f}; saved {info['saved']} to {out}",
            file=sys.stderr,
        )
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from artemis.train.stages import merge_lora

    out = merge_lora(args.stage_dir, args.out)
    print(f"wrote the merged model to {out}", file=sys.stderr)
    return 0
