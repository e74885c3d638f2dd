"""The model benchmarks run with --quick and print one JSON object with their figures (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str) -> dict:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"], capture_output=True, text=True, timeout=1200
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.mark.slow
def test_overheads_quick() -> None:
    result = _run("overheads.py")
    assert set(result) >= {"generation", "training", "describe", "text_config", "vision_config", "load_before"}
    assert set(result["generation"]) >= {
        "prompt_tokens", "artemis_tokens_per_s", "plain_tokens_per_s", "tokens_per_s_ratio",
        "artemis_prefill_s", "plain_prefill_s", "decode_tokens_per_s_ratio",
    }  # fmt: skip
    assert set(result["training"]) >= {
        "artemis_step_s", "artemis_features_step_s", "plain_step_s", "step_ratio", "step_ratio_with_features",
    }  # fmt: skip
    assert set(result["describe"]) >= {"describe_s", "region_encoder_s", "selector_s", "region_path_share"}
    assert 0 < result["describe"]["region_path_share"] < 1


@pytest.mark.slow
def test_batch_quick() -> None:
    result = _run("batch.py")
    describe, evaluation = result["describe"], result["eval"]
    assert set(describe) >= {
        "single_s", "batch_s", "speedup", "texts_equal", "num_texts_differing", "num_requests", "batch_size",
    }  # fmt: skip
    assert set(evaluation) >= {
        "one_process_s", "two_processes_s", "one_process_samples_per_s", "two_processes_samples_per_s",
        "two_processes_speedup", "predictions_equal", "predictions_equal_all_launches",
    }  # fmt: skip
