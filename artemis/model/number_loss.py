"""A language-model loss that knows box numbers are ordered (box output, ours; off by default).

Elysium's boxes are written as words: ``[x1,y1,x2,y2]`` with each value a whole number 0..100. The usual
cross-entropy treats the numbers as unrelated classes: writing 49 where 50 is right costs as much as
writing 90. With a width ``sigma`` > 0 the target of every answer position whose label is one of the
numbers becomes a Gaussian over the 101 number tokens, centred on the label, ``exp(-(v - label)^2 /
(2 sigma^2))`` normalised; every other position keeps its one-hot target. Near misses then cost less than
far ones, and the number embeddings are pushed into order by the loss itself. Greedy decoding still
writes the label where the model has learnt the Gaussian, as its peak is the label.

This needs every number 0..100 to be one token of the tokenizer (artemis' word-level tiny tokenizers;
not a byte-level or digit-splitting one): :func:`number_token_ids` says whether it is. No library offers
label smoothing over an ordered subset of the vocabulary, so it is written here (a log-softmax and a
target matrix).
"""

from __future__ import annotations

import torch
from torch import nn

from artemis.boxes import format_elysium_box

__all__ = ["BOX_VALUES", "number_targets", "number_token_ids", "ordered_number_loss"]

BOX_VALUES = 101
"""The values a box coordinate takes in Elysium's text (0..100)."""


def number_token_ids(tokenizer) -> list[int] | None:
    """The token id of each number 0..100, or None when some number is not one token of ``tokenizer``
    (or is not read as that token inside a written box)."""
    ids = []
    for value in range(BOX_VALUES):
        encoded = tokenizer(str(value), add_special_tokens=False)["input_ids"]
        if len(encoded) != 1 or encoded[0] == tokenizer.unk_token_id:
            return None
        ids.append(int(encoded[0]))
    if len(set(ids)) != BOX_VALUES:
        return None
    # Inside a box the numbers sit between brackets and commas; they must tokenise the same way there.
    for values in ((0, 1, 99, 100), (12, 34, 56, 78)):
        text = format_elysium_box([v / 100 for v in values])
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if [token for token in encoded if token in ids] != [ids[v] for v in values]:
            return None
    return ids


def number_targets(number_ids: list[int], vocab_size: int, sigma: float) -> torch.Tensor:
    """(101, vocab) target distribution of each number label: a Gaussian of width ``sigma`` (in box
    units) over the number tokens, zero on every other token."""
    values = torch.arange(BOX_VALUES, dtype=torch.float32)
    weights = torch.exp(-((values[:, None] - values[None, :]) ** 2) / (2.0 * float(sigma) ** 2))  # (101, 101)
    weights = weights / weights.sum(1, keepdim=True)
    targets = torch.zeros(BOX_VALUES, vocab_size)
    targets[:, torch.tensor(number_ids)] = weights
    return targets


def ordered_number_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    number_ids: list[int],
    sigma: float,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """The causal-LM loss with Gaussian targets on the number labels (see the module docstring).

    Args:
        logits: (B, L, V) the language model's logits.
        labels: (B, L) with -100 where no loss is taken; shifted by one inside, as a causal LM's loss is.
        number_ids: the token id of each number 0..100 (:func:`number_token_ids`).
        sigma: the Gaussian's width in box units (> 0).
        num_items_in_batch: as transformers' loss: divide the summed loss by it (gradient accumulation)
            instead of taking the mean over the labelled positions.

    Returns:
        The scalar loss. With every label a non-number it equals the usual cross-entropy.
    """
    if not sigma > 0:
        raise ValueError(f"sigma={sigma!r}: the width of the number targets must be > 0")
    vocab = logits.shape[-1]
    shifted = labels[:, 1:]  # (B, L-1) the label of each position's next token
    scored = shifted != -100
    chosen = shifted[scored]  # (n,)
    log_probs = nn.functional.log_softmax(logits[:, :-1][scored].float(), dim=-1)  # (n, V)
    value_of = torch.full((vocab,), -1, dtype=torch.long, device=labels.device)
    value_of[torch.tensor(number_ids, device=labels.device)] = torch.arange(BOX_VALUES, device=labels.device)
    values = value_of[chosen]  # (n,) 0..100 for a number label, -1 otherwise
    per_position = -log_probs.gather(1, chosen[:, None]).squeeze(1)  # (n,) one-hot cross-entropy
    is_number = values >= 0
    if is_number.any():
        targets = number_targets(number_ids, vocab, sigma).to(log_probs.device)[values[is_number]]  # (m, V)
        per_position = per_position.clone()
        per_position[is_number] = -(targets * log_probs[is_number]).sum(-1)
    total = per_position.sum()
    if num_items_in_batch is not None:
        return total / torch.as_tensor(num_items_in_batch, device=total.device, dtype=total.dtype)
    return total / scored.sum().clamp(min=1)
