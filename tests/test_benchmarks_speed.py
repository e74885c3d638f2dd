"""The speed and memory benchmarks run with --quick and print one JSON object with their keys (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_describe_speed_quick():
    result = _run("describe_speed.py")
    for name in ("bikes", "long"):
        for key in ("frames", "describe_fps_default", "describe_fps_full_rate", "speedup"):
            assert f"{name}_{key}" in result
    assert result["long_frames"] > result["bikes_frames"]
    for key in ("otb_auc_default", "otb_auc_full_rate", "synthref_auc_default", "synthref_auc_full_rate"):
        assert 0.0 <= result[key] <= 1.0
    assert result["synthref_targets"] > 0 and "default_settings" in result and "load_average_1min" in result


def test_memory_quick():
    result = _run("memory.py")
    calls = ("describe", "track", "track_with_llm")
    cases = [f"{c}_{n}_key_{k}" for c in calls for n in ("short", "long") for k in ("first", "last")]
    assert set(result["peak_rss_mb"]) == set(cases) and set(result["process_peak_rss_mb"]) == set(cases)
    assert set(result["long_minus_short_mb"]) == {f"{c}_key_{k}" for c in calls for k in ("first", "last")}
    assert all(value > 0 for value in result["peak_rss_mb"].values())
