"""Importers for checkpoints in other layouts: LLaVA-format configs, the original Artemis and Elysium releases.

>>> from artemis.model.importers import config_from_llava, import_artemis_checkpoint
>>> config = config_from_llava("llava-v1.5-13b/config.json")
>>> model = import_artemis_checkpoint("Artemis-7b-ftune", lora_dir="Artemis-7B-lora",
...                                   vision_tower_dir="clip-vit-large-patch14", out_dir="artemis-7b")
>>> model = import_elysium_checkpoint("elysium_7b", llm_dir="vicuna-7b-v1.5", out_dir="elysium-7b")

See ``docs/checkpoints.md`` for the name map and the token-id mapping.
"""

from artemis.model.importers.artemis_checkpoint import ImportedCheckpoint, import_artemis_checkpoint, read_state_dict
from artemis.model.importers.elysium import (
    ELYSIUM_RULES,
    config_from_elysium,
    elysium_prompt_ids,
    import_elysium_checkpoint,
)
from artemis.model.importers.llava_config import KNOWN_CLIP_TOWERS, config_from_llava
from artemis.model.importers.names import map_name, original_name

IMPORTERS = {"artemis": import_artemis_checkpoint, "elysium": import_elysium_checkpoint}
"""The release importers by name; each returns an :class:`ImportedCheckpoint`."""

__all__ = [
    "ELYSIUM_RULES",
    "IMPORTERS",
    "KNOWN_CLIP_TOWERS",
    "ImportedCheckpoint",
    "config_from_elysium",
    "config_from_llava",
    "elysium_prompt_ids",
    "import_artemis_checkpoint",
    "import_elysium_checkpoint",
    "map_name",
    "original_name",
    "read_state_dict",
]
