"""The Artemis architecture as a Hugging Face model, its processor, loading, generation and importers.

Importing this package registers ``model_type="artemis"`` with transformers' Auto classes, so
``AutoConfig``, ``AutoProcessor`` and ``AutoModelForImageTextToText`` ``.from_pretrained(dir)`` load our
checkpoints.
"""

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from artemis.model.configuration import CAPABILITIES, ArtemisConfig, tiny_config
from artemis.model.generation import generate, stream
from artemis.model.loading import ModelCard, load_model, load_pretrained, read_model_card, resolve_model_dir
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.model.tiny import build_tiny_model
from artemis.model.video_processing import VideoProcessor

AutoConfig.register(ArtemisConfig.model_type, ArtemisConfig, exist_ok=True)
AutoModelForImageTextToText.register(ArtemisConfig, ArtemisForConditionalGeneration, exist_ok=True)
AutoProcessor.register(ArtemisConfig, ArtemisProcessor, exist_ok=True)

__all__ = [
    "CAPABILITIES",
    "ArtemisConfig",
    "ArtemisForConditionalGeneration",
    "ArtemisProcessor",
    "ModelCard",
    "VideoProcessor",
    "build_tiny_model",
    "generate",
    "load_model",
    "load_pretrained",
    "read_model_card",
    "resolve_model_dir",
    "stream",
    "tiny_config",
]
