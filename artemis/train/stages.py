"""What a training stage writes, and how the next stage (or inference) loads it.

A stage output directory always holds ``config.json``, the tokenizer/processor files and
``artemis_stage.json``, which says what the stage saved:

* ``"full"`` — the whole model (``model.safetensors``): an ordinary artemis model directory.
* ``"trainables"`` — only the parameters that trained (``trainables.safetensors``), e.g. the projector
  in stage 1, as LLaVA and Artemis save ``mm_projector.bin``; the rest comes from ``base``.
* ``"lora"`` — a peft adapter in ``adapter/`` whose ``modules_to_save`` carry the non-LoRA trainables
  (projector, region encoder), on top of ``base``; as Artemis' LoRA adapter + ``non_lora_trainables.bin``.

``base`` is the directory the stage started from (absolute), so outputs chain: stage 3's LoRA sits on
stage 2's full model, which started from stage 1's projector on the base model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from artemis.errors import CheckpointError
from artemis.io import atomic_path, write_json_atomic
from artemis.model.frame_tokens import FRAME_TOKEN_MODULES
from artemis.model.loading import load_config, load_model
from artemis.model.processing import ArtemisProcessor
from artemis.train.config import MODEL_PARTS

logger = logging.getLogger(__name__)

STAGE_FILE = "artemis_stage.json"
TRAINABLES_FILE = "trainables.safetensors"
ADAPTER_DIR = "adapter"
SAVE_KINDS = ("full", "trainables", "lora")

__all__ = [
    "ADAPTER_DIR",
    "STAGE_FILE",
    "TRAINABLES_FILE",
    "load_stage",
    "merge_lora",
    "read_stage",
    "save_stage",
    "save_trainables",
]


def read_stage(directory: str | Path) -> dict[str, Any]:
    """The ``artemis_stage.json`` of ``directory``; a plain model directory reads as ``{"saved": "full"}``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory} does not exist or is not a directory; run the previous stage first or fix model.base"
        )
    path = directory / STAGE_FILE
    if not path.exists():
        return {"saved": "full", "base": None}
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); the stage output is damaged") from None
    if info.get("saved") not in SAVE_KINDS:
        raise CheckpointError(f"{path}: saved={info.get('saved')!r}; expected one of {', '.join(SAVE_KINDS)}")
    return info


def _check_architecture(directory: Path) -> None:
    config = directory / "config.json"
    if not config.exists():
        raise CheckpointError(f"{directory} has no config.json; it is not a model or stage output directory")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config} is not valid JSON ({error})") from None
    if model_type != "artemis":
        raise CheckpointError(
            f"{directory} holds a {model_type!r} model, not an artemis one; start from an artemis model, or "
            "compose one with model.vision_tower + model.language_model, or import the original Artemis "
            "checkpoint with artemis.model.importers"
        )


def load_stage(directory: str | Path, quantization_config: Any = None) -> tuple[Any, Any]:
    """Load any stage output (or artemis model directory) as ``(model, processor)`` with LoRA merged.

    Args:
        directory: a stage output or a model directory.
        quantization_config: a ``BitsAndBytesConfig``; only a ``"full"`` directory can be quantised at
            load time (merge a LoRA stage with ``artemis merge-lora`` first).
    """
    directory = Path(directory)
    info = read_stage(directory)
    _check_architecture(directory)
    config = load_config(directory)
    processor = ArtemisProcessor.from_pretrained(directory, config)
    if info["saved"] == "full":
        return load_model(directory, config, quantization_config=quantization_config), processor
    if quantization_config is not None:
        raise CheckpointError(
            f"{directory} saved {info['saved']} only; quantised loading needs a full model: run "
            f"`artemis merge-lora {directory} OUT` and train from OUT"
        )
    base = info.get("base")
    if base is None:
        raise CheckpointError(f"{directory / STAGE_FILE} names no base model to apply its {info['saved']} to")
    model, _ = load_stage(base)
    if info["saved"] == "trainables":
        _load_trainables(model, directory / TRAINABLES_FILE)
        return model, processor
    from peft import PeftModel

    adapter = directory / ADAPTER_DIR
    if not adapter.is_dir():
        raise CheckpointError(f"{adapter} is missing; the LoRA stage output is incomplete")
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return merged, processor


def _load_trainables(model: torch.nn.Module, path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path} is missing; the stage output is incomplete")
    tensors = load_file(str(path))
    own = model.state_dict()
    unknown = [name for name in tensors if name not in own]
    mismatched = [
        f"{name} {tuple(t.shape)} vs {tuple(own[name].shape)}"
        for name, t in tensors.items()
        if name in own and t.shape != own[name].shape
    ]
    if unknown or mismatched:
        raise CheckpointError(
            f"{path} does not fit the base model: unknown {unknown[:5]}, mismatched {mismatched[:5]}; the stage was "
            "trained on another base"
        )
    model.load_state_dict(tensors, strict=False)


def _part(name: str) -> str | None:
    """The prefix of the model part a parameter or buffer belongs to (``region_encoder.``, ...)."""
    for part in (*MODEL_PARTS, *FRAME_TOKEN_MODULES):
        if name.startswith(f"{part}."):
            return f"{part}."
        position = name.find(f".{part}.")
        if position >= 0:
            return name[: position + len(part) + 2]
    return None


def trainable_state(
    model: torch.nn.Module, *, buffers: bool = False, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The parameters that require grad, by name, detached and contiguous (ready for safetensors).

    ``buffers=True`` adds the persistent buffers of every part that trains, such as the running
    statistics of the region encoder's BatchNorm, which belong to the trained region encoder as much as
    its weights do. ``state_dict`` gives the values when the model's own tensors are not whole: under
    DeepSpeed ZeRO-3 each rank holds a shard of every parameter, and the Trainer gathers a full state dict
    for saving; the names (which parameters trained) still come from ``model``.
    """
    parameters = dict(model.named_parameters())
    names = [name for name, p in parameters.items() if p.requires_grad]
    values = state_dict if state_dict is not None else parameters
    missing = [name for name in names if name not in values]
    if missing:
        raise CheckpointError(f"the state dict to save lacks trained parameters {missing[:5]}; it is not this model's")
    state = {name: values[name].detach().contiguous().cpu() for name in names}
    if buffers:
        trained = {_part(name) for name in state} - {None}
        for name, tensor in model.state_dict().items():
            if name not in parameters and _part(name) in trained:
                value = tensor if state_dict is None else state_dict.get(name, tensor)
                state[name] = value.detach().contiguous().cpu()
    return state


def save_trainables(model: torch.nn.Module, directory: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``trainables.safetensors`` (trained parameters and their parts' buffers) and ``config.json``.

    ``state_dict``: the gathered weights when the model's own are sharded (ZeRO-3; see :func:`trainable_state`).
    """
    with atomic_path(directory / TRAINABLES_FILE) as tmp:
        save_file(trainable_state(model, buffers=True, state_dict=state_dict), str(tmp), metadata={"format": "pt"})
    model.config.save_pretrained(directory)


def save_stage(
    model: Any,
    processor: Any,
    directory: str | Path,
    *,
    saved: str,
    stage: str,
    base: str | Path | None,
    state_dict: dict[str, torch.Tensor] | None = None,
    **extra: Any,
) -> Path:
    """Write a stage output (see the module docstring); ``model`` is a PeftModel when ``saved="lora"``.

    ``state_dict``: the model's weights gathered from every rank, when its own tensors are shards (DeepSpeed
    ZeRO-3); None saves the model's own tensors.
    """
    if saved not in SAVE_KINDS:
        raise ValueError(f"saved={saved!r}; expected one of {SAVE_KINDS}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if saved == "full":
        model.save_pretrained(directory, state_dict=state_dict)
    elif saved == "trainables":
        save_trainables(model, directory, state_dict)
    else:
        model.save_pretrained(directory / ADAPTER_DIR, state_dict=state_dict)
        model.get_base_model().config.save_pretrained(directory)
    processor.save_pretrained(directory)
    info = {
        "format": 1,
        "stage": stage,
        "saved": saved,
        "base": None if base is None else str(Path(base).resolve()),
        **extra,
    }
    write_json_atomic(directory / STAGE_FILE, info)
    return directory


def merge_lora(directory: str | Path, out: str | Path) -> Path:
    """Load a stage output (LoRA merged into the LLM) and save it as one full model directory."""
    model, processor = load_stage(directory)
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
