"""The resumable runner: a killed run resumes without redoing finished samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from predictors import Killed, squares

from artemis.errors import AnnotationError, ConfigError
from artemis.eval.runner import PREDICTIONS_FILE, finish_run, read_predictions, run_predictions

SAMPLES = [f"s{i}" for i in range(6)]


def _run(out: Path, calls: list[str], kill_after: int | None = None, **kwargs):
    return run_predictions(SAMPLES, squares(calls, kill_after), out, sample_id=lambda s: s, progress=False, **kwargs)


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


# --- `artemis eval synthref|sot|reg|rsot` end to end ----------------------------------------------------

SYNTHREF_METRIC_KEYS = {
    "joint_accuracy",
    "color_accuracy",
    "shape_accuracy",
    "motion_accuracy",
    "swap_joint_accuracy",
    "blind_joint_accuracy",
}


@pytest.fixture(scope="module")
def synthref_split(tmp_path_factory) -> Path:
    from artemis.data.synthref import SynthRefConfig
    from artemis.data.synthref_writer import generate_split

    config = SynthRefConfig(width=64, height=64, num_frames=8, min_objects=2, max_objects=2)
    return generate_split(tmp_path_factory.mktemp("synthref"), 2, seed=3, split="test", config=config).split_dir


def _cli(*argv: str) -> int:
    from artemis.cli import main

    return main(list(argv))


def test_eval_synthref_end_to_end(tmp_path: Path, synthref_split: Path, tiny_model_dir: Path, capsys) -> None:
    from artemis.eval.synthref import Vocabulary, parse_description

    out = tmp_path / "run"
    argv = ["eval", "synthref", "--model", str(tiny_model_dir), "--data", str(synthref_split), "--out", str(out)]
    assert _cli(*argv, "--limit", "2", "--max-new-tokens", "6") == 0
    first_lines = (out / PREDICTIONS_FILE).read_text().splitlines()
    assert len(first_lines) == 2
    capsys.readouterr()
    assert _cli(*argv, "--max-new-tokens", "6", "--json") == 0  # resumes the first two, adds two
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= SYNTHREF_METRIC_KEYS and set(printed) >= SYNTHREF_METRIC_KEYS
    records = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert [json.dumps(r) for r in records[:2]] == [json.dumps(json.loads(line)) for line in first_lines]
    # Two videos of two objects: every object has a swap partner and a blind box.
    assert metrics["num_samples"] == metrics["num_swap"] == metrics["num_blind"] == len(records) == 4
    for key in SYNTHREF_METRIC_KEYS:
        assert 0.0 <= metrics[key] <= 1.0
    # The numbers are those of the predictions file, recomputed here.
    manifest = json.loads((synthref_split / "manifest.json").read_text())
    vocabulary = Vocabulary.from_manifest(manifest)
    joint = [parse_description(r["description"], vocabulary).matches(r["labels"])["joint"] for r in records]
    colour = [parse_description(r["description"], vocabulary).matches(r["labels"])["colour"] for r in records]
    swap = [parse_description(r["swap"]["description"], vocabulary).matches(r["swap"]["labels"])["joint"]
            for r in records]  # fmt: skip
    assert metrics["joint_accuracy"] == sum(joint) / 4 and metrics["color_accuracy"] == sum(colour) / 4
    assert metrics["swap_joint_accuracy"] == sum(swap) / 4
    for record in records:
        assert record["swap"]["object"] != record["object"]
        objects = manifest["videos"][int(record["video"].split("_")[1])]["objects"]
        assert record["swap"]["labels"] == {k: objects[record["swap"]["object"]][k] for k in record["labels"]}
    assert "SynthRef" in (out / "report.md").read_text()


def test_eval_sot_reproduces_csrt_on_otb_crossing(tmp_path: Path, reference_dir: Path) -> None:
    out = tmp_path / "sot"
    data = f"otb:{reference_dir / 'otb_crossing'}"
    assert _cli("eval", "sot", "--model", "opencv-csrt", "--data", data, "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["success_auc"] == pytest.approx(0.700397, abs=1e-6)
    assert metrics["precision_20px"] == 1.0
    assert (out / "success_plot.png").stat().st_size > 0 and (out / "precision_plot.png").stat().st_size > 0
    # A rerun rescoring the stored boxes gives the same numbers without tracking again.
    assert _cli("eval", "sot", "--model", "opencv-csrt", "--data", data, "--out", str(out)) == 0
    assert json.loads((out / "metrics.json").read_text())["success_auc"] == metrics["success_auc"]


def test_eval_reg_on_videoref45k(tmp_path: Path, synthref_split: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "reg"
    data = f"videoref45k:{synthref_split / 'videoref45k.json'}"
    argv = ["eval", "reg", "--model", str(tiny_model_dir), "--data", data, "--out", str(out), "--limit", "2"]
    assert _cli(*argv, "--max-new-tokens", "6") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"Bleu_4", "METEOR", "ROUGE_L", "CIDEr"} <= set(metrics) and metrics["num_samples"] == 2
    records = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert all(r["references"] and isinstance(r["prediction"], str) and r["given_track"] for r in records)


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "synthref", "--model", "MODEL", "--data", "/nonexistent/split"],
        ["eval", "synthref", "--model", "/nonexistent/model", "--data", "SPLIT"],
        ["eval", "sot", "--model", "opencv-csrt", "--data", "nosuchformat:/tmp"],
        ["eval", "sot", "--model", "opencv-csrt", "--data", "otb:/nonexistent/otb"],
        ["eval", "reg", "--model", "/nonexistent/model", "--data", "videoref45k:SPLIT/videoref45k.json"],
        ["eval", "reg", "--model", "MODEL", "--data", "videoref45k"],
        ["eval", "rsot", "--model", "MODEL", "--data", "elysium:x.json"],
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], tmp_path: Path, synthref_split: Path, tiny_model_dir: Path, capsys
) -> None:
    argv = [a.replace("SPLIT", str(synthref_split)).replace("MODEL", str(tiny_model_dir)) for a in argv]
    assert _cli(*argv, "--out", str(tmp_path / "out")) == 2 if argv[1] != "rsot" else _cli(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
