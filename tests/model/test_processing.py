"""Frame preprocessing keeps boxes on their targets; text encoding is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis.model.processing import CLIP_MEAN, CLIP_STD, VideoProcessor


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(40, 200),
    height=st.integers(40, 200),
    data=st.data(),
)
def test_a_box_drawn_on_a_frame_lands_on_the_same_pixels_after_preprocessing(width, height, data):
    """Pixels and boxes go through one transform, on wide, tall and square frames."""
    x1 = data.draw(st.integers(0, width - 20))
    y1 = data.draw(st.integers(0, height - 20))
    x2 = data.draw(st.integers(x1 + 16, width))
    y2 = data.draw(st.integers(y1 + 16, height))
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[y1:y2, x1:x2] = 255
    processor = VideoProcessor(image_size=64)
    pixels = processor(frame)[0]  # (3, 64, 64)
    white = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    bright = (pixels[0] > white * 0.5).numpy()
    box = processor.transform_for(width, height).boxes_to_model([x1, y1, x2, y2]) * 64
    ys, xs = np.nonzero(bright)
    # The bright area and the mapped box agree to within the resampling blur (about 1.5 output pixels).
    assert abs(xs.min() - box[0]) <= 1.5 and abs(xs.max() + 1 - box[2]) <= 1.5
    assert abs(ys.min() - box[1]) <= 1.5 and abs(ys.max() + 1 - box[3]) <= 1.5


def test_padding_uses_the_mean_colour_so_it_normalises_to_zero():
    frame = np.full((20, 80, 3), 255, dtype=np.uint8)  # wide: padded above and below
    pixels = VideoProcessor(image_size=32)(frame)[0]
    assert torch.allclose(pixels[:, 0, :], torch.zeros(3, 32), atol=0.02)
    assert pixels.shape == (3, 32, 32)


@pytest.mark.parametrize("shape", [(3, 27, 64, 3), (2, 64, 27, 3), (1, 33, 33, 3), (2, 7, 3, 3)])
def test_pixels_are_the_padded_canvas_resized_and_normalised(shape):
    """The definition, built step by step: a square canvas of the rounded mean colour, the frame centred on
    it, a bicubic resize, then (x / 255 - mean) / std; the processor must give exactly these values."""
    import cv2

    frames = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    processor = VideoProcessor(image_size=48)
    height, width = shape[1:3]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    expected = []
    for frame in frames:
        canvas = np.empty((side, side, 3), dtype=np.uint8)
        for channel in range(3):
            canvas[..., channel] = round(CLIP_MEAN[channel] * 255)
        canvas[top : top + height, left : left + width] = frame
        resized = cv2.resize(canvas, (48, 48), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
        expected.append((resized - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32))
    expected = torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2)
    assert torch.allclose(processor(frames), expected, atol=1e-6)


def test_boxes_round_trip_through_the_square_transform():
    transform = VideoProcessor(image_size=224).transform_for(640, 272)
    box = np.array([[100.0, 20.0, 300.0, 250.0]])
    assert np.allclose(transform.boxes_from_model(transform.boxes_to_model(box)), box)
    assert transform.pad_x == 0 and transform.pad_y == (640 - 272) // 2


def test_tokenizer_placeholders_must_match_the_config(tiny_model_dir):
    from artemis.errors import CheckpointError
    from artemis.model import ArtemisConfig, ArtemisProcessor

    config = ArtemisConfig.from_pretrained(tiny_model_dir)
    config.region_token_id = 7
    with pytest.raises(CheckpointError, match="maps <region> to id 4 but the model config expects 7"):
        ArtemisProcessor.from_pretrained(tiny_model_dir, config)
