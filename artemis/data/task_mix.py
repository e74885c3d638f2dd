"""``TaskMix``: the referring dataset and the box-output (SOT / RSOT) datasets side by side, for one ``Trainer``.

A stage that trains several tasks gives each annotation file a task (``describe``, ``sot`` or ``rsot``)
and a weight. The referring files make one :class:`~artemis.data.referring_dataset.ReferringDataset`,
which applies its files' weights itself; each box-output file makes a
:class:`~artemis.data.box_output_dataset.BoxOutDataset` whose weight is applied here the same way: an epoch
draws ``round(weight * clips)`` of its clips, every clip ``floor(weight)`` times and a fresh random
choice of the rest each epoch. The ``Trainer``'s sampler shuffles the whole, so a batch mixes tasks, and
:class:`~artemis.data.collator.ArtemisCollator` pads items without regions beside items with them.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from artemis.data.box_output_dataset import BoxOutDataset
from artemis.data.referring_dataset import ReferringDataset, weighted_draw
from artemis.errors import ConfigError
from artemis.model.configuration import ArtemisConfig

__all__ = ["MixEntry", "TaskMix"]


@dataclass(frozen=True)
class MixEntry:
    """Where item ``index`` of an epoch comes from: its ``task`` and a ``key`` naming the record (and clip)."""

    task: str
    key: str


class TaskMix(Dataset):
    """Items of a referring dataset and of box-output datasets, in one map-style dataset.

    Args:
        config: the model's config (the collator's).
        referring: the ``describe`` part, or None.
        box_parts: ``[(dataset, weight), ...]``, one per box-output file.
        seed: base of the per-epoch draws of the box-output clips.

    Attributes:
        epoch: the epoch the items are drawn for (:meth:`set_epoch`).
    """

    def __init__(
        self,
        config: ArtemisConfig,
        referring: ReferringDataset | None,
        box_parts: Sequence[tuple[BoxOutDataset, float]],
        *,
        seed: int = 0,
    ) -> None:
        if referring is None and not box_parts:
            raise ConfigError("a task mix needs at least one dataset (describe, sot or rsot)")
        for _dataset, weight in box_parts:
            if weight < 0:
                raise ConfigError(f"a box-output file has weight {weight}; expected a number >= 0")
        self.config = config
        self.referring = referring
        self.box_parts = list(box_parts)
        self.seed = int(seed)
        self.epoch = 0
        self._draw(0)

    def _draw(self, epoch: int) -> None:
        self._orders: list[np.ndarray] = []
        for part, (dataset, weight) in enumerate(self.box_parts):
            rng = np.random.default_rng([self.seed, epoch, 0x626F78, part])
            self._orders.append(weighted_draw(np.arange(len(dataset)), weight, rng))
        sizes = [len(self.referring) if self.referring is not None else 0] + [len(o) for o in self._orders]
        self._ends = np.cumsum(sizes).tolist()  # item i belongs to the first part whose end exceeds i

    def set_epoch(self, epoch: int) -> None:
        """Draw the items of ``epoch`` in every part (jitter, paraphrases, mixing)."""
        self.epoch = int(epoch)
        if self.referring is not None:
            self.referring.set_epoch(epoch)
        for dataset, _weight in self.box_parts:
            dataset.set_epoch(epoch)
        self._draw(self.epoch)

    def __len__(self) -> int:
        return self._ends[-1]

    def _locate(self, index: int) -> tuple[int, int]:
        """``(part, local index)``; part 0 is the referring dataset, part ``p + 1`` the ``p``-th box file."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} of a task mix of {len(self)}")
        part = bisect.bisect_right(self._ends, index)
        local = index - (self._ends[part - 1] if part else 0)
        return part, local if part == 0 else int(self._orders[part - 1][local])

    def entry(self, index: int) -> MixEntry:
        """The task and record behind item ``index`` of the current epoch."""
        part, local = self._locate(index)
        if part == 0:
            return MixEntry("describe", self.referring.entry(local).key)  # type: ignore[union-attr]
        dataset = self.box_parts[part - 1][0]
        return MixEntry(dataset.clips[local].task, dataset.clip_key(local))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        part, local = self._locate(index)
        if part == 0:
            return self.referring[local]  # type: ignore[index]
        return self.box_parts[part - 1][0][local]

    def counts(self) -> dict[str, int]:
        """Items per task in the current epoch."""
        counts = {"describe": len(self.referring) if self.referring is not None else 0}
        for (dataset, _weight), order in zip(self.box_parts, self._orders, strict=True):
            for task in dataset.tasks:
                counts[task] = counts.get(task, 0) + sum(dataset.clips[i].task == task for i in order)
        return {task: count for task, count in counts.items() if count}

    @property
    def skipped(self) -> list[Any]:
        """The errors of the records skipped in every part (``bad_records="skip"``)."""
        parts = [self.referring] if self.referring is not None else []
        parts += [dataset for dataset, _weight in self.box_parts]
        return [error for dataset in parts for error in dataset.skipped]
