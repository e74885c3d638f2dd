"""Loading a checkpoint: a local directory or a bundled model name to ``(model, processor)``.

Every failure is a :class:`~artemis.errors.CheckpointError` with one line that names the file and the
fix: no config, a config that is not artemis', weights that do not fit the config, a truncated or
corrupt ``model.safetensors``. Nothing is ever downloaded.

A checkpoint may carry a model card (``README.md`` with a YAML front matter, the Hugging Face
convention); :func:`read_model_card` gives its ``name`` and ``summary`` (what the model was trained on),
which the API and the CLI report once when they load it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open

from artemis.errors import CheckpointError, ConfigError
from artemis.model.configuration import ArtemisConfig
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor

logger = logging.getLogger(__name__)

BUNDLED_MODELS_DIR = Path(__file__).resolve().parents[1] / "assets"
"""Where the models shipped in the package live (``artemis/assets/<name>``)."""
DEFAULT_MODEL = "synthref-tiny"
DEFAULT_BOX_MODEL = "synthref-tiny-boxes"
"""The bundled model that writes boxes (SOT/RSOT), the default of ``artemis ground`` and ``track --by-model``."""
MODEL_CARD_FILE = "README.md"


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint says about itself: a short ``name``, a one-line ``summary`` of what it was trained
    on, and a ``caveat`` the API and CLI show once when it is loaded (e.g. "knows only synthetic shapes")."""

    name: str
    summary: str | None = None
    caveat: str | None = None

    def describe(self) -> str:
        """One line: the name, then the summary and the caveat where the card has them."""
        return " — ".join(part for part in (self.name, self.summary, self.caveat) if part)


def bundled_models() -> list[str]:
    """Names of the models shipped in the package."""
    return sorted(path.name for path in BUNDLED_MODELS_DIR.iterdir() if (path / "config.json").exists())


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A local checkpoint directory, or the name of a model shipped in the package."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    bundled = BUNDLED_MODELS_DIR / str(name_or_path)
    if bundled.is_dir():
        return bundled
    raise CheckpointError(
        f"model {str(name_or_path)!r} is neither a local directory nor a bundled model "
        f"({', '.join(bundled_models())}); pass the directory written by save_pretrained (artemis never downloads "
        f"weights)"
    )


def read_model_card(directory: str | Path) -> ModelCard:
    """The card of a checkpoint; without a ``README.md`` front matter, the directory's name alone."""
    directory = Path(directory)
    path = directory / MODEL_CARD_FILE
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if text.startswith("---\n") and "\n---" in text[4:]:
            try:
                meta = yaml.safe_load(text[4 : text.index("\n---", 4)]) or {}
            except yaml.YAMLError:
                meta = {}
            if isinstance(meta, dict):
                text_of = {key: None if meta.get(key) is None else str(meta[key]) for key in ("summary", "caveat")}
                return ModelCard(str(meta.get("name") or directory.name), **text_of)
    return ModelCard(directory.name)


def load_config(directory: str | Path) -> ArtemisConfig:
    """The :class:`ArtemisConfig` saved in ``directory``."""
    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise CheckpointError(f"{directory} has no config.json; pass a directory written by save_pretrained")
    try:
        return ArtemisConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"no Artemis config in {directory}: {str(error)[:300]}") from error


def check_weight_files(directory: str | Path) -> None:
    """Open every ``*.safetensors`` file's header and the end of its data, so a truncated or corrupt file
    is one clear error before transformers reads it."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory} has no *.safetensors weights; pass a directory written by save_pretrained")
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                names = list(handle.keys())
                if names:
                    handle.get_slice(names[-1])  # reads the header entry of the last tensor
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({str(error)[:200]}); the file is truncated or "
                f"corrupt: copy or save the checkpoint again"
            ) from None


def load_model(
    directory: str | Path,
    config: ArtemisConfig | None = None,
    dtype: torch.dtype = torch.float32,
    quantization_config: Any = None,
) -> ArtemisForConditionalGeneration:
    """Load weights with a clear error when they are damaged or their shapes do not match the config.

    ``quantization_config`` (a ``BitsAndBytesConfig``) quantises the layers it selects while loading.
    """
    directory = Path(directory)
    config = config if config is not None else load_config(directory)
    check_weight_files(directory)
    try:
        model, info = ArtemisForConditionalGeneration.from_pretrained(
            directory,
            config=config,
            dtype=dtype,
            local_files_only=True,
            output_loading_info=True,
            quantization_config=quantization_config,
        )
    except SafetensorError as error:
        raise CheckpointError(
            f"the weights in {directory} cannot be read ({error}); save the checkpoint again"
        ) from None
    except (RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(
            f"the weights in {directory} do not fit its config ({error.__class__.__name__}: {str(error)[:400]}); "
            f"check that config.json was saved with these weights"
        ) from error
    problems = {key: value for key, value in info.items() if value and key != "unexpected_keys"}
    if problems.get("mismatched_keys") or problems.get("missing_keys"):
        missing = list(problems.get("missing_keys", []))[:5]
        mismatched = [str(item) for item in list(problems.get("mismatched_keys", []))[:5]]
        raise CheckpointError(
            f"the weights in {directory} do not fit its config: missing {missing}, mismatched {mismatched}; "
            f"check that config.json was saved with these weights"
        )
    return model


def load_pretrained(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> tuple[ArtemisForConditionalGeneration, ArtemisProcessor, ModelCard]:
    """``(model, processor, card)`` from a local directory or a bundled model's name, in eval mode."""
    directory = resolve_model_dir(name_or_path)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    config = load_config(directory)
    processor = ArtemisProcessor.from_pretrained(directory, config)
    model = load_model(directory, config, dtype=dtype or torch.float32).to(device).eval()
    return model, processor, read_model_card(directory)


def extend_model(
    model: ArtemisForConditionalGeneration, processor: ArtemisProcessor, changes: dict[str, Any]
) -> tuple[ArtemisForConditionalGeneration, ArtemisProcessor]:
    """A trained model with config fields changed that add modules to it (a relation token, a mask
    embedding, ...): every trained weight is kept and only the new modules start from their initialisation.

    A change that would reshape or drop a trained weight is refused, as it would silently discard training.
    Returns the new model and a processor whose token counts follow the new config.
    """
    unknown = sorted(name for name in changes if not hasattr(model.config, name))
    if unknown:
        raise ConfigError(f"model.config names {unknown}, which are not ArtemisConfig fields; check the spelling")
    config = ArtemisConfig.from_dict({**model.config.to_dict(), **changes})  # validated as config.json is
    extended = ArtemisForConditionalGeneration(config).to(model.dtype)
    extended.generation_config = model.generation_config
    trained = model.state_dict()
    expected = extended.state_dict()
    dropped = sorted(name for name in trained if name not in expected)
    reshaped = sorted(name for name in trained if name in expected and trained[name].shape != expected[name].shape)
    if dropped or reshaped:
        raise ConfigError(
            f"model.config {changes} would drop trained weights {dropped[:5]} or reshape {reshaped[:5]}; on a trained "
            "model (model.base) only fields that add modules can change"
        )
    extended.load_state_dict(trained, strict=False)
    added = sorted({name.rsplit(".", 1)[0] for name in expected if name not in trained})
    logger.warning("model.config %s adds %s, which start from their initialisation", changes, added or "nothing")
    return extended, processor.with_sizes_of(config)
