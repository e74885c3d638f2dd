"""``artemis demo`` end to end, with and without a model."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_tracks_describes_and_writes_its_files(tmp_path, tiny_model_dir):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "artemis.cli", "demo", "--out", str(out), "--model", str(tiny_model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["description"]  # the tiny model wrote something
    assert result["track_success_auc"] > 0.5  # CSRT follows a SynthRef object from its exact box
    assert (out / "demo.mp4").stat().st_size > 0 and (out / "demo.gif").stat().st_size > 0
    assert "description:" in run.stdout and "wrote:" in run.stdout


def test_demo_with_a_missing_model_directory_fails_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "artemis.cli", "demo", "--out", str(tmp_path), "--model", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("artemis demo: error: model")
    assert "Traceback" not in run.stderr
