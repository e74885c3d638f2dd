"""Inputs for tests of the region encoder: random region-frame features and boxes, a mask of the frame's left
half, and features changed right of it."""

from __future__ import annotations

import torch


def levels_and_boxes(model, batch: int = 2, regions: int = 2, seed: int = 0):
    """Region-frame feature levels (each (B*K, P, C)) of random frames, boxes (B, R, K, 4) and times (B, K)."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    size, frames = config.vision_config.image_size, config.num_track_boxes + 1
    pixels = torch.randn(batch * frames, 3, size, size, generator=generator)
    states = model._vision_hidden_states(pixels, config.region_feature_layers)
    levels = [states[layer] for layer in config.region_feature_layers]  # each (B*K, P, C)
    corner = torch.rand(batch, regions, frames, 2, generator=generator) * 0.4
    boxes = torch.cat([corner, corner + 0.4 + torch.rand(batch, regions, frames, 2, generator=generator) * 0.2], -1)
    times = torch.linspace(0, 1, frames).expand(batch, frames)
    return levels, boxes, times


def left_half_masks(batch: int, regions: int, size: int, sample: int = 1, region: int = 0) -> torch.Tensor:
    """(B, R, S, S) masks: NaN (a box) for every region but ``(sample, region)``, whose mask is the left half."""
    masks = torch.full((batch, regions, size, size), float("nan"))
    masks[sample, region] = 0.0
    masks[sample, region, :, : size // 2] = 1.0
    return masks


def changed_right_half(levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """``levels`` with every patch feature of frame 0 right of the middle changed (by +5)."""
    side = round(levels[0].shape[1] ** 0.5)
    changed = []
    for level in levels:
        grid = level.clone().reshape(level.shape[0], side, side, -1)
        grid[0, :, side // 2 :] += 5.0
        changed.append(grid.reshape(level.shape))
    return changed
