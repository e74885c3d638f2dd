"""Import the Elysium release (Hon-Wong/Elysium, ``ElysiumForCausalLM``) into :class:`ArtemisForConditionalGeneration`.

The release (``sty-yyj/elysium_7b``) is one directory written by transformers' ``save_pretrained``
(transformers 4.37, bf16 safetensors, sharded with ``model.safetensors.index.json``) with an ``elysium``
``config.json`` that names its LLM (``llm_config.pretrained_model_name_or_path``, vicuna-7b-v1.5) and its
vision tower (``visual_config``, CLIP ViT-L/14-336) but describes neither, and no tokenizer: the
original's ``__init__`` loads both from the hub by name. Its weights hold every part:

* ``visual_encoder.vision_model.*``: a ``CLIPVisionModel`` (frozen); hidden state -2, CLS dropped;
* ``adapter.*``: the T-Selector (``RanTSelecor``): ``pre_proj`` Linear(C, 1), ``trans_weight`` (N, N),
  ``trans_bias`` (N,), and ``score_proj`` Linear(N, k), which its ``forward`` never uses;
* ``llm_proj.{0,2}.*``: ``build_projector("mlp2x_gelu")`` = Sequential(Linear(C, D), GELU, Linear(D, D));
* ``llm.model.*``, ``llm.lm_head.weight``: the ``LlamaForCausalLM``.

It maps onto an artemis model with per-frame tokens chosen by the T-Selector (``video_layout="frames"``,
``frame_tokens="select"``, ``frame_select_gradient="none"``). The region encoder has no counterpart in
the release and keeps its initialisation. ``llm_dir`` (a local copy of the LLM the config names) gives
the tokenizer and the LLM's shape; nothing is downloaded. See ``docs/checkpoints.md``, "Elysium".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, PreTrainedConfig, PreTrainedTokenizerBase

from artemis.errors import CheckpointError, ConfigError
from artemis.model.configuration import ArtemisConfig
from artemis.model.importers.artemis_checkpoint import ImportedCheckpoint, prepare_tokenizer, read_state_dict
from artemis.model.importers.llava_config import KNOWN_CLIP_TOWERS, clip_vision_config
from artemis.model.importers.names import CLIP_NAMES, IGNORED, LLAMA_LAYER, is_ignored, map_name
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.prompts import IMAGE_TOKEN, VICUNA_V1, elysium_frames_prefix

logger = logging.getLogger(__name__)

# --- the name map ------------------------------------------------------------------------------------

ELYSIUM_RULES: tuple[tuple[str, str], ...] = (
    # llm = LlamaForCausalLM.
    (r"llm\.model\.embed_tokens\.weight", "language_model.model.embed_tokens.weight"),
    (rf"llm\.model\.layers\.(\d+)\.{LLAMA_LAYER}", r"language_model.model.layers.\1.\2"),
    (r"llm\.model\.norm\.weight", "language_model.model.norm.weight"),
    (r"llm\.lm_head\.weight", "language_model.lm_head.weight"),
    # llm_proj = Sequential(Linear, GELU, Linear).
    (r"llm_proj\.0\.(weight|bias)", r"mm_projector.linear_1.\1"),
    (r"llm_proj\.2\.(weight|bias)", r"mm_projector.linear_2.\1"),
    # adapter = the T-Selector; the same parameter names on our frame selector.
    (r"adapter\.pre_proj\.(weight|bias)", r"frame_selector.pre_proj.\1"),
    (r"adapter\.(trans_weight|trans_bias)", r"frame_selector.\1"),
    # visual_encoder = a CLIPVisionModel subclass: ``vision_model.*`` as transformers 4 saved it.
    (rf"visual_encoder\.{CLIP_NAMES}", r"vision_tower.\1"),
)
"""Elysium name (full match) -> our name template."""

ELYSIUM_IGNORED: tuple[str, ...] = (
    *IGNORED,
    # Built by RanTSelecor.__init__ and saved, but never used by its forward: nothing to map it onto.
    r"adapter\.score_proj\.(?:weight|bias)",
)

# --- the config --------------------------------------------------------------------------------------

CLIP_LEN = 8
"""Frames of one clip in the release's evaluation (``eval/eval.py``: ``clip_len=8``, stride 7)."""

KNOWN_LLMS: dict[str, dict[str, Any]] = {
    # lmsys/vicuna-7b-v1.5 (a Llama-2-7B fine-tune): its config.json's shape fields.
    "lmsys/vicuna-7b-v1.5": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
    },
}
"""LLMs by hub name: the Llama config fields used when ``llm_dir`` has no ``config.json``."""


def read_elysium_config(path_or_dict: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """An Elysium ``config.json`` (a file, its directory, or the loaded dict), checked to be one."""
    if isinstance(path_or_dict, Mapping):
        settings = dict(path_or_dict)
        source = "the config"
    else:
        path = Path(path_or_dict)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise CheckpointError(f"no config.json at {path}; pass the Elysium checkpoint directory")
        try:
            settings = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path} is not valid JSON: {error}") from error
        source = str(path)
    if settings.get("model_type") != "elysium":
        raise CheckpointError(
            f"{source} has model_type={settings.get('model_type')!r}, not 'elysium'; for the original Artemis "
            f"(LLaVA layout) use import_artemis_checkpoint"
        )
    for key in ("llm_config", "visual_config", "adapter_config", "projector_config"):
        if not isinstance(settings.get(key), Mapping):
            raise CheckpointError(f"{source} has no {key} section; an ElysiumConfig always writes one")
    return settings


def _vision(settings: Mapping[str, Any], vision_config: Any) -> PreTrainedConfig:
    if vision_config is not None:
        return clip_vision_config(vision_config)
    name = str(settings["visual_config"].get("pretrained_model_name_or_path", ""))
    if name in KNOWN_CLIP_TOWERS:
        return clip_vision_config(KNOWN_CLIP_TOWERS[name])
    if name and Path(name).expanduser().is_dir():  # the original also accepts a local tower directory
        return clip_vision_config(Path(name).expanduser())
    raise ConfigError(
        f"visual_config.pretrained_model_name_or_path={name!r} is not a known CLIP tower "
        f"({', '.join(KNOWN_CLIP_TOWERS)}) nor a local directory; pass vision_config= (a CLIPVisionConfig, a "
        f"dict or a local CLIP directory)"
    )


def _text(settings: Mapping[str, Any], llm_dir: Path | None) -> dict[str, Any]:
    if llm_dir is not None and (llm_dir / "config.json").is_file():
        text = LlamaConfig.from_pretrained(llm_dir, local_files_only=True).to_dict()
    else:
        name = str(settings["llm_config"].get("pretrained_model_name_or_path", ""))
        if name not in KNOWN_LLMS:
            where = f"{llm_dir} has no config.json" if llm_dir is not None else "no llm_dir was given"
            raise ConfigError(
                f"llm_config.pretrained_model_name_or_path={name!r} is not a known LLM ({', '.join(KNOWN_LLMS)}) "
                f"and {where}; pass llm_dir= a local copy of that LLM (its config.json and tokenizer)"
            )
        text = dict(KNOWN_LLMS[name])
    text["model_type"] = "llama"
    written = settings.get("hidden_size")  # ElysiumForCausalLM._setup_llm copies the LLM's width here
    if written is not None and written != text["hidden_size"]:
        raise ConfigError(
            f"the Elysium config says hidden_size={written} but the LLM config is {text['hidden_size']} wide; "
            f"llm_dir must hold the LLM the checkpoint was trained on"
        )
    return text


def config_from_elysium(
    path_or_dict: str | Path | Mapping[str, Any],
    *,
    vision_config: PreTrainedConfig | Mapping[str, Any] | str | Path | None = None,
    llm_dir: str | Path | None = None,
    **overrides: Any,
) -> ArtemisConfig:
    """An :class:`ArtemisConfig` for an Elysium ``config.json``.

    Args:
        path_or_dict: the Elysium ``config.json``, its directory, or the loaded dict.
        vision_config: the vision tower's config; default: looked up by ``visual_config``'s name in
            :data:`KNOWN_CLIP_TOWERS` (or read from it when it names a local directory).
        llm_dir: a local copy of the LLM; its ``config.json`` gives the Llama shape (default: the shape of
            the LLM named in ``llm_config`` from :data:`KNOWN_LLMS`).
        overrides: :class:`ArtemisConfig` fields to set on top (the tests shrink the region encoder).

    Raises:
        CheckpointError: not an Elysium config. ConfigError: a projector other than ``mlp2x_gelu``, an
            adapter whose sizes do not fit the tower, an unknown tower or LLM.
    """
    settings = read_elysium_config(path_or_dict)
    projector = settings["projector_config"].get("type", "linear")  # build_projector's default
    if projector != "mlp2x_gelu":
        raise ConfigError(
            f"projector_config.type={projector!r} is not supported; the release uses 'mlp2x_gelu' (Linear, GELU, "
            f"Linear), the only projector ArtemisForConditionalGeneration has"
        )
    vision = _vision(settings, vision_config)
    text = _text(settings, Path(llm_dir).expanduser() if llm_dir is not None else None)
    adapter = settings["adapter_config"]
    side = vision.image_size // vision.patch_size
    # RanTSelecor's defaults, for keys a config leaves out.
    channels, cells, keep = (int(adapter.get(k, d)) for k, d in (("num_features", 1408), ("in_token_num", 576),
                                                                  ("out_token_num", 144)))  # fmt: skip
    if channels != vision.hidden_size:
        raise ConfigError(
            f"adapter_config.num_features={channels} but the vision tower is {vision.hidden_size} wide; pass the "
            f"vision_config of the tower the checkpoint was trained with"
        )
    if cells != side * side:
        raise ConfigError(
            f"adapter_config.in_token_num={cells} but the vision tower gives {side}x{side}={side * side} patches "
            f"per frame (image_size {vision.image_size} / patch_size {vision.patch_size}); the T-Selector scores "
            f"every patch, so they must agree"
        )
    vocab_size = int(text.get("vocab_size", 32000))
    config = {
        "vision_config": vision.to_dict(),
        "text_config": text,
        "num_frames": CLIP_LEN,
        "video_layout": "frames",
        "frame_tokens": "select",
        "frame_select_grid": side,
        "frame_select_tokens": keep,
        # The release picks by argsort: no gradient reaches its adapter.
        "frame_select_gradient": "none",
        "vision_feature_layer": -2,  # ClipVisionTransformer.forward: hidden_states[-2][:, 1:]
        # <image> was the sentinel id -200, never a vocabulary entry: the importer adds <video>/<region>
        # after the vocabulary and sets these ids from the tokenizer.
        "video_token_id": vocab_size,
        "region_token_id": vocab_size + 1,
        # Elysium tracks (SOT/RSOT: boxes out) and describes a boxed object (Video-REG).
        "tasks": ["describe", "boxes"],
    }
    config.update(overrides)
    return ArtemisConfig(**config)


# --- the importer ------------------------------------------------------------------------------------


def map_elysium_state(
    tensors: Mapping[str, torch.Tensor], source: str
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Rename a release state dict: ``(ours -> tensor, ours -> Elysium name, ignored Elysium names)``.

    Raises:
        CheckpointError: keys that match no rule of :data:`ELYSIUM_RULES` and no ignore pattern, listed.
    """
    mapped: dict[str, torch.Tensor] = {}
    originals: dict[str, str] = {}
    ignored: list[str] = []
    unmapped: list[str] = []
    for name, tensor in tensors.items():
        if is_ignored(name, ELYSIUM_IGNORED):
            ignored.append(name)
            continue
        ours = map_name(name, ELYSIUM_RULES)
        if ours is None:
            unmapped.append(name)
        else:
            mapped[ours] = tensor
            originals[ours] = name
    if unmapped:
        raise CheckpointError(
            f"{len(unmapped)} tensors of {source} have no rule in the Elysium name map: {sorted(unmapped)[:20]}; "
            f"see docs/checkpoints.md (Elysium) for the layout artemis imports"
        )
    return mapped, originals, ignored


def _check_shapes(
    state: Mapping[str, torch.Tensor], originals: Mapping[str, str], expected: Mapping[str, torch.Tensor], source: str
) -> None:
    unexpected = sorted(f"{originals[key]} -> {key}" for key in state if key not in expected)
    if unexpected:
        raise CheckpointError(
            f"{len(unexpected)} tensors of {source} have no parameter in the model built from its config: "
            f"{unexpected[:20]}; check the LLM and vision configs (llm_dir, vision_config)"
        )
    mismatched = [
        f"{originals[key]} -> {key}: checkpoint {tuple(tensor.shape)}, model {tuple(expected[key].shape)}"
        for key, tensor in state.items()
        if tuple(tensor.shape) != tuple(expected[key].shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"shape mismatch for {len(mismatched)} tensors of {source}: {mismatched[:10]}; the LLM or vision "
            f"config (llm_dir/config.json, vision_config) does not describe these weights"
        )
    # The release has no region encoder: that part alone may be absent.
    missing = sorted(key for key in expected if key not in state and not key.startswith("region_encoder."))
    if missing:
        raise CheckpointError(
            f"{len(missing)} model parameters are in no tensor of {source}: {missing[:20]}; the checkpoint is "
            f"incomplete (a missing shard?) or not an Elysium release"
        )


def _log_selection(state: Mapping[str, torch.Tensor], keep: int) -> None:
    """Say when the T-Selector cannot depend on the frame: its mixing matrix is zero (its initial value,
    which the release's argsort never lets a gradient change), so the kept cells are those with the
    largest ``trans_bias``."""
    weight = state.get("frame_selector.trans_weight")
    if weight is not None and not bool(weight.any()):
        cells = state["frame_selector.trans_bias"].float().topk(keep).indices.sort().values
        logger.info(
            "adapter.trans_weight is all zeros: the T-Selector keeps the same %d cells on every frame (%s ...)",
            keep,
            cells[:8].tolist(),
        )


def import_elysium_checkpoint(
    checkpoint_dir: str | Path,
    *,
    llm_dir: str | Path,
    vision_config: PreTrainedConfig | Mapping[str, Any] | str | Path | None = None,
    out_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    config_overrides: Mapping[str, Any] | None = None,
) -> ImportedCheckpoint:
    """Import the Elysium release, offline, as an artemis model and its processor.

    Args:
        checkpoint_dir: the release directory (``config.json`` with ``model_type: elysium``, and
            ``model.safetensors.index.json`` with its shards, or one ``model.safetensors``).
        llm_dir: a local copy of the LLM the config names (lmsys/vicuna-7b-v1.5): its tokenizer (the
            release has none) and its ``config.json``; its weights are not read.
        vision_config: the vision tower's shape when the config's tower name is not a known CLIP.
        out_dir: if given, the imported model is saved there (safetensors, config, tokenizer, processor).
        dtype: weights dtype of the returned model (the release is bf16; float32 by default).
        config_overrides: :class:`ArtemisConfig` fields to set on top of the imported config.

    Returns:
        An :class:`ImportedCheckpoint`; ``ArtemisModel(imported.model, imported.processor)`` tracks
        (``track_with_llm``) and grounds with it.
    """
    checkpoint = Path(checkpoint_dir).expanduser()
    if not checkpoint.is_dir():
        raise CheckpointError(f"checkpoint_dir={str(checkpoint_dir)!r} is not a directory")
    llm = Path(llm_dir).expanduser()
    if not llm.is_dir():
        raise CheckpointError(
            f"llm_dir={str(llm_dir)!r} is not a directory; pass a local copy of the LLM the release names "
            f"(lmsys/vicuna-7b-v1.5), whose tokenizer the release does not ship"
        )
    config = config_from_elysium(checkpoint, vision_config=vision_config, llm_dir=llm, **(config_overrides or {}))
    state, originals, ignored = map_elysium_state(read_state_dict(checkpoint), str(checkpoint))
    if ignored:
        logger.info("ignored %d release tensors with no use in its forward: %s", len(ignored), sorted(ignored)[:4])
    model = ArtemisForConditionalGeneration(config)
    _check_shapes(state, originals, model.state_dict(), str(checkpoint))
    _log_selection(state, config.frame_select_tokens)
    result = model.load_state_dict(state, strict=False)
    logger.warning(
        "the Elysium release has no region encoder: region_encoder (%d tensors) keeps its initialisation, so "
        "questions about <region> tokens are not what the release was trained on",
        len(result.missing_keys),
    )
    model = model.to(dtype).eval()
    tokenizer = prepare_tokenizer(llm, model)
    imported = ImportedCheckpoint(model, ArtemisProcessor.from_config(model.config, tokenizer))
    if out_dir is not None:
        imported.save_pretrained(out_dir)
        logger.info("saved the imported model to %s", out_dir)
    return imported


# --- the release's own prompt ids ------------------------------------------------------------------


def elysium_prompt_ids(
    tokenizer: PreTrainedTokenizerBase, question: str, num_frames: int, tokens_per_frame: int, video_token_id: int
) -> list[int]:
    """The prompt ids the release feeds its LLM for one clip, with our ``<video>`` id in each frame's slots.

    The release renders ``system + "USER: " + "Frame 1: <image>, ..., Frame n: <image>\\n" + question +
    "ASSISTANT:"`` (``VQAProcessor``; no space before ``ASSISTANT:``), splits it at each ``<image>`` and
    encodes every chunk with the tokenizer's own BOS (``tokenizer_vision_placeholder``), so the LLM sees
    ``n + 1`` BOS tokens. Our processor builds one BOS and a space before ``ASSISTANT:``; these ids let an
    imported model be prompted exactly as released (``model.generate(input_ids=..., pixel_values=...)``).

    Args:
        question: the question as the release words it, boxes already written as text.
        num_frames: frames of the clip; with fewer than the model's ``num_frames`` the ids do not fill
            its video slots (the release has no padding frames), so pass a full clip.
    """
    user, assistant = VICUNA_V1.roles
    text = f"{VICUNA_V1.system} {user}: {elysium_frames_prefix(num_frames)}{question}{assistant}:"
    chunks: Sequence[str] = text.split(IMAGE_TOKEN)
    ids: list[int] = []
    for index, chunk in enumerate(chunks):
        if index:
            ids += [video_token_id] * tokens_per_frame
        ids += tokenizer.encode(chunk)  # with BOS, as the release's slow Llama tokenizer adds it
    return ids
