"""Import the original Artemis release (LLaVA layout + LoRA adapter) into :class:`ArtemisForConditionalGeneration`.

The original ships a stage-2 base model (``ChurchillQAQ/Artemis-7b-ftune``: a LLaVA-layout directory with
``config.json``, sharded ``pytorch_model-*.bin`` or ``model.safetensors`` and the tokenizer) and a stage-3
directory (``ChurchillQAQ/Artemis-7B-lora``: ``config.json`` of the full model, a peft LoRA adapter, and
``non_lora_trainables.bin`` with the projector and region module trained next to the adapter). The CLIP
tower is named, not shipped: its weights come from a local CLIP directory. Weights are applied in this
order, later sources replacing earlier ones: base shards, vision tower directory, ``non_lora_trainables``,
non-LoRA tensors of the adapter; then each LoRA pair is merged as ``W += (alpha / r) * B @ A``.

Names are mapped by the explicit table in :mod:`artemis.model.importers.names`; an unmapped key, a missing
parameter and a shape mismatch are each a :class:`CheckpointError` naming the keys (and shapes).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from artemis.errors import CheckpointError
from artemis.model.configuration import ArtemisConfig
from artemis.model.importers.llava_config import clip_vision_config, config_from_llava, has_region_module
from artemis.model.importers.names import CLIP_IGNORED, CLIP_RULES, IGNORED, RULES, is_ignored, map_name
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.prompts import REGION_TOKEN, VIDEO_TOKEN

logger = logging.getLogger(__name__)

INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
NON_LORA_FILE = "non_lora_trainables.bin"
PEFT_PREFIX = "base_model.model."  # what peft puts before the wrapped model's own names
_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<part>A|B)(?:\.[^.]+)?\.weight")


# --- reading files ----------------------------------------------------------------------------------


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """One weights file: safetensors, or a torch pickle read with ``weights_only=True`` (no code runs)."""
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(path, device="cpu")
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError... for a bad or unsafe file
        raise CheckpointError(f"cannot read {path} as a tensor file with weights_only=True: {error}") from error
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{path} holds a {type(tensors).__name__}, not a dict of tensors")
    return tensors


def read_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face weights directory: an index json with its shards, or one file."""
    directory = Path(directory)
    for index_name in INDEX_FILES:
        index_path = directory / index_name
        if index_path.is_file():
            weight_map = json.loads(index_path.read_text()).get("weight_map", {})
            tensors: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                tensors.update(load_tensors(directory / shard))
            absent = sorted(set(weight_map) - set(tensors))
            if absent:
                raise CheckpointError(f"{index_path} lists {len(absent)} tensors its shards lack: {absent[:10]}")
            return tensors
    for name in SINGLE_FILES:
        if (directory / name).is_file():
            return load_tensors(directory / name)
    raise CheckpointError(f"no weights in {directory}: expected one of {', '.join(INDEX_FILES + SINGLE_FILES)}")


def strip_peft_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop peft's ``base_model.model.`` prefix (``non_lora_trainables.bin``, adapter files)."""
    return {(key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key): value for key, value in tensors.items()}


# --- mapping ----------------------------------------------------------------------------------------


@dataclass
class _Entry:
    tensor: torch.Tensor
    source: str  # file or directory the tensor came from
    original: str  # its original name


def _map_source(
    tensors: dict[str, torch.Tensor],
    source: str,
    rules: tuple[tuple[str, str], ...],
    ignored: tuple[str, ...],
    into: dict[str, _Entry],
    unmapped: list[str],
) -> None:
    for original, tensor in tensors.items():
        if is_ignored(original, ignored):
            continue
        ours = map_name(original, rules)
        if ours is None:
            unmapped.append(f"{original} (in {source})")
        else:
            into[ours] = _Entry(tensor, source, original)


def _check_against_model(
    entries: dict[str, _Entry], expected: dict[str, torch.Tensor], allowed_missing: tuple[str, ...]
) -> None:
    unexpected = sorted(f"{e.original} -> {key} (in {e.source})" for key, e in entries.items() if key not in expected)
    if unexpected:
        raise CheckpointError(
            f"{len(unexpected)} checkpoint tensors have no parameter in the model built from the config: "
            f"{unexpected[:20]}; check num_hidden_layers / num_levels in config.json"
        )
    mismatched = [
        f"{e.original} (in {e.source}) -> {key}: checkpoint {tuple(e.tensor.shape)}, model {tuple(expected[key].shape)}"
        for key, e in entries.items()
        if tuple(e.tensor.shape) != tuple(expected[key].shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"shape mismatch for {len(mismatched)} tensors: {mismatched[:10]}; the config (config.json, "
            f"vision_config, config_overrides) does not describe these weights"
        )
    missing = sorted(key for key in expected if key not in entries and not key.startswith(allowed_missing))
    if missing:
        raise CheckpointError(
            f"{len(missing)} model parameters are in no checkpoint file: {missing[:20]}; pass the directory "
            f"that holds them (vision_tower_dir for vision_tower.*, lora_dir with non_lora_trainables.bin for "
            f"region_encoder.* and mm_projector.*)"
        )


# --- LoRA -------------------------------------------------------------------------------------------


def read_adapter(lora_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A peft adapter directory: ``adapter_config.json`` and ``adapter_model.safetensors|bin``."""
    config_path = lora_dir / "adapter_config.json"
    if not config_path.is_file():
        raise CheckpointError(f"no adapter_config.json in {lora_dir}; lora_dir must be a peft adapter directory")
    adapter_config = json.loads(config_path.read_text())
    for name in ADAPTER_FILES:
        if (lora_dir / name).is_file():
            return adapter_config, strip_peft_prefix(load_tensors(lora_dir / name))
    raise CheckpointError(f"no adapter weights in {lora_dir}: expected {' or '.join(ADAPTER_FILES)}")


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """peft's ``rank_pattern`` / ``alpha_pattern``: a key matches a module name or its dotted suffix."""
    for key, value in patterns.items():
        if re.fullmatch(rf"(?:.*\.)?{key}", module):
            return value
    return default


def split_adapter(
    adapter_config: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor, float]], dict[str, torch.Tensor]]:
    """LoRA pairs by original weight name ``(A, B, scale)``, and the adapter's plain tensors.

    Plain tensors are what peft saves besides the pairs (``bias="all"``, ``modules_to_save``); they replace
    the base weights like ``non_lora_trainables`` do.
    """
    if adapter_config.get("use_dora"):
        raise CheckpointError(f"{source} is a DoRA adapter (use_dora=true); only plain LoRA can be merged")
    peft_type = adapter_config.get("peft_type", "LORA")
    if peft_type != "LORA":
        raise CheckpointError(f"{source} is a {peft_type} adapter; only LORA adapters can be imported")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    plain: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        match = _LORA_KEY.fullmatch(key)
        if match:
            parts.setdefault(match["module"], {})[match["part"]] = tensor
        elif ".lora_" in key:
            raise CheckpointError(f"{key} in {source} is a LoRA tensor this importer cannot merge (only lora_A/B)")
        else:
            plain[key] = tensor
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for module, pair in parts.items():
        if set(pair) != {"A", "B"}:
            raise CheckpointError(f"{module} in {source} has lora_{'/'.join(pair)} but not both lora_A and lora_B")
        rank = int(_pattern_value(adapter_config.get("rank_pattern") or {}, module, adapter_config.get("r", 8)))
        alpha = float(_pattern_value(adapter_config.get("alpha_pattern") or {}, module, adapter_config["lora_alpha"]))
        if pair["A"].shape[0] != rank:
            raise CheckpointError(
                f"{module}.lora_A in {source} has rank {pair['A'].shape[0]} but adapter_config.json says r={rank}"
            )
        scale = alpha / math.sqrt(rank) if adapter_config.get("use_rslora") else alpha / rank
        pairs[f"{module}.weight"] = (pair["A"], pair["B"], scale)
    return pairs, plain


def _merge_lora(
    entries: dict[str, _Entry],
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]],
    source: str,
    fan_in_fan_out: bool,
) -> None:
    for original, (lora_a, lora_b, scale) in pairs.items():
        ours = map_name(original)
        if ours is None or ours not in entries:
            raise CheckpointError(f"the LoRA adapter in {source} targets {original}, which the model does not have")
        weight = entries[ours].tensor
        delta = lora_b.float() @ lora_a.float() * scale  # (out, in)
        if fan_in_fan_out:  # Conv1D-style weights are stored (in, out)
            delta = delta.T
        if delta.shape != weight.shape:
            raise CheckpointError(
                f"LoRA update of {original} in {source} has shape {tuple(delta.shape)} but the weight is "
                f"{tuple(weight.shape)}"
            )
        entries[ours] = _Entry((weight.float() + delta).to(weight.dtype), source, original)


# --- tokenizer --------------------------------------------------------------------------------------


def prepare_tokenizer(tokenizer_dir: Path, model: ArtemisForConditionalGeneration) -> PreTrainedTokenizerBase:
    """Load the tokenizer, add ``<video>``/``<region>`` if missing, and point the config's ids at them.

    The original never had these tokens: it spliced features at sentinel ids outside the vocabulary
    (``IMAGE_TOKEN_INDEX = -200`` for the video, ``BOX_TOKEN_INDEX = -500`` per box). New rows of the
    embedding and of the LM head are set to the mean of the old rows (as LLaVA does), so nothing random is
    introduced; the ``<video>``/``<region>`` rows are replaced by features in every forward anyway.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(
            f"no usable tokenizer in {tokenizer_dir}: {error}; pass tokenizer_dir= (the base model's directory)"
        ) from error
    vocab = tokenizer.get_vocab()
    new = [token for token in (VIDEO_TOKEN, REGION_TOKEN) if token not in vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    if tokenizer.pad_token is None and tokenizer.unk_token is not None:
        tokenizer.pad_token = tokenizer.unk_token  # what the original's Vicuna-v1 training used
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        _grow_embeddings(model, len(tokenizer))
        logger.info("grew the vocabulary from %d to %d rows for %s", rows, len(tokenizer), new)
    model.config.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    model.config.region_token_id = tokenizer.convert_tokens_to_ids(REGION_TOKEN)
    return tokenizer


@torch.no_grad()
def _grow_embeddings(model: ArtemisForConditionalGeneration, size: int) -> None:
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    model.resize_token_embeddings(size, mean_resizing=False)
    rows = old_in.shape[0]
    model.get_input_embeddings().weight[rows:] = old_in.float().mean(0).to(old_in.dtype)
    model.get_output_embeddings().weight[rows:] = old_out.float().mean(0).to(old_out.dtype)
    model.config.text_config.vocab_size = size


# --- the importer -----------------------------------------------------------------------------------


def _existing_dir(path: str | Path, name: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise CheckpointError(f"{name}={str(path)!r} is not a directory")
    return directory


@dataclass
class ImportedCheckpoint:
    """An imported model and its processor."""

    model: ArtemisForConditionalGeneration
    processor: ArtemisProcessor

    @property
    def config(self) -> ArtemisConfig:
        return self.model.config

    def save_pretrained(self, directory: str | Path) -> None:
        """Write weights (safetensors), config, tokenizer and processor settings to ``directory``."""
        self.model.save_pretrained(directory)
        self.processor.save_pretrained(directory)


def import_artemis_checkpoint(
    base_dir: str | Path,
    *,
    lora_dir: str | Path | None = None,
    vision_tower_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    merge_lora: bool = True,
    dtype: torch.dtype = torch.float32,
    config_overrides: dict[str, Any] | None = None,
):
    """Import the original Artemis checkpoint, offline, as an artemis model and its processor.

    Args:
        base_dir: the LLaVA-layout base model (``config.json``, weights shards or one file, tokenizer).
        lora_dir: the stage-3 directory: peft adapter and ``non_lora_trainables.bin``; its ``config.json``,
            when present, is the model's config (as the original's loader uses it).
        vision_tower_dir: a local CLIP directory (``CLIPVisionModel`` or full ``CLIPModel``). Needed unless
            the base checkpoint itself holds the tower.
        tokenizer_dir: where the tokenizer is; default ``base_dir``.
        out_dir: if given, the imported model is saved there (safetensors, config, tokenizer, processor).
        merge_lora: merge the adapter into the LLM weights (default). With False the adapter stays a
            separate peft module on ``model.language_model`` (to train on, or to switch off); such a model
            cannot be written to ``out_dir``, which holds plain weights.
        dtype: weights dtype of the returned model.
        config_overrides: :class:`ArtemisConfig` fields to set on top of the LLaVA config (e.g. region sizes of
            a checkpoint that departs from the original's hard-coded ones).

    Returns:
        An :class:`ImportedCheckpoint`: ``.model`` and ``.processor``; ``ArtemisModel(imported.model,
        imported.processor)`` (or ``ArtemisModel.from_pretrained(out_dir)``) describes videos with it.
    """
    base = _existing_dir(base_dir, "base_dir")
    lora = _existing_dir(lora_dir, "lora_dir") if lora_dir is not None else None
    vision = _existing_dir(vision_tower_dir, "vision_tower_dir") if vision_tower_dir is not None else None
    if out_dir is not None and lora is not None and not merge_lora:
        raise CheckpointError("out_dir needs merge_lora=True: artemis checkpoints hold plain (merged) weights")

    config_dir = lora if lora is not None and (lora / "config.json").is_file() else base
    llava = json.loads((config_dir / "config.json").read_text()) if (config_dir / "config.json").is_file() else None
    if llava is None:
        raise CheckpointError(f"no config.json in {base}; the base model must be a LLaVA-layout directory")
    entries: dict[str, _Entry] = {}
    unmapped: list[str] = []
    _map_source(read_state_dict(base), str(base), RULES, IGNORED, entries, unmapped)
    embedded_tower = any(key.startswith("vision_tower.") for key in entries)
    if vision is not None:
        if embedded_tower:
            logger.info("vision tower weights of %s replace those inside %s", vision, base)
        _map_source(read_state_dict(vision), str(vision), CLIP_RULES, CLIP_IGNORED, entries, unmapped)
    elif not embedded_tower:
        raise CheckpointError(
            f"the vision tower weights are not in {base}; pass vision_tower_dir= a local copy of the CLIP tower "
            f"the config names ({llava.get('mm_image_tower') or llava.get('mm_vision_tower')}); artemis never "
            f"downloads weights"
        )

    config: ArtemisConfig = config_from_llava(
        llava, vision_config=clip_vision_config(vision) if vision is not None else None, **(config_overrides or {})
    )
    logger.info("config from %s", config_dir / "config.json")
    model = ArtemisForConditionalGeneration(config)
    expected = model.state_dict()
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    adapter_config: dict[str, Any] = {}
    if lora is not None:
        if (lora / NON_LORA_FILE).is_file():
            non_lora = strip_peft_prefix(load_tensors(lora / NON_LORA_FILE))
            _map_source(non_lora, str(lora / NON_LORA_FILE), RULES, IGNORED, entries, unmapped)
        else:
            logger.warning("no %s in %s: projector and region module come from the base model", NON_LORA_FILE, lora)
        adapter_config, adapter = read_adapter(lora)
        pairs, plain = split_adapter(adapter_config, adapter, str(lora))
        _map_source(plain, str(lora), RULES, IGNORED, entries, unmapped)
    if unmapped:
        raise CheckpointError(
            f"{len(unmapped)} checkpoint tensors have no rule in the name map: {sorted(unmapped)[:20]}; "
            f"see docs/checkpoints.md for the layouts artemis imports"
        )
    # A LLaVA model without the region module (mm_spi_model) never had those weights: keep their init.
    allowed_missing = () if has_region_module(llava) else ("region_encoder.",)
    if allowed_missing:
        logger.warning("the checkpoint has no region module (mm_spi_model); region_encoder keeps its random init")
    _check_against_model(entries, expected, allowed_missing)
    if pairs and merge_lora:
        _merge_lora(entries, pairs, str(lora), bool(adapter_config.get("fan_in_fan_out")))

    state = {key: entry.tensor for key, entry in entries.items()}
    model.load_state_dict(state, strict=not allowed_missing)
    model = model.to(dtype).eval()
    if pairs and not merge_lora:
        from peft import PeftModel

        model.language_model = PeftModel.from_pretrained(model.language_model, str(lora), is_trainable=False)

    tokenizer = prepare_tokenizer(Path(tokenizer_dir) if tokenizer_dir is not None else base, model)
    processor = ArtemisProcessor.from_config(model.config, tokenizer)
    imported = ImportedCheckpoint(model, processor)
    if out_dir is not None:
        imported.save_pretrained(out_dir)
        logger.info("saved the imported model to %s", out_dir)
    return imported
