"""Ordered targets on box numbers (``train.box_label_sigma``): a near miss costs less than a far one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.number_loss import BOX_VALUES, number_targets, number_token_ids, ordered_number_loss
from artemis.model.tokenizer import build_word_tokenizer


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(["a red circle moves"], video_layout="frames", tasks=["boxes"])


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())


def test_the_tiny_tokenizer_writes_every_box_number_as_one_token(tiny) -> None:
    _, processor = tiny
    ids = number_token_ids(processor.tokenizer)
    assert ids is not None and len(set(ids)) == BOX_VALUES
    assert [processor.tokenizer.decode([i]) for i in ids] == [str(v) for v in range(BOX_VALUES)]


def test_a_tokenizer_without_the_numbers_has_no_number_ids() -> None:
    assert number_token_ids(build_word_tokenizer(["a red circle", "1 2 3"])) is None


def test_targets_are_a_gaussian_over_the_number_tokens_only(tiny) -> None:
    _, processor = tiny
    ids = number_token_ids(processor.tokenizer)
    vocab = len(processor.tokenizer)
    targets = number_targets(ids, vocab, sigma=2.0)
    assert targets.shape == (BOX_VALUES, vocab)
    assert torch.allclose(targets.sum(1), torch.ones(BOX_VALUES))
    others = torch.ones(vocab, dtype=torch.bool)
    others[ids] = False
    assert targets[:, others].abs().max() == 0
    row = targets[50, ids]
    assert row.argmax() == 50 and row[49] == row[51] and row[48] < row[49]
    assert torch.isclose(row[51] / row[50], torch.exp(torch.tensor(-1 / 8)))


def test_without_number_labels_or_at_a_tiny_width_it_is_the_usual_cross_entropy(tiny) -> None:
    _, processor = tiny
    ids = number_token_ids(processor.tokenizer)
    vocab = len(processor.tokenizer)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 12, vocab, generator=generator)
    words = torch.full((2, 12), -100)
    words[:, 4:9] = torch.tensor(processor.tokenizer("a red circle moves a", add_special_tokens=False)["input_ids"])
    assert torch.isclose(ordered_number_loss(logits, words, ids, 3.0), _cross_entropy(logits, words))
    numbers = torch.full((2, 12), -100)
    numbers[0, 2:7] = torch.tensor(ids[10:15])
    numbers[1, 5:11] = torch.tensor([ids[0], ids[100], *ids[40:44]])
    assert torch.isclose(ordered_number_loss(logits, numbers, ids, 1e-3), _cross_entropy(logits, numbers))
    summed = ordered_number_loss(logits, numbers, ids, 1e-3, num_items_in_batch=4)
    assert torch.isclose(summed, _cross_entropy(logits, numbers) * 11 / 4)


def test_a_near_miss_costs_less_than_a_far_one_where_cross_entropy_cannot_tell(tiny) -> None:
    _, processor = tiny
    ids = number_token_ids(processor.tokenizer)
    vocab = len(processor.tokenizer)
    labels = torch.full((1, 3), -100)
    labels[0, 1] = ids[50]
    losses = {}
    for guess in (51, 70):
        logits = torch.zeros(1, 3, vocab)
        logits[0, 0, ids[guess]] = 8.0  # sure of the wrong number
        plain = _cross_entropy(logits, labels)
        losses[guess] = (plain, ordered_number_loss(logits, labels, ids, 2.0))
    assert torch.isclose(losses[51][0], losses[70][0])  # one-hot: both misses are alike
    assert losses[51][1] < losses[70][1] - 1.0
    logits = torch.zeros(1, 3, vocab, requires_grad=True)
    ordered_number_loss(logits, labels, ids, 2.0).backward()
    pull = -logits.grad[0, 0]
    assert pull[ids[50]] > pull[ids[51]] > pull[ids[53]] > 0  # raises the label most, its neighbours less
    assert pull[ids[70]] < 0


def test_the_model_applies_it_in_training_only(tiny) -> None:
    model, processor = tiny
    ids = number_token_ids(processor.tokenizer)
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 255, (8, 64, 64, 3), dtype=torch.uint8, generator=generator).numpy()
    boxes = torch.tensor([[0.1 + 0.02 * t, 0.2, 0.4 + 0.02 * t, 0.5] for t in range(8)]).numpy() * 64
    batch = processor.collate([processor.box_output_item(frames, box=boxes[0], answer_boxes=boxes)])
    torch.manual_seed(0)
    model.train()
    try:
        plain = model(**batch).loss
        model.set_box_label_sigma(2.0, ids)
        ordered = model(**batch).loss
        model.eval()
        evaluated = model(**batch)
        assert torch.isclose(evaluated.loss, plain, atol=1e-5)  # not at evaluation
        expected = ordered_number_loss(evaluated.logits, batch["labels"], ids, 2.0)
        assert torch.isclose(ordered, expected, atol=1e-5) and not torch.isclose(ordered, plain)
        model.train()
        model.set_box_label_sigma(1e-3, ids)
        assert torch.isclose(model(**batch).loss, plain, atol=1e-4)
    finally:
        model.set_box_label_sigma(0, None)
        model.eval()
    with pytest.raises(ConfigError, match="box_label_sigma=-1 is not valid"):
        model.set_box_label_sigma(-1, ids)
    with pytest.raises(ConfigError, match=r"writes each number 0\.\.100 as one token"):
        model.set_box_label_sigma(1.5, None)
