"""data.group_by_modality_length: every step's batches hold media items only or text-only items only."""

from __future__ import annotations

from artemis.train.runner import ModalityLengthSampler


def test_batches_never_mix_media_and_text() -> None:
    lengths = [5, -3, 7, -9, 2, 11, -4, 6, 8, -1, 3, 12, -6, 4, 10, -2, 9]  # negative: text-only
    sampler = ModalityLengthSampler(lengths, batch_size=2, world_size=2, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))  # every item once
    media = sum(length > 0 for length in lengths)
    full = media - media % 4 + (len(lengths) - media) - (len(lengths) - media) % 4  # the two remainders go last
    assert full == 12
    for start in range(0, full, 4):  # one step: 2 ranks x 2 items
        step = order[start : start + 4]
        assert len({lengths[i] > 0 for i in step}) == 1, step
        assert [abs(lengths[i]) for i in step] == sorted((abs(lengths[i]) for i in step), reverse=True)


def test_order_depends_on_seed_and_epoch_only() -> None:
    lengths = list(range(1, 41))
    first = ModalityLengthSampler(lengths, batch_size=4, world_size=1, seed=0)
    again = ModalityLengthSampler(lengths, batch_size=4, world_size=1, seed=0)
    assert list(first) == list(again)
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
