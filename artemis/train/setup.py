"""Build the model a training config starts from, then freeze, quantise and wrap it with LoRA.

Three starting points (``model`` section of the config):

* ``base`` — an artemis model directory or any previous stage output (:func:`artemis.train.stages.load_stage`);
* ``tiny`` — a tiny random model whose word vocabulary covers the text of some annotation files (the
  CPU recipe); the stage then also writes this starting model to ``<output_dir>/base`` so the chain of
  stage outputs stays loadable;
* ``vision_tower`` + ``language_model`` — local CLIP and LLM directories composed into a new model with
  a fresh projector and region encoder (stage 1 at real scale), ``<video>``/``<region>`` added to the
  LLM's tokenizer.
"""

from __future__ import annotations

import difflib
import logging
import re
import types
from pathlib import Path
from typing import Any

import torch

from artemis.errors import CheckpointError, ConfigError
from artemis.model.frame_tokens import FRAME_TOKEN_MODULES
from artemis.model.loading import extend_model
from artemis.train.config import TRAINABLE_PARTS, TrainConfig

logger = logging.getLogger(__name__)

__all__ = ["build_model", "lora_target_regex", "set_trainable", "vocabulary_texts", "wrap_lora"]


def vocabulary_texts(files: list[str]) -> list[str]:
    """Every question, answer, caption and conversation turn of ``["FORMAT:PATH", ...]``."""
    from artemis.data.entries import load_entries

    specs = []
    for item in files:
        fmt, sep, path = str(item).partition(":")
        if not sep:
            raise ConfigError(f"model.tiny.vocab_from entry {item!r} must be FORMAT:PATH, e.g. llava:data/train.json")
        specs.append((fmt, path))
    entries, _ = load_entries(specs)
    texts: list[str] = []
    for entry in entries:
        sample = entry.sample
        texts += [t for t in (sample.question, sample.answer, sample.caption) if t]
        texts += [turn["value"] for turn in sample.conversations or []]
    return texts


def _tiny(spec: dict[str, Any]) -> tuple[Any, Any]:
    from artemis.model.tiny import build_tiny_model

    spec = dict(spec)
    seed = int(spec.pop("seed", 0))
    texts = vocabulary_texts(spec.pop("vocab_from", []))
    try:
        model, processor = build_tiny_model(texts, seed=seed, **spec)
    except TypeError as error:
        raise ConfigError(f"model.tiny: {error}; its keys are seed, vocab_from and ArtemisConfig fields") from None
    return model.train(), processor


def _compose(vision_dir: str, llm_dir: str, fields: dict[str, Any], dtype: torch.dtype) -> tuple[Any, Any]:
    """A new Artemis model from a local CLIP vision tower and a local causal LM (nothing downloaded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPVisionModel

    from artemis.model import ArtemisConfig, ArtemisForConditionalGeneration, ArtemisProcessor
    from artemis.prompts import REGION_TOKEN, VIDEO_TOKEN

    vision = CLIPVisionModel.from_pretrained(vision_dir, dtype=dtype, local_files_only=True)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(llm_dir, local_files_only=True)
    tokenizer.add_special_tokens({"additional_special_tokens": [VIDEO_TOKEN, REGION_TOKEN]})
    if tokenizer.pad_token is None:  # Vicuna/LLaMA have none; LLaVA pads with unk
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        llm.resize_token_embeddings(len(tokenizer))
    config = ArtemisConfig(
        vision_config=vision.config,
        text_config=llm.config,
        video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        region_token_id=tokenizer.convert_tokens_to_ids(REGION_TOKEN),
        **fields,
    )
    model = ArtemisForConditionalGeneration(config)
    # Swap the randomly initialised sub-models for the loaded ones (same configs, so same shapes).
    model.vision_tower = vision
    model.language_model = llm
    return model.to(dtype), ArtemisProcessor.from_config(config, tokenizer)


def quantization_config(config: TrainConfig) -> Any:
    """A ``BitsAndBytesConfig`` for the LLM's linear layers, or None (everything else stays in full precision)."""
    bits = config.quantization.bits
    if bits is None:
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("quantization.bits needs bitsandbytes: pip install 'artemis-video[train]'") from None
    from transformers import BitsAndBytesConfig

    skip = ["vision_tower", "mm_projector", "region_encoder", "lm_head"]
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.quantization.quant_type,
        bnb_4bit_use_double_quant=config.quantization.double_quant,
        bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32,
        llm_int8_skip_modules=skip,
    )


def build_model(config: TrainConfig, dtype: torch.dtype = torch.float32) -> tuple[Any, Any, str | None]:
    """``(model, processor, base)``: the starting model of the stage and where it came from."""
    from artemis.train.stages import load_stage

    section = config.model
    if section.base is not None:
        if section.config and config.quantization.bits is not None:
            raise ConfigError("model.config adds modules to an unquantised model only; extend it in a stage first")
        model, processor = load_stage(section.base, quantization_config=quantization_config(config))
        base = section.base
        if section.config:
            model, processor = extend_model(model, processor, section.config)
            base = None  # the extended start exists nowhere else: the runner saves it with the stage
    elif section.tiny is not None:
        if config.quantization.bits is not None:
            raise ConfigError("quantization needs a saved model: train a tiny stage first, then QLoRA from it")
        model, processor = _tiny(section.tiny)
        base = None  # the runner saves the random start to <output_dir>/base
    else:
        if config.quantization.bits is not None:
            raise ConfigError("compose the model in an unquantised stage 1 first; quantise from its output")
        model, processor = _compose(section.vision_tower, section.language_model, section.config, dtype)
        base = None
    if section.config and section.vision_tower is None and section.base is None:
        raise ConfigError(
            "model.config applies when composing from vision_tower + language_model, or to add modules to a "
            "model.base; a tiny model takes its fields in model.tiny"
        )
    if not isinstance(model.config.model_type, str) or model.config.model_type != "artemis":
        raise CheckpointError(f"the starting model is a {model.config.model_type!r}, not an artemis model")
    return model, processor, base


def _part_attributes(model: torch.nn.Module, part: str) -> list[str]:
    """The model attributes a ``train:`` part covers: the projector brings the frame selector and the frame
    position embedding that feed it (when the model has them)."""
    attributes = [TRAINABLE_PARTS[part]]
    if part == "projector":
        attributes += [name for name in FRAME_TOKEN_MODULES if getattr(model, name, None) is not None]
    return attributes


def set_trainable(model: torch.nn.Module, config: TrainConfig) -> dict[str, int]:
    """Freeze everything, then unfreeze the parts ``train:`` names; return trainable counts per part."""
    train = config.train
    model.requires_grad_(False)
    trained = [
        attribute for part in TRAINABLE_PARTS if getattr(train, part) for attribute in _part_attributes(model, part)
    ]
    for attribute in trained:
        getattr(model, attribute).requires_grad_(True)
    if train.llm == "full":
        model.language_model.requires_grad_(True)
    names = [name for name, _ in model.named_parameters()]
    module_names = [name for name, _ in model.named_modules() if name]
    for prefix in train.freeze:
        if not any(name.startswith(prefix) for name in names + module_names):
            modules = sorted({name.rsplit(".", 1)[0] for name in names})
            match = difflib.get_close_matches(prefix, modules, n=1, cutoff=0.5)
            hint = f"; did you mean {match[0]!r}?" if match else " (prefixes of parameter names: region_encoder.fuse)"
            raise ConfigError(f"train.freeze: {prefix!r} matches no parameter or module of the model{hint}")
    for name, parameter in model.named_parameters():
        if any(name.startswith(prefix) for prefix in train.freeze):
            parameter.requires_grad_(False)
    if train.frozen_batch_norms == "eval":
        parts = {*trained, "language_model"} if train.llm != "frozen" else set(trained)
        _keep_frozen_statistics(model, parts, train.freeze)
    counts = {
        part: sum(
            p.numel()
            for attr in _part_attributes(model, part)
            for p in getattr(model, attr).parameters()
            if p.requires_grad
        )
        for part in TRAINABLE_PARTS
    }
    counts["llm"] = sum(p.numel() for p in model.language_model.parameters() if p.requires_grad)
    return counts


def _keep_frozen_statistics(model: torch.nn.Module, trained: set[str], freeze: list[str]) -> None:
    """A BatchNorm in a part that does not train, or under a ``freeze`` prefix, works as at inference: it
    normalises by its running statistics and leaves them as they are.

    The model trains in train mode, where a BatchNorm normalises by each batch and moves its statistics
    towards it. For a frozen part both are wrong: its statistics are part of its state (a stage that trained
    only the mask embedding moved the region encoder's RoI normalisation and the track token's, and with them
    the answers to box prompts; docs/experiments.md, run 40p), and with the statistics kept but the batch's
    used in training, the parts downstream would learn from tokens normalised otherwise than at inference
    (run 40). The trainer sets train mode before every step, so each such BatchNorm gets a ``train`` that
    keeps it in eval mode (the track and relation embeddings read ``norm.training`` and call the functional
    batch norm, so a forward hook would not reach them). A BatchNorm without affine parameters has no
    parameter to freeze, so a ``freeze`` prefix may name it as a module. ``trained`` names the model's
    top-level parts that train; ``train.frozen_batch_norms: train`` skips this, as the trainer did before.
    """
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.modules.batchnorm._BatchNorm) or not module.track_running_stats:
            continue
        if name.split(".", 1)[0] not in trained or any(name.startswith(prefix) for prefix in freeze):
            module.train = types.MethodType(_stay_in_eval_mode, module)
            module.eval()


def _stay_in_eval_mode(module: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
    """``train`` of a frozen BatchNorm: eval mode whatever ``model.train()`` asks."""
    return torch.nn.Module.train(module, False)


def lora_target_regex(model: torch.nn.Module, targets: str | list[str]) -> str:
    """A peft ``target_modules`` regex: the LLM's linear layers (all but the head, as Artemis), or the named ones."""
    if isinstance(targets, str) and targets != "all-linear":
        targets = [targets]
    if targets == "all-linear":
        names = set()
        for name, module in model.language_model.named_modules():
            if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
                names.add(name.rsplit(".", 1)[-1])
        targets = sorted(names)
    if not targets:
        raise ConfigError("lora.target_modules matches no linear layer of the LLM")
    return rf"language_model\..*\.({'|'.join(re.escape(t) for t in targets)})"


def wrap_lora(model: Any, config: TrainConfig) -> Any:
    """Add LoRA to the LLM (peft); the other trained parts become ``modules_to_save`` of the adapter."""
    try:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    except ImportError:
        raise ConfigError("train.llm: lora needs peft: pip install 'artemis-video[train]'") from None
    if config.quantization.bits is not None:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(config.training.get("gradient_checkpointing"))
        )
    save = [attr for part in TRAINABLE_PARTS if getattr(config.train, part) for attr in _part_attributes(model, part)]
    save += list(config.lora.modules_to_save)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=lora_target_regex(model, config.lora.target_modules),
        modules_to_save=save or None,
        bias="none",
    )
    peft_model = get_peft_model(model, lora)
    if config.training.get("gradient_checkpointing"):
        peft_model.enable_input_require_grads()
    return peft_model


def save_base(model: Any, processor: Any, directory: Path) -> Path:
    """Write the random starting model of a tiny stage, so later stages can rebuild the chain."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
