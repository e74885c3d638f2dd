"""The ``region_words`` objective: the region encoder learns to name the words of a target's description.

A referring stage trains the region encoder only through the LLM, so the region path learns whatever the
LLM reads first. In the tiny SynthRef recipe that was one attribute: a probe on the region tokens found
that the attribute learnt first (colour, or shape when it came first) was kept and the others were
removed from the tokens, and never came back within the time budget (docs/experiments.md, runs 18-20).

This objective trains the region path before that, on the same referring records: from the region's
tokens (the key-frame token and the mean of the selected tracked tokens, concatenated) a linear head
predicts which vocabulary ids occur in the record's answer, as independent yes/no targets (binary cross
entropy, a bag of words). Every word of the answer pulls on the tokens at once, so no attribute has to
win over another. The head is for training only; the stage output is the artemis model without it.

A bag of words cannot tell "from the top left to the bottom right" from the reverse: both have the same
words. With ``bins`` > 1 the answer is cut by token position into that many equal parts and each part has
its own bag (the head predicts ``bins x vocab`` targets), so "top" early and "bottom" late differs from
the other way round while a paraphrase that keeps the order still shares its targets.

Use it on records whose answer describes the whole target (descriptions, not one-attribute questions):
a word missing from the answer counts as absent. No library offers a bag-of-words loss over
multimodal region tokens, so it is written here (a linear layer and ``binary_cross_entropy_with_logits``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import ModelOutput

from artemis.errors import is_int

__all__ = ["RegionWordsObjective"]


class RegionWordsObjective(nn.Module):
    """Wraps an artemis model; ``forward(**batch)`` returns the bag-of-words loss of its region tokens.

    Attributes:
        artemis_model: the wrapped model (what the stage saves).
        head: ``Linear(2 * D, bins * vocab)`` over [key-frame token, mean of the tracked tokens]; ``3 * D``
            with the track token (``region_track_token``) appended.
        bins: how many position bins of the answer have their own bag of words.
    """

    def __init__(self, model: nn.Module, bins: int = 1):
        super().__init__()
        if not is_int(bins, minimum=1):
            raise ValueError(f"bins={bins!r}: expected a whole number >= 1 (1 is a plain bag of words)")
        self.artemis_model = model
        config = model.config
        self.hidden_size = config.text_config.hidden_size
        self.vocab_size = config.text_config.vocab_size
        self.bins = bins
        parts = 3 if config.region_track_token else 2
        self.head = nn.Linear(parts * self.hidden_size, bins * self.vocab_size)
        # Ids that are never answer words: padding, the sequence marks and the two placeholders.
        text = config.text_config
        special = {text.pad_token_id, text.bos_token_id, text.eos_token_id}
        special |= {config.video_token_id, config.region_token_id}
        ignored = torch.zeros(self.vocab_size, dtype=torch.bool)
        ignored[[i for i in special if isinstance(i, int) and 0 <= i < self.vocab_size]] = True
        self.register_buffer("ignored", ignored.repeat(bins), persistent=False)

    @property
    def config(self) -> Any:
        return self.artemis_model.config

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        """The ``Trainer`` calls this when ``gradient_checkpointing`` is set; the model does the work."""
        self.artemis_model.gradient_checkpointing_enable(**kwargs)

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, L) labels (-100 outside the answer) -> (B, bins * vocab) 1.0 where the id occurs in the answer.

        Target ``b * vocab + id`` is 1 when ``id`` occurs in part ``b`` of the answer: its ``n`` tokens cut in
        ``bins`` equal parts by position (token ``i`` of the answer is in part ``floor(i * bins / n)``).
        """
        answer = labels != -100
        ids = labels.clamp(min=0)
        rank = answer.cumsum(1) - 1  # (B, L) position of each token inside its answer
        length = answer.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        part = torch.div(rank.clamp(min=0) * self.bins, length, rounding_mode="floor")  # (B, L) in [0, bins)
        bag = torch.zeros(labels.shape[0], self.bins * self.vocab_size, device=labels.device)
        bag.scatter_(1, part * self.vocab_size + ids, answer.to(bag.dtype))  # 0/1 values: repeats stay 1
        return bag

    def region_features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The [key, mean tracked(, track token)] feature of each sample's first region, and which samples have one."""
        boxes = batch["region_boxes"]  # (B, R, K, 4), NaN where a sample has fewer regions
        _, region = self.artemis_model.get_multimodal_features(
            region_pixel_values=batch.get("region_pixel_values"),
            region_boxes=boxes,
            region_visible=batch.get("region_visible"),
            region_times=batch.get("region_times"),
            region_hidden_states=batch.get("region_hidden_states"),
            region_masks=batch.get("region_masks"),
        )
        present = torch.isfinite(boxes).all(-1).any(-1)  # (B, R)
        per_region = self.artemis_model.config.num_region_tokens
        tokens = region.reshape(-1, per_region, self.hidden_size)  # (n_regions, 1 + k, D), sample-major
        first = present.cumsum(1).eq(1) & present  # the first present region of each sample
        index = first[present]  # (n_regions,) which rows are a sample's first region
        chosen = tokens[index]
        if self.artemis_model.config.region_track_token:  # the track token is its own feature, not averaged
            features = torch.cat([chosen[:, 0], chosen[:, 1:-1].mean(1), chosen[:, -1]], dim=-1)  # (n, 3D)
        else:
            features = torch.cat([chosen[:, 0], chosen[:, 1:].mean(1)], dim=-1)  # (n, 2D)
        return features, present.any(1)

    def forward(self, labels: torch.Tensor | None = None, **batch: Any) -> ModelOutput:
        if labels is None or batch.get("region_boxes") is None:
            raise ValueError("the region_words objective needs referring records: labels and region boxes")
        features, has_region = self.region_features(batch)
        logits = self.head(features.to(self.head.weight.dtype))  # (n, vocab)
        targets = self.targets(labels)[has_region]
        keep = ~self.ignored
        loss = nn.functional.binary_cross_entropy_with_logits(logits[:, keep], targets[:, keep])
        return ModelOutput(loss=loss, logits=logits)
