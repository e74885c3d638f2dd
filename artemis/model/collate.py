"""Pad and stack the samples the processor builds into one batch for ``ArtemisForConditionalGeneration``.

Referring, video-only, image, box-output and text-only samples share a batch. What is missing is padded
with values the model reads as "nothing here":

* text: ``input_ids`` padded with the pad id (on the right for training, on the left for generation),
  ``attention_mask`` 0 and ``labels`` -100 there;
* video: frames padded to the batch's longest video with zeros and ``frame_mask`` False; a sample without
  a video has ``frame_mask`` all False (no ``<video>`` tokens are computed for it);
* regions: a sample without regions, or with fewer than the batch's most, gets regions whose boxes are NaN
  everywhere (the model treats an all-NaN region as padding) on zero frames, ``region_visible`` False.
* precomputed features (items of a features cache): ``video_features`` stacked, zeros and
  ``video_feature_mask`` False for a sample without a video; ``region_hidden_states`` stacked per level,
  zeros for a sample without regions (its boxes are all NaN, so they are never read).
* images given as patch tokens (``image_tokens="patches"``): ``image_mask`` True for those samples, False
  for the others.

Visual keys appear only when some sample of the batch has them, so a text-only batch is text only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100

Item = dict[str, torch.Tensor]


def pad_text(
    ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad token ids: ``input_ids``, ``attention_mask`` and ``labels`` (B, L)."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side {side!r}; expected 'left' (generation) or 'right' (training)")
    length = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    label_ids = torch.full((len(ids), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for row, (own_ids, own_labels) in enumerate(zip(ids, labels, strict=True)):
        n = len(own_ids)
        span = slice(length - n, length) if side == "left" else slice(0, n)
        input_ids[row, span] = torch.as_tensor(own_ids, dtype=torch.long)
        label_ids[row, span] = torch.as_tensor(own_labels, dtype=torch.long)
        mask[row, span] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": label_ids}


def collate(
    items: Sequence[Item], *, pad_id: int, num_region_frames: int, frame_shape: tuple[int, ...], side: str = "right"
) -> dict[str, torch.Tensor]:
    """Collate samples (each with ``input_ids`` and ``labels`` (L,) and optional visual tensors).

    Args:
        pad_id: the tokenizer's pad id.
        num_region_frames: ``K`` (key frame + tracked frames) of the model config.
        frame_shape: ``(3, S, S)`` of a frame, for samples that have no frames of their own.
        side: where text is padded.

    Returns:
        ``input_ids``, ``attention_mask``, ``labels`` (B, L); when any item has a video,
        ``pixel_values`` (B, T_max, 3, S, S) and ``frame_mask`` (B, T_max); when any has regions,
        ``region_pixel_values`` (B, K, 3, S, S), ``region_boxes`` (B, R_max, K, 4), ``region_visible``
        (B, R_max, K) and ``region_times`` (B, K); when any region is given as a mask, ``region_masks``
        (B, R_max, S, S), NaN for the regions given as boxes. From a features cache ``video_features`` (B, N_v, C_v)
        and ``video_feature_mask`` (B,) replace the pixels and frame mask, and ``region_hidden_states`` (a
        tuple of (B, K, P, C_v), one per region level) replaces ``region_pixel_values``. When any item is
        an SOT clip, ``query_boxes`` (B, 4): its frame-1 box, NaN rows for the others. When any item is a
        box-output clip with its answer, ``frame_boxes`` (B, T_max, 4): the target on each frame, NaN where
        it is absent and for the other items. When any item is an
        image given as patch tokens (its ``image_mask`` is True), ``image_mask`` (B,).
    """
    if not items:
        raise ValueError("cannot collate an empty list of samples")
    batch = pad_text([item["input_ids"] for item in items], [item["labels"] for item in items], pad_id, side)
    for pixels, features in (("pixel_values", "video_features"), ("region_pixel_values", "region_hidden_states")):
        if any(pixels in item for item in items) and any(features in item for item in items):
            raise ValueError(
                f"some samples have {pixels} and others {features}; the model takes one of them per batch, so "
                "draw a batch from one dataset (all from videos / a frames cache, or all from a features cache)"
            )
    shape = _frame_shape(items, frame_shape)
    if any("pixel_values" in item for item in items):
        batch.update(_videos(items, shape))
    if any("video_features" in item for item in items):
        batch.update(_video_features(items))
    if any("region_boxes" in item for item in items):
        batch.update(_regions(items, num_region_frames, shape))
    if any("query_boxes" in item for item in items):  # SOT clips: the target's box on frame 1, NaN for others
        nan = torch.full((4,), float("nan"))
        batch["query_boxes"] = torch.stack([item.get("query_boxes", nan) for item in items])  # (B, 4)
    if any("frame_boxes" in item for item in items):  # box-output training: the target on each frame, NaN padded
        frames = max(len(item["frame_boxes"]) for item in items if "frame_boxes" in item)
        boxes = torch.full((len(items), frames, 4), float("nan"))
        for row, item in enumerate(items):
            if "frame_boxes" in item:
                boxes[row, : len(item["frame_boxes"])] = item["frame_boxes"]
        batch["frame_boxes"] = boxes  # (B, T_max, 4)
    if any("image_mask" in item for item in items):  # images as patch tokens: which samples they are
        batch["image_mask"] = torch.tensor([bool(item.get("image_mask", False)) for item in items])  # (B,)
    return batch


def _frame_shape(items: Sequence[Item], default: tuple[int, ...]) -> tuple[int, ...]:
    for item in items:
        for name in ("pixel_values", "region_pixel_values"):
            if name in item:
                return tuple(item[name].shape[1:])
    return default


def _videos(items: Sequence[Item], shape: tuple[int, ...]) -> Item:
    frames = max(len(item["pixel_values"]) for item in items if "pixel_values" in item)
    pixels = torch.zeros(len(items), frames, *shape)  # (B, T, 3, S, S)
    mask = torch.zeros(len(items), frames, dtype=torch.bool)  # (B, T)
    for row, item in enumerate(items):
        if "pixel_values" in item:
            count = len(item["pixel_values"])
            pixels[row, :count] = item["pixel_values"]
            mask[row, :count] = item.get("frame_mask", torch.ones(count, dtype=torch.bool))
    return {"pixel_values": pixels, "frame_mask": mask}


def _video_features(items: Sequence[Item]) -> Item:
    example = next(item["video_features"] for item in items if "video_features" in item)  # (N_v, C_v)
    features = example.new_zeros(len(items), *example.shape)  # (B, N_v, C_v)
    mask = torch.zeros(len(items), dtype=torch.bool)  # (B,)
    for row, item in enumerate(items):
        if "video_features" in item:
            features[row] = item["video_features"]
            mask[row] = True
    return {"video_features": features, "video_feature_mask": mask}


def _regions(items: Sequence[Item], count: int, shape: tuple[int, ...]) -> dict:
    regions = max(len(item["region_boxes"]) for item in items if "region_boxes" in item)  # R_max
    batch = len(items)
    with_features = any("region_hidden_states" in item for item in items)
    if with_features:
        example = next(item["region_hidden_states"] for item in items if "region_hidden_states" in item)
        levels = [level.new_zeros(batch, *level.shape) for level in example]  # each (B, K, P, C_v)
    else:
        pixels = torch.zeros(batch, count, *shape)  # (B, K, 3, S, S)
    boxes = torch.full((batch, regions, count, 4), float("nan"))  # (B, R, K, 4)
    visible = torch.zeros(batch, regions, count, dtype=torch.bool)  # (B, R, K)
    times = torch.zeros(batch, count)  # (B, K)
    for row, item in enumerate(items):
        if "region_boxes" not in item:
            continue
        if item["region_boxes"].shape[1] != count:
            raise ValueError(
                f"sample {row} has {item['region_boxes'].shape[1]} region frames but the model config expects "
                f"{count} (1 + num_track_boxes); build the dataset with the same config as the collator"
            )
        own = len(item["region_boxes"])
        if with_features:
            for level, states in zip(levels, item["region_hidden_states"], strict=True):
                level[row] = states
        else:
            pixels[row] = item["region_pixel_values"]
        boxes[row, :own] = item["region_boxes"]
        visible[row, :own] = item["region_visible"]
        times[row] = item["region_times"]
    frames = {"region_hidden_states": tuple(levels)} if with_features else {"region_pixel_values": pixels}
    out = {**frames, "region_boxes": boxes, "region_visible": visible, "region_times": times}
    with_masks = [item for item in items if "region_masks" in item]
    if with_masks:
        masks = torch.full((batch, regions, *with_masks[0]["region_masks"].shape[1:]), float("nan"))  # (B, R, S, S)
        for row, item in enumerate(items):
            if "region_masks" in item:
                masks[row, : len(item["region_masks"])] = item["region_masks"]
        out["region_masks"] = masks
    return out
