"""The resumable runner: a killed run resumes without redoing finished samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artemis.errors import AnnotationError, ConfigError
from artemis.eval.runner import PREDICTIONS_FILE, finish_run, read_predictions, run_predictions

SAMPLES = [f"s{i}" for i in range(6)]


class Killed(RuntimeError):
    pass


def _predictor(calls: list[str], kill_after: int | None = None):
    def predict(sample: str) -> dict:
        if kill_after is not None and len(calls) == kill_after:
            raise Killed(sample)
        calls.append(sample)
        return {"value": int(sample[1:]) ** 2}

    return predict


def _run(out: Path, calls: list[str], kill_after: int | None = None, **kwargs):
    return run_predictions(SAMPLES, _predictor(calls, kill_after), out, sample_id=lambda s: s, progress=False, **kwargs)


def test_resume_after_a_kill(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(Killed):
        _run(tmp_path, calls, kill_after=3)
    path = tmp_path / PREDICTIONS_FILE
    before = path.read_bytes()
    assert [json.loads(line)["id"] for line in before.splitlines()] == ["s0", "s1", "s2"]

    again: list[str] = []
    result = _run(tmp_path, again)
    assert again == ["s3", "s4", "s5"]  # nothing finished is redone
    assert (result.num_resumed, result.num_new) == (3, 3)
    assert path.read_bytes().startswith(before)  # finished lines untouched
    assert [r["id"] for r in result.records] == SAMPLES
    assert [r["value"] for r in result.records] == [i * i for i in range(6)]

    third: list[str] = []
    assert _run(tmp_path, third).num_new == 0 and third == []


def test_truncated_last_line_is_redone(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(Killed):
        _run(tmp_path, calls, kill_after=2)
    path = tmp_path / PREDICTIONS_FILE
    with path.open("a") as handle:
        handle.write('{"value": 4, "id": "s')  # what a kill in the middle of a write leaves
    again: list[str] = []
    result = _run(tmp_path, again)
    assert again == ["s2", "s3", "s4", "s5"]
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == SAMPLES
    assert len(result.records) == 6


def test_damaged_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / PREDICTIONS_FILE
    path.write_text('{"id": "s0"}\nnot json\n{"id": "s2"}\n')
    with pytest.raises(AnnotationError, match="line 2"):
        read_predictions(path)


def test_other_settings_are_refused(tmp_path: Path) -> None:
    _run(tmp_path, [], settings={"model": "a"})
    with pytest.raises(ConfigError, match="model"):
        _run(tmp_path, [], settings={"model": "b"})
    assert _run(tmp_path, [], settings={"model": "a"}).num_resumed == 6


def test_finish_run_writes_metrics_and_report(tmp_path: Path) -> None:
    finish_run(tmp_path, "Test run", {"accuracy": 0.5}, ["a note"], extra={"curve": [1, 2]})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"accuracy": 0.5, "curve": [1, 2]}
    report = (tmp_path / "report.md").read_text()
    assert "# Test run" in report and "0.500000" in report and "a note" in report
