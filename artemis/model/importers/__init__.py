"""Importers for checkpoints in other layouts: LLaVA-format configs and the original Artemis release.

>>> from artemis.model.importers import config_from_llava, import_artemis_checkpoint
>>> config = config_from_llava("llava-v1.5-13b/config.json")
>>> model = import_artemis_checkpoint("Artemis-7b-ftune", lora_dir="Artemis-7B-lora",
...                                   vision_tower_dir="clip-vit-large-patch14", out_dir="artemis-7b")

See ``docs/checkpoints.md`` for the name map and the token-id mapping.
"""

from artemis.model.importers.artemis_checkpoint import import_artemis_checkpoint, read_state_dict
from artemis.model.importers.llava_config import KNOWN_CLIP_TOWERS, config_from_llava
from artemis.model.importers.names import map_name, original_name

__all__ = [
    "KNOWN_CLIP_TOWERS",
    "config_from_llava",
    "import_artemis_checkpoint",
    "map_name",
    "original_name",
    "read_state_dict",
]
