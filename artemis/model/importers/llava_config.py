"""Read a LLaVA-format ``config.json`` (LLaVA-1.5, the original Artemis) into an :class:`ArtemisConfig`.

A LLaVA config is a Llama config with ``mm_*`` keys added. The vision tower is named, not described
(``"openai/clip-vit-large-patch14"``), and artemis never downloads, so known CLIP names map to their shape
through :data:`KNOWN_CLIP_TOWERS`; any other tower is described by passing ``vision_config`` (or by naming a
local CLIP directory, whose ``config.json`` is read).

The original Artemis adds ``mm_image_tower`` (its name for ``mm_vision_tower``), ``mm_spi_model`` (the
region module is present), ``k_means`` (the k-means selector is on only when this is set and true; without
it every tracked token reaches the LLM) and, when they were written, ``kmeans_n_clusters``,
``kmeans_max_iter``, ``num_levels`` / ``num_level_spi_features``. Imported configs select with
``selector_padding="original"``, the original's way of filling slots k-means leaves empty. Settings the
original hard-coded rather than configured (RoIAlign 14 / 2, 5 fuse rounds, 64 GroupNorm groups, the
1024-wide RoI feature, 100 frames, 8 tracked boxes) are :class:`ArtemisConfig`'s defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import CLIPVisionConfig, PreTrainedConfig

from artemis.errors import ConfigError
from artemis.model.configuration import CLIP_VIT_L14_224, ArtemisConfig

# OpenAI CLIP vision towers by hub name: CLIPVisionConfig fields (the rest are CLIPVisionConfig's
# defaults, which are these models' values: quick_gelu, layer_norm_eps 1e-5, 3 channels).
KNOWN_CLIP_TOWERS: dict[str, dict[str, int]] = {
    "openai/clip-vit-large-patch14": CLIP_VIT_L14_224,
    "openai/clip-vit-large-patch14-336": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
    },
    "openai/clip-vit-base-patch16": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 16,
        "projection_dim": 512,
    },
    "openai/clip-vit-base-patch32": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 32,
        "projection_dim": 512,
    },
}

# Llama fields copied from the top level of a LLaVA config into ``text_config``.
LLAMA_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "attention_bias",
    "mlp_bias",
    "initializer_range",
    "pretraining_tp",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "tie_word_embeddings",
)
LLAVA_MODEL_TYPES = ("llava", "llava_llama")
TOWER_KEYS = ("mm_image_tower", "mm_vision_tower")  # Artemis' name first, then LLaVA's


def read_llava_config(path_or_dict: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The LLaVA config as a dict: from a mapping, a ``config.json`` file, or a directory holding one."""
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict)
    path = Path(path_or_dict)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"no LLaVA config at {path}; pass a config.json file, its directory, or a dict")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error


def tower_name(llava: Mapping[str, Any]) -> str | None:
    """The vision tower named by ``mm_image_tower`` (Artemis) or ``mm_vision_tower`` (LLaVA)."""
    names = {key: llava[key] for key in TOWER_KEYS if llava.get(key)}
    if len(set(names.values())) > 1:
        raise ConfigError(f"the config names two different vision towers {names}; keep one of {TOWER_KEYS}")
    return next(iter(names.values()), None)


def clip_vision_config(source: str | Path | Mapping[str, Any] | PreTrainedConfig) -> CLIPVisionConfig:
    """A ``CLIPVisionConfig`` from a config object, a dict, a local CLIP directory or ``config.json``.

    A full ``CLIPModel`` config (``model_type == "clip"``) gives its ``vision_config``.
    """
    if isinstance(source, PreTrainedConfig):
        source = source.to_dict()
    if not isinstance(source, Mapping):
        path = Path(source)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"no CLIP config.json at {path}; pass a local CLIP directory")
        source = json.loads(path.read_text())
    settings = dict(source)
    if settings.get("model_type") == "clip" or "vision_config" in settings:
        settings = dict(settings.get("vision_config") or {})
    settings.pop("model_type", None)
    return CLIPVisionConfig(**settings)


def _resolve_vision(llava: Mapping[str, Any], vision_config: Any) -> CLIPVisionConfig:
    if vision_config is not None:
        return clip_vision_config(vision_config)
    name = tower_name(llava)
    if name is None:
        raise ConfigError(
            f"the config names no vision tower (none of {TOWER_KEYS}); pass vision_config= (a CLIPVisionConfig, "
            f"a dict, or a local CLIP directory)"
        )
    if name in KNOWN_CLIP_TOWERS:
        return CLIPVisionConfig(**KNOWN_CLIP_TOWERS[name])
    if Path(name).expanduser().is_dir():  # a local tower directory, as LLaVA also accepts
        return clip_vision_config(Path(name).expanduser())
    known = ", ".join(KNOWN_CLIP_TOWERS)
    key = next(key for key in TOWER_KEYS if llava.get(key))
    raise ConfigError(
        f"{key}={name!r} is not a known CLIP tower ({known}) nor a local directory; pass "
        f"vision_config= with its CLIPVisionConfig (or the path of a local copy of the tower), since artemis "
        f"never downloads"
    )


def region_layers(select_layer: int, num_hidden_states: int, num_levels: int) -> list[int]:
    """The original's region levels, finest (largest map) first, as negative hidden-state indices.

    The original takes ``hidden_states[select_layer::-3]``, reverses it and keeps the last ``num_levels``:
    for ``select_layer=-2`` on CLIP-L that is ``[-11, -8, -5, -2]``, and level 0 (layer -11) is resized to
    the largest map (8x the patch grid). Our ``region_feature_layers`` use the same order, so the original's
    fuse/conv index ``i`` is our index ``i``.
    """
    start = select_layer % num_hidden_states
    levels = list(range(start, -1, -3))[::-1][-num_levels:]
    return [level - num_hidden_states for level in levels]


def config_from_llava(
    path_or_dict: str | Path | Mapping[str, Any],
    *,
    vision_config: CLIPVisionConfig | Mapping[str, Any] | str | Path | None = None,
    **overrides: Any,
) -> ArtemisConfig:
    """An :class:`ArtemisConfig` for a LLaVA-format config (LLaVA-1.5, the original Artemis).

    Args:
        path_or_dict: a ``config.json``, its directory, or the loaded dict.
        vision_config: the vision tower's config (a ``CLIPVisionConfig``, a dict, or a local CLIP
            directory). Default: looked up by the ``mm_image_tower`` / ``mm_vision_tower`` name in
            :data:`KNOWN_CLIP_TOWERS`.
        overrides: :class:`ArtemisConfig` fields to set, e.g. the sizes of a region module that the original
            hard-coded (``region_hidden_size``, ``roi_output_size``...) when they differ from its defaults.

    Raises:
        ConfigError: an unknown tower name, a projector other than ``mlp2x_gelu``, a feature selection
            other than ``patch``, start/end image tokens, or ``mm_hidden_size`` different from the tower width.
    """
    llava = read_llava_config(path_or_dict)
    model_type = llava.get("model_type", "llava")
    if model_type not in LLAVA_MODEL_TYPES:
        raise ConfigError(
            f"model_type={model_type!r} is not a LLaVA-Llama config ({', '.join(LLAVA_MODEL_TYPES)}); only "
            f"Llama-based LLaVA checkpoints can be imported"
        )
    projector = llava.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ConfigError(
            f"mm_projector_type={projector!r} is not supported; Artemis and LLaVA-1.5 use 'mlp2x_gelu' "
            f"(Linear, GELU, Linear), the only projector ArtemisForConditionalGeneration has"
        )
    feature = llava.get("mm_vision_select_feature", "patch")
    if feature != "patch":
        raise ConfigError(f"mm_vision_select_feature={feature!r} is not supported; only 'patch' (CLS token dropped) is")
    if llava.get("mm_use_im_start_end"):
        raise ConfigError(
            "mm_use_im_start_end=true is not supported: artemis has no <im_start>/<im_end> tokens around the "
            "video features (Artemis and LLaVA-1.5 train without them)"
        )

    vision = _resolve_vision(llava, vision_config)
    mm_hidden = llava.get("mm_hidden_size")
    if mm_hidden is not None and mm_hidden != vision.hidden_size:
        raise ConfigError(
            f"mm_hidden_size={mm_hidden} but the vision tower is {vision.hidden_size} wide; pass the "
            f"vision_config of the tower the checkpoint was trained with"
        )

    text = {key: llava[key] for key in LLAMA_KEYS if key in llava}
    if text.get("rope_scaling") is None:
        text.pop("rope_scaling", None)
    text["model_type"] = "llama"
    text.setdefault("tie_word_embeddings", False)
    vocab_size = text.get("vocab_size", 32000)

    num_hidden_states = vision.num_hidden_layers + 1
    select_layer = int(llava.get("mm_vision_select_layer", -2))
    levels = int(llava.get("num_levels", llava.get("num_level_spi_features", 4)))
    if llava.get("num_level_spi_features", levels) != levels:
        raise ConfigError(
            f"num_levels={levels} (region module) differs from num_level_spi_features="
            f"{llava['num_level_spi_features']} (vision tower levels); the original needs them equal"
        )
    settings: dict[str, Any] = {
        "vision_config": vision.to_dict(),
        "text_config": text,
        "vision_feature_layer": select_layer,
        "region_feature_layers": region_layers(select_layer, num_hidden_states, levels),
        # The original's sentinel ids (-200, -500) were never vocabulary entries; the importer adds
        # <video>/<region> after the vocabulary and sets these ids from the tokenizer.
        "video_token_id": vocab_size,
        "region_token_id": vocab_size + 1,
        # The original embeds the absolute box only: keep it, its weights expect 4 inputs.
        "box_embedding": "absolute",
    }
    # The original builds its k-means module only when ``k_means`` is set and true
    # (``LlavaMetaModel.__init__``); without it every tracked token goes to the LLM, in time order.
    settings["selector"] = "kmeans" if llava.get("k_means") else "all"
    # The original fills slots k-means leaves empty in label order, then sorts by time.
    settings["selector_padding"] = "original"
    if "kmeans_n_clusters" in llava:
        settings["num_selected"] = int(llava["kmeans_n_clusters"])
    if "kmeans_max_iter" in llava:
        settings["kmeans_max_iter"] = int(llava["kmeans_max_iter"])
    if "num_trackbox" in llava:
        settings["num_track_boxes"] = int(llava["num_trackbox"])
    settings.update(overrides)
    return ArtemisConfig(**settings)


def has_region_module(llava: Mapping[str, Any]) -> bool:
    """Whether the original model had a region module (``mm_spi_model``); plain LLaVA has none."""
    return bool(llava.get("mm_spi_model"))
