"""``ArtemisCollator``: a list of dataset items -> one batch for ``ArtemisForConditionalGeneration``.

The padding rules are the processor's (:mod:`artemis.model.collate`), so training batches and the
batches :meth:`artemis.model.ArtemisProcessor.__call__` builds for generation are padded alike; training
pads text on the right.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from artemis.errors import ConfigError
from artemis.model.configuration import ArtemisConfig
from artemis.model.processing import ArtemisProcessor

__all__ = ["ArtemisCollator"]


class ArtemisCollator:
    """Pad and stack items of the referring and box-output datasets (``data_collator=``).

    Args:
        processor: the model's processor (pad id, frame size, region frames).
        config: the model's config; its region frame count must be the processor's.
    """

    def __init__(self, processor: ArtemisProcessor, config: ArtemisConfig) -> None:
        if processor.num_region_frames != config.num_region_frames:
            raise ConfigError(
                f"the processor has {processor.num_region_frames} region frames but the model config "
                f"{config.num_region_frames} (1 + num_track_boxes); build the processor from this config"
            )
        self.processor = processor
        self.config = config

    def __call__(self, items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Collate ``items``; see :func:`artemis.model.collate.collate` for the keys and shapes."""
        return self.processor.collate(items, side="right")
