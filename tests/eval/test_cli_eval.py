"""``artemis eval`` end to end: the real entry point on real files, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from artemis.cli import main

KEYS = {"success_auc", "precision_20px", "norm_precision_020", "ao", "sr50"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artemis.cli", *args], capture_output=True, text=True, check=False)


@pytest.mark.reference
def test_tracking_json_and_outputs(reference_dir: Path, tmp_path: Path) -> None:
    crossing = reference_dir / "otb_crossing"
    done = run(
        "eval", "tracking", "--pred", str(crossing / "pred_opencv_TrackerCSRT.txt"),
        "--gt", str(crossing / "groundtruth_rect.txt"), "--convention", "pytracking", "--json", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    assert set(scores) == KEYS
    assert scores["success_auc"] == pytest.approx(0.700397, abs=1e-6)
    assert scores["ao"] == pytest.approx(0.713053, abs=1e-6)
    for name in ("metrics.json", "report.md", "success_plot.png", "precision_plot.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "success_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "metrics.json").read_text())["convention"] == "pytracking"
    assert "0.700397" in (tmp_path / "report.md").read_text()


@pytest.mark.reference
def test_tracking_directories_lasot_layout(reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    preds = tmp_path / "preds"
    preds.mkdir()
    for name in ("airplane-1", "bear-5", "yoyo-15"):  # the GT as prediction: only absent frames are missed
        (preds / f"{name}.txt").write_text((reference_dir / "lasot" / f"{name}.groundtruth.txt").read_text())
    code = main(["eval", "tracking", "--pred", str(preds), "--gt", str(reference_dir / "lasot"), "--json"])
    assert code == 0
    scores = json.loads(capsys.readouterr().out)
    visible = [1.0, 1 - 134 / 1000, 1 - 33 / 1000]
    assert scores["precision_20px"] == pytest.approx(sum(visible) / 3)
    (preds / "bear-5.txt").unlink()
    code = main(["eval", "tracking", "--pred", str(preds), "--gt", str(reference_dir / "lasot")])
    assert code == 2
    assert "bear-5" in capsys.readouterr().err


def test_tracking_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1\t1\t10\t10\n2\t2\t10\t10\n")
    pred = tmp_path / "pred.txt"
    pred.write_text("1,1,10,10\n2,2,10,10\n")
    assert main(["eval", "tracking", "--pred", str(pred), "--gt", str(gt), "--convention", "got10k"]) == 0
    out = capsys.readouterr().out
    assert "success_auc" in out and "0.952381" in out


def test_tracking_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,10\n2,2,10,10\n")
    pred = tmp_path / "pred.txt"
    pred.write_text("1,1,10,10\n2,2,ten,10\n")
    done = run("eval", "tracking", "--pred", str(pred), "--gt", str(gt))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pred.txt, line 2" in lines[0] and "Traceback" not in done.stderr
    assert main(["eval", "tracking", "--pred", str(tmp_path / "missing.txt"), "--gt", str(gt)]) == 2
    assert "missing.txt" in capsys.readouterr().err


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.slow
def test_captions_json_and_outputs(tmp_path: Path) -> None:
    pred = _write_jsonl(
        tmp_path / "pred.jsonl",
        [
            {"id": "v1", "prediction": "the red circle moves left", "references": ["the red circle moves left"]},
            {"id": "v2", "prediction": "a blue square", "references": ["a blue square stays", "the square"]},
        ],
    )
    done = run("eval", "captions", "--pred", str(pred), "--json", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    corpus = json.loads(done.stdout)
    assert {"Bleu_4", "METEOR", "ROUGE_L", "CIDEr"} <= set(corpus)
    assert (tmp_path / "out" / "report.md").is_file()
    rows = [json.loads(line) for line in (tmp_path / "out" / "per_sample.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["v1", "v2"] and "CIDEr" in rows[0]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["num_samples"] == 2


def test_captions_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "v1", "prediction": "x", "references": ["x"]}\n{"id": "v2", "prediction": \n')
    assert main(["eval", "captions", "--pred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad.jsonl, line 2" in err
    bad.write_text('{"id": "v1", "prediction": "x"}\n')
    assert main(["eval", "captions", "--pred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "references" in err
    assert main(["eval", "captions", "--pred", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_captions_mismatched_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred = _write_jsonl(tmp_path / "pred.jsonl", [{"id": "v1", "prediction": "x"}, {"id": "v2", "prediction": "y"}])
    refs = _write_jsonl(tmp_path / "refs.jsonl", [{"id": "v1", "references": ["x"]}, {"id": "v3", "references": "z"}])
    code = main(["eval", "captions", "--pred", str(pred), "--refs", str(refs)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'v2'" in err and "'v3'" in err


def test_eval_without_task_prints_usage(capsys: pytest.CaptureFixture) -> None:
    assert main(["eval"]) == 2
    assert "tracking" in capsys.readouterr().err
