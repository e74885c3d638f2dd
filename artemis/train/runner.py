"""``run_training``: one stage from a :class:`~artemis.train.config.TrainConfig` on the Hugging Face ``Trainer``.

Order of work, so that bad input fails before any compute is spent: validate the config and every path it
names, build the starting model, freeze / quantise / add LoRA, read and check every data record, then
train. A run resumes from the last ``checkpoint-*`` in ``training.output_dir`` unless told otherwise, and
the stage output (see :mod:`artemis.train.stages`) is written when training ends.

Distributed training is the ``Trainer``'s: launch with ``torchrun`` (DDP; gloo on CPU, nccl on GPU) or
set ``training.deepspeed`` to one of ``configs/deepspeed/*.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments, set_seed

from artemis.errors import ConfigError
from artemis.io import write_json_atomic
from artemis.train.config import TrainConfig, check_paths
from artemis.train.setup import build_model, save_base, set_trainable, wrap_lora
from artemis.train.stages import TRAINABLES_FILE, _load_trainables, save_stage, save_trainables, trainable_state

logger = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"

__all__ = ["SUMMARY_FILE", "ArtemisTrainer", "run_training", "training_arguments"]


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def training_arguments(config: TrainConfig) -> TrainingArguments:
    """``TrainingArguments`` from ``training:`` plus the settings artemis' data and model need."""
    values: dict[str, Any] = {
        "report_to": [],
        "remove_unused_columns": False,  # the collator's keys are the model's inputs, not dataset columns
        "label_names": ["labels"],  # peft-wrapped models hide the signature the Trainer infers this from
        "ddp_find_unused_parameters": True,  # samples without regions leave the region encoder unused
        "save_safetensors": True,
    }
    values.update(config.training)
    if not torch.cuda.is_available():
        if values.get("bf16") or values.get("fp16"):
            logger.info("no CUDA device: training in fp32 (bf16/fp16 are for GPUs)")
        values["bf16"] = values["fp16"] = False
        values.pop("tf32", None)  # a CUDA (Ampere) setting
        values.setdefault("dataloader_pin_memory", False)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Accelerate sets up multi-process CPU training (MULTI_CPU, DDP over gloo) only when told
            # it runs on CPU; otherwise every rank would train alone on its share of the data.
            values.setdefault("use_cpu", True)
            values.setdefault("ddp_backend", "gloo")
    values = {k: v for k, v in values.items() if k in TrainingArguments.__dataclass_fields__}
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError, ImportError) as error:
        raise ConfigError(f"training: {error}") from None


class _SampleLog(Dataset):
    """Write which record each item of this rank came from (``samples-rank<r>.jsonl``)."""

    def __init__(self, dataset: Any, path: Path) -> None:
        self.dataset = dataset
        self.path = path

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.dataset[index]
        line = {"index": int(index), "epoch": self.dataset.epoch, "key": self.dataset.entry(index).key}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(line) + "\n")
        return item


class ArtemisTrainer(Trainer):
    """The ``Trainer``, saving only the trained parameters in checkpoints when the LLM is frozen.

    A frozen 7B LLM would otherwise be written in full to every checkpoint (LLaVA's stage-1 trainer
    saves only the projector for the same reason); a checkpoint then holds ``trainables.safetensors``
    and resuming loads it onto the same starting model.
    """

    def __init__(self, *args: Any, save_kind: str = "full", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.save_kind = save_kind

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if self.save_kind != "trainables":
            super()._save(output_dir, state_dict)
            return
        if not self.args.should_save:
            return
        directory = Path(output_dir or self.args.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        save_trainables(self.accelerator.unwrap_model(self.model), directory)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        path = Path(resume_from_checkpoint) / TRAINABLES_FILE
        if self.save_kind == "trainables" and path.exists():
            _load_trainables(self.accelerator.unwrap_model(model or self.model), path)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)


def _datasets(config: TrainConfig, processor: Any, model: Any) -> tuple[Any, Any]:
    from artemis.data.referring_dataset import ReferringDataset

    data = config.data
    model_config = processor_config(model)
    options = {
        "model": model.get_base_model() if hasattr(model, "get_base_model") else model,  # checks a features cache
        "seed": data.seed,
        "bad_records": data.bad_records,
        "tracker": data.tracker,
        "max_region_candidates": data.max_region_candidates,
        "key_frame_jitter": data.key_frame_jitter,
        "max_length": data.max_length,
        "cache_dir": data.cache_dir,
    }

    def build(files: list) -> Any:
        specs = [(f.format, f.path) for f in files]
        return ReferringDataset.from_files(specs, processor, model_config, weights=[f.weight for f in files], **options)

    if data.cache_dir is not None and config.train.vision_tower:
        settings = json.loads((Path(data.cache_dir) / "cache_config.json").read_text())
        if settings.get("features"):
            raise ConfigError(
                f"data.cache_dir {data.cache_dir} holds vision features, which cannot train the vision tower; "
                "set train.vision_tower: false or use a frames cache (artemis data cache without --features)"
            )
    train = build(data.files)
    evaluation = build(data.eval_files) if data.eval_files else None
    if len(train) == 0:
        raise ConfigError("data.files hold no usable record; check the files and data.bad_records")
    return train, evaluation


def _resume_point(output_dir: Path, resume: bool | str) -> str | None:
    if resume is False:
        return None
    if isinstance(resume, str) and resume != "auto":
        if not Path(resume).is_dir():
            raise ConfigError(f"resume checkpoint {resume} does not exist")
        return resume
    return last_complete_checkpoint(output_dir)


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest ``checkpoint-N`` whose ``trainer_state.json`` was written whole.

    A run killed while saving leaves a checkpoint folder with a missing or half-written state file;
    resuming from it would fail, so it is passed over (with a warning) for the one before.
    """
    if not output_dir.is_dir():
        return None
    candidates = sorted(
        (path for path in output_dir.glob("checkpoint-*") if path.is_dir() and path.name[11:].isdigit()),
        key=lambda path: int(path.name[11:]),
        reverse=True,
    )
    for path in candidates:
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError):
            state = None
        if isinstance(state, dict) and "global_step" in state:
            return str(path)
        logger.warning("%s was not saved whole (the run stopped while writing it); resuming from an earlier one", path)
    return None


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the trainable parameters, in name order (equal on every rank after a DDP run)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(trainable_state(model).items()):
        digest.update(name.encode())
        digest.update(tensor.float().numpy().tobytes())
    return digest.hexdigest()


def processor_config(model: Any) -> Any:
    """The ``ArtemisConfig`` of a model, through a peft wrapper if there is one."""
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def save_kind(config: TrainConfig) -> str:
    """What the stage output holds: a LoRA adapter, the full model, or only the trained parameters."""
    return {"lora": "lora", "full": "full"}.get(config.train.llm, "trainables")


def run_training(config: TrainConfig, *, resume: bool | str = "auto") -> Path:
    """Train one stage and write its output to ``training.output_dir``; return that directory.

    Args:
        config: the validated stage config.
        resume: ``"auto"`` continues from the last checkpoint when there is one, ``False`` starts over,
            a path resumes from that checkpoint.
    """
    check_paths(config)
    args = training_arguments(config)
    output_dir = config.output_dir
    started = time.perf_counter()
    set_seed(args.seed)  # new weights (projector, region encoder, a tiny model) are the same on every rank
    saved_start = output_dir / "base"
    checkpoint = _resume_point(output_dir, resume)
    if config.model.base is None and checkpoint and (saved_start / "config.json").exists():
        # Resuming a stage that began from new weights: start from the very same ones.
        from artemis.train.stages import load_stage

        model, processor = load_stage(saved_start)
        base = str(saved_start)
    else:
        model, processor, base = build_model(config)
    if base is None:  # a tiny or composed start exists nowhere else: keep it with the stage
        base = str(saved_start)
        if args.should_save:
            save_base(model, processor, saved_start)
    counts = set_trainable(model, config)
    kind = save_kind(config)
    if kind == "lora":
        model = wrap_lora(model, config)
    train_data, eval_data = _datasets(config, processor, model)
    if config.train.objective == "region_words":
        from artemis.train.region_words import RegionWordsObjective

        # The Trainer optimises the wrapper; the stage saves the model.
        model = RegionWordsObjective(model, config.train.region_words_bins)
    from artemis.data.collator import ArtemisCollator
    from artemis.data.referring_dataset import EpochCallback

    model_config = train_data.config
    dataset: Any = train_data
    if config.data.log_samples:
        output_dir.mkdir(parents=True, exist_ok=True)
        dataset = _SampleLog(train_data, output_dir / f"samples-rank{_rank()}.jsonl")
    trainer = ArtemisTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_data,
        data_collator=ArtemisCollator(processor, model_config),
        callbacks=[EpochCallback(train_data)],
        save_kind=kind,
    )
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    trained = getattr(trained, "artemis_model", trained)  # without a training-only objective head
    if args.world_size > 1:  # each rank records what it ended with, so divergence between ranks shows
        ranks = output_dir / "ranks"
        ranks.mkdir(parents=True, exist_ok=True)
        write_json_atomic(ranks / f"rank{_rank()}.json", {"rank": _rank(), "weights_sha256": weights_digest(trained)})
    if trainer.is_world_process_zero():
        save_stage(trained, processor, output_dir, saved=kind, stage=config.stage, base=base)
        losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
        summary = {
            "stage": config.stage,
            "saved": kind,
            "global_step": trainer.state.global_step,
            "train_loss": result.training_loss,
            "losses": losses,
            "seconds": round(time.perf_counter() - started, 1),
            "world_size": args.world_size,
            "trainable_parameters": counts,
            "resumed_from": checkpoint,
            "config": config.to_dict(),
        }
        write_json_atomic(output_dir / SUMMARY_FILE, summary)
    return output_dir
