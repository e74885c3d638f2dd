"""artemis: referential video understanding with multimodal LLMs.

Give a video and a box on a target in any frame; artemis tracks the target, pools target-specific
features and lets an LLaVA-style LLM describe it or answer questions about it.

>>> from artemis import ArtemisModel
>>> model = ArtemisModel.from_pretrained("path/to/checkpoint")  # doctest: +SKIP
>>> model.describe("video.mp4", box=(120, 40, 260, 300), frame_index=30).text  # doctest: +SKIP
"""

__version__ = "0.1.0"

from artemis.api import ArtemisModel, Description
from artemis.model import ArtemisConfig, ArtemisForConditionalGeneration, ArtemisProcessor

__all__ = [
    "ArtemisConfig",
    "ArtemisForConditionalGeneration",
    "ArtemisModel",
    "ArtemisProcessor",
    "Description",
    "__version__",
]
