"""The Artemis architecture as a Hugging Face model, its processor, and importers.

Importing this package registers ``model_type="artemis"`` with transformers' Auto classes, so
``AutoConfig.from_pretrained`` and ``AutoModelForImageTextToText.from_pretrained`` load our checkpoints.
"""

from transformers import AutoConfig, AutoModelForImageTextToText

from artemis.model.configuration import ArtemisConfig, tiny_config
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor, VideoProcessor
from artemis.model.tiny import build_tiny_model

AutoConfig.register(ArtemisConfig.model_type, ArtemisConfig, exist_ok=True)
AutoModelForImageTextToText.register(ArtemisConfig, ArtemisForConditionalGeneration, exist_ok=True)

__all__ = [
    "ArtemisConfig",
    "ArtemisForConditionalGeneration",
    "ArtemisProcessor",
    "VideoProcessor",
    "build_tiny_model",
    "tiny_config",
]
