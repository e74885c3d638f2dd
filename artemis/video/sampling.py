"""Which frames of a video the model sees.

Two rules, both deterministic and both returning sorted ``int64`` indices:

* ``"midpoint"`` — Video-ChatGPT's ``get_seq_frames``, which Artemis uses to pick its global frames.
  With ``N`` frames and ``T`` samples, segment boundaries are
  ``b_i = round((N - 1) / T * i)`` for ``i = 0..T`` (``numpy.round``, half to even), and sample ``i`` is
  ``(b_i + b_{i+1}) // 2``, the middle frame of segment ``i``.
* ``"uniform"`` — ``round(linspace(0, N - 1, T))``: the first and last frames are always included,
  which suits tracking, where the ends of a clip matter.

When ``T > N`` both rules repeat frames (``N = 3, T = 6``: midpoint ``[0, 0, 1, 1, 1, 2]``, uniform
``[0, 0, 1, 1, 2, 2]``) instead of failing, so a batch always has ``T`` frames. Because its segments span
``N - 1`` frames, the midpoint rule can repeat frames even when ``T <= N`` (``N = 3, T = 3`` gives
``[0, 1, 1]``); that is the original's behaviour, kept on purpose. ``"uniform"`` never repeats a frame when
``T <= N``. The original Artemis samples ``min(N, T)`` frames and zero-pads the temporal tokens; call
``sample_indices(n, min(n, t))`` for that.
"""

from __future__ import annotations

import operator
from typing import Literal

import numpy as np

from artemis.errors import VideoError

SamplingMode = Literal["uniform", "midpoint"]

__all__ = ["SamplingMode", "sample_indices"]


def _positive_int(value: int, name: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise VideoError(f"{name} must be an integer, got {value!r}") from None
    if number < 1:
        raise VideoError(f"{name} must be at least 1, got {number}")
    return number


def sample_indices(num_frames: int, num_samples: int, mode: SamplingMode = "midpoint") -> np.ndarray:
    """Pick ``num_samples`` frame indices out of ``num_frames``.

    Args:
        num_frames: frames in the video, ``N >= 1``.
        num_samples: frames wanted, ``T >= 1``; may exceed ``N``, in which case frames repeat.
        mode: ``"midpoint"`` (middle frame of each of ``T`` equal segments, Video-ChatGPT / Artemis) or
            ``"uniform"`` (``T`` evenly spaced frames including the first and last).

    Returns:
        ``(T,)`` int64 array, sorted (non-decreasing), every value in ``0..N-1``.

    Raises:
        VideoError: if a count is not a positive integer or ``mode`` is unknown.
    """
    n = _positive_int(num_frames, "num_frames")
    t = _positive_int(num_samples, "num_samples")
    if mode == "midpoint":
        segment = float(n - 1) / t
        bounds = np.round(segment * np.arange(t + 1)).astype(np.int64)  # (T + 1,)
        return (bounds[:-1] + bounds[1:]) // 2  # (T,)
    if mode == "uniform":
        return np.round(np.linspace(0, n - 1, t)).astype(np.int64)  # (T,)
    raise VideoError(f"unknown sampling mode {mode!r}; expected 'midpoint' or 'uniform'")
