"""``run_training``: one stage from a :class:`~artemis.train.config.TrainConfig` on the Hugging Face ``Trainer``.

Order of work, so that bad input fails before any compute is spent: validate the config and every path it
names, build the starting model, freeze / quantise / add LoRA, read and check every data record, then
train. A run resumes from the last ``checkpoint-*`` in ``training.output_dir`` unless told otherwise, and
the stage output (see :mod:`artemis.train.stages`) is written when training ends.

Distributed training is the ``Trainer``'s: launch with ``torchrun`` (DDP; gloo on CPU, nccl on GPU), and
set ``training.deepspeed`` to one of ``configs/deepspeed/*.json`` for ZeRO. Under ZeRO-3 the weights are
partitioned across ranks, so every save (checkpoints and the stage output) gathers them first the
Trainer's way (``accelerator.get_state_dict`` on the DeepSpeed engine, which needs
``stage3_gather_16bit_weights_on_model_save``); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments, set_seed

from artemis.errors import ConfigError
from artemis.io import write_json_atomic
from artemis.model.number_loss import number_token_ids
from artemis.train.config import TrainConfig, check_paths
from artemis.train.setup import build_model, save_base, set_trainable, wrap_lora
from artemis.train.stages import TRAINABLES_FILE, _load_trainables, save_stage, save_trainables

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
    deepspeed = values.get("deepspeed")
    if deepspeed and "LOCAL_RANK" not in os.environ:
        raise ConfigError(
            "training.deepspeed needs the torchrun launch (scripts/train/_launch.sh, or `torchrun --nproc_per_node N "
            "-m artemis.cli train ...`, also for one GPU): without RANK and MASTER_ADDR DeepSpeed falls back to MPI "
            "discovery"
        )
    if not torch.cuda.is_available():
        cpu_bf16 = bool(values.get("bf16")) and values.get("use_cpu") is True
        if cpu_bf16:
            # Asked for by name (bf16 with use_cpu, transformers' own pair): autocast to bf16 on the CPU.
            # A GPU recipe's bf16 alone still falls back to fp32 here, as it always has.
            native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
            logger.info("training on the CPU under bf16 autocast (%s)", "native bf16" if native else "emulated: slow")
        elif values.get("bf16") or values.get("fp16"):
            logger.info("no CUDA device: training in fp32 (bf16/fp16 are for GPUs; for bf16 on the CPU add use_cpu)")
        values["bf16"] = cpu_bf16
        values["fp16"] = False
        values.pop("tf32", None)  # a CUDA (Ampere) setting
        values.setdefault("dataloader_pin_memory", False)
        if deepspeed:
            _cpu_deepspeed_state()
            values["accelerator_config"] = {"use_configured_state": True}
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # Accelerate sets up multi-process CPU training (MULTI_CPU, DDP over gloo) only when told
            # it runs on CPU; otherwise every rank would train alone on its share of the data.
            values.setdefault("use_cpu", True)
            values.setdefault("ddp_backend", "gloo")
    values = {k: v for k, v in values.items() if k in TrainingArguments.__dataclass_fields__}
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError, ImportError) as error:
        raise ConfigError(f"training: {error}") from None


@contextlib.contextmanager
def _whole_weights() -> Iterator[None]:
    """Build the starting model whole on every rank, also under ZeRO-3.

    transformers builds models inside ``deepspeed.zero.Init`` (each rank holding a shard) as soon as a ZeRO-3
    ``TrainingArguments`` exists; an artemis model composes sub-models and initialises new parts
    (projector, region encoder, embeddings of added tokens), which fails on shards (an empty embedding
    row). The DeepSpeed engine partitions the whole model when training starts instead, at the cost of
    one full copy per rank in host memory while the model is built (14 GB for a 7B model in bf16).
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    config = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None and config() is not None:
            hf_deepspeed.set_hf_deepspeed_config(config())


def _cpu_deepspeed_state() -> None:
    """Set up Accelerate for DeepSpeed on CPU processes (DeepSpeed's CPU accelerator, gloo).

    Accelerate knows DeepSpeed on GPUs only: on CPU it either skips DeepSpeed (``use_cpu``, plain DDP
    without a word) or finds no backend and counts one process, which breaks DeepSpeed's batch-size check.
    Telling it the gloo backend up front gives the right world size; the Trainer then uses this state
    (``accelerator_config.use_configured_state``). Only CPU runs take this path; it is what lets the
    DeepSpeed configs be tested without a GPU.
    """
    from accelerate import PartialState

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]


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
    and resuming loads it onto the same starting model. Under DeepSpeed the Trainer hands ``_save`` the
    state dict it gathered from the engine (whole weights under ZeRO-3), which is what gets written.

    ``modality_lengths`` (one signed length per item: negative for text-only) switches on batches grouped
    by modality and length (:class:`ModalityLengthSampler`).
    """

    def __init__(
        self, *args: Any, save_kind: str = "full", modality_lengths: list[int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.save_kind = save_kind
        self.modality_lengths = modality_lengths

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if self.save_kind != "trainables":
            super()._save(output_dir, state_dict)
            return
        if not self.args.should_save:
            return
        directory = Path(output_dir or self.args.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        save_trainables(self.accelerator.unwrap_model(self.model), directory, state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        path = Path(resume_from_checkpoint) / TRAINABLES_FILE
        if self.save_kind == "trainables" and path.exists():
            _load_trainables(self.accelerator.unwrap_model(model or self.model), path)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.modality_lengths is None:
            return super()._get_train_sampler(train_dataset)
        return ModalityLengthSampler(
            self.modality_lengths,
            self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps,
            self.args.world_size,
            seed=self.args.seed,
        )


class ModalityLengthSampler(torch.utils.data.Sampler):
    """Item order in which each step's batch (on every rank) holds only items with media or only text-only
    items, of similar lengths: LLaVA's ``group_by_modality_length``, used by the original stages 2 and 3.

    Written here because transformers' ``LengthGroupedSampler`` groups by length only and would mix
    text-only items into media batches. Each modality is shuffled and cut into mega-batches of
    ``batch_size * world_size`` items, each sorted by length (longest first); the mega-batches are
    shuffled, and the two incomplete ones go last. The order depends on the seed and the epoch only.
    """

    def __init__(self, lengths: list[int], batch_size: int, world_size: int, *, seed: int = 0) -> None:
        self.lengths = list(lengths)
        self.megabatch = max(1, batch_size * world_size)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        full: list[list[int]] = []
        tail: list[int] = []
        for media in (True, False):
            group = [i for i, length in enumerate(self.lengths) if (length > 0) == media]
            order = [group[int(j)] for j in torch.randperm(len(group), generator=generator)]
            chunks = [order[k : k + self.megabatch] for k in range(0, len(order), self.megabatch)]
            if chunks and len(chunks[-1]) < self.megabatch:
                tail += chunks.pop()
            full += [sorted(chunk, key=lambda i: -abs(self.lengths[i])) for chunk in chunks]
        shuffled = [full[int(j)] for j in torch.randperm(len(full), generator=generator)]
        return iter([i for chunk in shuffled for i in chunk] + tail)


def modality_lengths(dataset: Any) -> list[int]:
    """Words per item, negative for text-only items (the original's ``modality_lengths``)."""
    if not hasattr(dataset, "entry"):
        raise ConfigError("data.group_by_modality_length needs a dataset of describe files only; remove it")
    lengths = []
    for index in range(len(dataset)):
        entry = dataset.entry(index)
        sample = entry.sample
        turns = [turn["value"] for turn in sample.conversations or []] or [sample.caption or ""]
        words = max(1, sum(len(text.split()) for text in turns))
        lengths.append(-words if entry.kind == "text" else words)
    return lengths


def _datasets(config: TrainConfig, processor: Any, model: Any) -> tuple[Any, Any]:
    """The training and evaluation datasets of the stage's task mix (``data.files[].task``).

    Only ``describe`` files: one :class:`~artemis.data.referring_dataset.ReferringDataset`, as before tasks
    existed. With ``sot`` / ``rsot`` files: a :class:`~artemis.data.task_mix.TaskMix` of the referring
    dataset and one :class:`~artemis.data.box_output_dataset.BoxOutDataset` per box-output file.
    """
    from artemis.data.box_output_dataset import MAX_VIDEO_MB, BoxOutDataset, DecodedVideoCache
    from artemis.data.formats import get_format
    from artemis.data.referring_dataset import ReferringDataset
    from artemis.data.task_mix import TaskMix
    from artemis.model.features import VisionFeatureExtractor

    data = config.data
    model_config = processor_config(model)
    base_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    options = {
        "model": base_model,  # checks a features cache
        "seed": data.seed,
        "bad_records": data.bad_records,
        "tracker": data.tracker,
        "max_region_candidates": data.max_region_candidates,
        "key_frame_jitter": data.key_frame_jitter,
        "mask_prompts": data.mask_prompts,
        "max_length": data.max_length,
        "media_counts_as_one": data.media_counts_as_one,
        "cache_dir": data.cache_dir,
    }
    features_cache = False
    if data.cache_dir is not None:
        settings = json.loads((Path(data.cache_dir) / "cache_config.json").read_text())
        features_cache = bool(settings.get("features"))
        if features_cache and config.train.vision_tower:
            raise ConfigError(
                f"data.cache_dir {data.cache_dir} holds vision features, which cannot train the vision tower; "
                "set train.vision_tower: false or use a frames cache (artemis data cache without --features)"
            )

    def clip_features(pixels: torch.Tensor) -> torch.Tensor:
        # Box-output clips are not in the cache: their frames go through the same frozen vision tower and
        # pooling as the cache's, so their items batch with the cached ones.
        tower = base_model.vision_tower
        parameter = next(tower.parameters())
        pixels = pixels.to(device=parameter.device, dtype=parameter.dtype)  # (n, 3, S, S)
        video, _ = VisionFeatureExtractor(base_model)(pixels, range(len(pixels)), [])
        return video.cpu()  # (N_v, C_v)

    # One store for every box-output file of the stage (training and evaluation): an SOT and an RSOT file
    # over the same videos decode each video once between them.
    video_cache = DecodedVideoCache(int(data.video_cache_mb * 2**20), int(MAX_VIDEO_MB * 2**20))

    def build(files: list, section: str) -> Any:
        describe = [f for f in files if (f.task or "describe") == "describe"]
        boxes = [(i, f) for i, f in enumerate(files) if f.task in ("sot", "rsot")]
        referring = None
        if describe:
            specs = [(f.format, f.path) for f in describe]
            weights = [f.weight for f in describe]
            referring = ReferringDataset.from_files(specs, processor, model_config, weights=weights, **options)
        if not boxes:
            return referring
        for i, entry in boxes:
            if "boxes" not in model_config.tasks:
                raise ConfigError(
                    f"data.{section}.{i} has task: {entry.task} (box output), but the model's tasks are "
                    f"{model_config.tasks}; start from a model trained with tasks: [describe, boxes], or give a "
                    "tiny model model.tiny.tasks: [describe, boxes] and model.tiny.video_layout: frames"
                )
            if not get_format(entry.format).HAS_BOXES:
                raise ConfigError(
                    f"data.{section}.{i} has task: {entry.task} but format {entry.format} has no boxes; box output "
                    "trains on tracking formats (elysium, videoref45k, lasot, otb, hcstvg)"
                )
        parts = [
            (
                BoxOutDataset.from_files(
                    [entry.path],
                    processor,
                    model_config,
                    fmt=entry.format,
                    bad_records=data.bad_records,
                    tasks=(entry.task,),
                    sot_box_jitter=data.sot_box_jitter,
                    sot_box_shift=data.sot_box_shift,
                    box_history_noise=data.box_history_noise,
                    sot_query_exact=data.sot_query_exact,
                    seed=data.seed,
                    video_cache=video_cache,
                    vision_features=clip_features if features_cache else None,
                ),
                entry.weight,
            )
            for _i, entry in boxes
        ]
        return TaskMix(model_config, referring, parts, seed=data.seed)

    train = build(data.files, "files")
    evaluation = build(data.eval_files, "eval_files") if data.eval_files else None
    if len(train) == 0:
        raise ConfigError("data.files hold no usable record; check the files and data.bad_records")
    if isinstance(train, TaskMix):
        logger.info("task mix, items per epoch: %s", train.counts())
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
    """SHA-256 over the trainable parameters, in name order (equal on every rank after a DDP run).

    One tensor at a time is copied to the CPU, never the whole model.
    """
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        if parameter.requires_grad:
            digest.update(name.encode())
            digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def zero_stage(trainer: Trainer) -> int | None:
    """The DeepSpeed ZeRO stage the run uses, or None without DeepSpeed."""
    if not trainer.is_deepspeed_enabled:
        return None
    return int(trainer.accelerator.state.deepspeed_plugin.zero_stage)


def gathered_state_dict(trainer: Trainer, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Under ZeRO-3, ``model``'s whole weights gathered from every rank (a collective: call it on all ranks).

    None otherwise (each rank holds whole weights). The Trainer's own way: the engine consolidates the
    16-bit weights (``stage3_gather_16bit_weights_on_model_save`` must be true in the DeepSpeed JSON).
    """
    if zero_stage(trainer) != 3:
        return None
    try:
        state = trainer.accelerator.get_state_dict(trainer.deepspeed)
    except ValueError as error:
        raise ConfigError(
            f"ZeRO-3 cannot gather the weights to save them ({error}); set "
            '"stage3_gather_16bit_weights_on_model_save": true in the DeepSpeed JSON'
        ) from None
    # The engine holds the Trainer's model, which may wrap ``model`` (a training-only objective head).
    wrapper = trainer.accelerator.unwrap_model(trainer.model)
    if wrapper is not model:
        prefix = next(name for name, module in wrapper.named_modules() if module is model) + "."
        state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    return state


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
    with _whole_weights():
        new_start = config.model.base is None or bool(config.model.config)
        if new_start and checkpoint and (saved_start / "config.json").exists():
            # Resuming a stage that began from new weights (or new modules): start from the very same ones.
            from artemis.train.stages import load_stage

            model, processor = load_stage(saved_start)
            base = str(saved_start)
        else:
            model, processor, base = build_model(config)
    if base is None:  # a tiny or composed start exists nowhere else: keep it with the stage
        base = str(saved_start)
        if args.should_save:
            save_base(model, processor, saved_start)
    if args.bf16 and not torch.cuda.is_available() and model.config._attn_implementation == "sdpa":
        from artemis.model.cpu_attention import FP32_SDPA

        # Attention stays in fp32 under CPU autocast, where torch's bf16 kernels are the slower ones.
        model.set_attn_implementation(FP32_SDPA)
    counts = set_trainable(model, config)
    if config.train.box_label_sigma:
        model.set_box_label_sigma(config.train.box_label_sigma, number_token_ids(processor.tokenizer))
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
        modality_lengths=modality_lengths(train_data) if config.data.group_by_modality_length else None,
    )
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    trained = getattr(trained, "artemis_model", trained)  # without a training-only objective head
    stage_zero = zero_stage(trainer)
    if args.world_size > 1 and config.data.log_samples and stage_zero != 3:
        # Each rank records what it ended with, so divergence between ranks shows (a check, asked for with
        # data.log_samples: it reads every trained weight on every rank). ZeRO-3 ranks hold shards.
        ranks = output_dir / "ranks"
        ranks.mkdir(parents=True, exist_ok=True)
        write_json_atomic(ranks / f"rank{_rank()}.json", {"rank": _rank(), "weights_sha256": weights_digest(trained)})
    state_dict = gathered_state_dict(trainer, trained)  # every rank takes part in the gathering
    if trainer.is_world_process_zero():
        save_stage(trained, processor, output_dir, saved=kind, stage=config.stage, base=base, state_dict=state_dict)
        losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
        summary = {
            "stage": config.stage,
            "saved": kind,
            "global_step": trainer.state.global_step,
            "train_loss": result.training_loss,
            "losses": losses,
            "seconds": round(time.perf_counter() - started, 1),
            "world_size": args.world_size,
            "deepspeed_zero_stage": stage_zero,
            "trainable_parameters": counts,
            "resumed_from": checkpoint,
            "config": config.to_dict(),
        }
        write_json_atomic(output_dir / SUMMARY_FILE, summary)
    return output_dir
