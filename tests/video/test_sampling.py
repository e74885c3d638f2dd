"""sample_indices: the midpoint rule of Video-ChatGPT / Artemis and the uniform rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.errors import VideoError
from artemis.video import sample_indices

frame_counts = st.integers(min_value=1, max_value=5000)
sample_counts = st.integers(min_value=1, max_value=400)
modes = st.sampled_from(["midpoint", "uniform"])


def get_seq_frames(total_num_frames: int, desired_num_frames: int) -> list[int]:
    """The rule as Video-ChatGPT and Artemis state it, one segment at a time (the specification)."""
    seg_size = float(total_num_frames - 1) / desired_num_frames
    seq = []
    for i in range(desired_num_frames):
        start = int(np.round(seg_size * i))
        end = int(np.round(seg_size * (i + 1)))
        seq.append(int((start + end) / 2))
    return seq


@given(frame_counts, sample_counts, modes)
def test_length_dtype_order_and_range(num_frames: int, num_samples: int, mode: str) -> None:
    indices = sample_indices(num_frames, num_samples, mode)  # type: ignore[arg-type]
    assert indices.shape == (num_samples,)
    assert indices.dtype == np.int64
    assert np.all(np.diff(indices) >= 0)
    assert indices.min() >= 0 and indices.max() <= num_frames - 1


@given(frame_counts, sample_counts)
def test_midpoint_matches_the_original_formula(num_frames: int, num_samples: int) -> None:
    assert sample_indices(num_frames, num_samples, "midpoint").tolist() == get_seq_frames(num_frames, num_samples)


@given(frame_counts, sample_counts)
def test_uniform_includes_both_ends_and_never_repeats_when_it_can(num_frames: int, num_samples: int) -> None:
    indices = sample_indices(num_frames, num_samples, "uniform")
    if num_samples >= 2:
        assert indices[0] == 0 and indices[-1] == num_frames - 1
    if num_samples <= num_frames:
        assert len(np.unique(indices)) == num_samples


@given(frame_counts, sample_counts)
def test_more_samples_than_frames_repeat_frames_instead_of_failing(num_frames: int, num_samples: int) -> None:
    for mode in ("midpoint", "uniform"):
        indices = sample_indices(num_frames, num_frames + num_samples, mode)  # type: ignore[arg-type]
        assert len(indices) == num_frames + num_samples  # never fails, repeats instead
        assert len(np.unique(indices)) < len(indices)


def test_known_values() -> None:
    assert sample_indices(100, 8).tolist() == [6, 18, 31, 43, 56, 68, 80, 93]
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 1, 2]
    assert sample_indices(3, 3).tolist() == [0, 1, 1]  # the original's rule repeats here too
    assert sample_indices(3, 6, "uniform").tolist() == [0, 0, 1, 1, 2, 2]
    assert sample_indices(250, 5, "uniform").tolist() == [0, 62, 124, 187, 249]
    assert sample_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert sample_indices(7, 1, "uniform").tolist() == [0]


def test_default_mode_is_midpoint() -> None:
    assert sample_indices(250, 100).tolist() == get_seq_frames(250, 100)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 4), "num_frames must be at least 1, got 0"),
        ((10, 0), "num_samples must be at least 1, got 0"),
        ((10.0, 4), "num_frames must be an integer"),
        ((10, 4, "random"), "unknown sampling mode 'random'"),
    ],
)
def test_bad_arguments_raise_video_error(args: tuple, message: str) -> None:
    with pytest.raises(VideoError, match=message):
        sample_indices(*args)


def test_numpy_integers_are_accepted() -> None:
    assert sample_indices(np.int64(10), np.int32(2)).tolist() == get_seq_frames(10, 2)
