"""The value checks every setting and record field makes before its error names the value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from artemis.errors import is_int, is_real


@pytest.mark.parametrize(
    ("value", "bounds", "expected"),
    [
        (0, {}, True),
        (np.int64(7), {"minimum": 1, "maximum": 9}, True),  # numpy's integers count (frame indices from arrays)
        (-1, {"minimum": 0}, False),
        (21, {"minimum": 0, "maximum": 20}, False),
        (20, {"minimum": 0, "maximum": 20}, True),
        (True, {}, False),  # YAML's `yes`: an int to Python, never a count
        (np.bool_(True), {}, False),
        (2.0, {}, False),  # a float is not a whole number, even when it is integral
        ("3", {}, False),
        (None, {}, False),
    ],
)
def test_is_int(value: object, bounds: dict, expected: bool) -> None:
    assert is_int(value, **bounds) is expected


@pytest.mark.parametrize(
    ("value", "bounds", "expected"),
    [
        (0.25, {"minimum": 0, "maximum": 0.5}, True),
        (1, {"minimum": 0, "maximum": 1}, True),
        (np.float32(0.5), {"minimum": 0}, True),
        (0.5000001, {"minimum": 0, "maximum": 0.5}, False),
        (-1e-9, {"minimum": 0}, False),
        (math.nan, {}, False),  # NaN passes no comparison, so it never passes as a setting
        (math.inf, {}, True),
        (math.inf, {"maximum": 1e9}, False),
        (False, {}, False),
        ("0.3", {}, False),
        ([1], {}, False),
    ],
)
def test_is_real(value: object, bounds: dict, expected: bool) -> None:
    assert is_real(value, **bounds) is expected
