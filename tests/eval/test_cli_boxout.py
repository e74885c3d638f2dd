"""``artemis eval rsot`` and ``artemis eval sot --model`` with a trained box-output model, as subprocesses.

A tiny ``video_layout="frames"`` model with ``tasks=["describe", "boxes"]`` is trained for a few dozen steps
on box-out clips of a generated SynthRef split (the loss must fall), saved, then evaluated on another split.
Nothing here asserts tracking quality: a model this small and this briefly trained writes mostly unreadable
boxes, which is exactly what the parse-failure accounting has to survive.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from artemis import ArtemisModel
from artemis.data import SynthRefConfig, generate_split
from artemis.data.box_output_dataset import BoxOutDataset
from artemis.data.collator import ArtemisCollator
from artemis.eval.runner import PREDICTIONS_FILE
from artemis.model import build_tiny_model

KEYS = {"success_auc", "precision_20px", "norm_precision_020", "ao", "sr50"}
STEPS = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, list[float]]:
    root = tmp_path_factory.mktemp("boxout-e2e")
    config = SynthRefConfig(width=64, height=48, num_frames=15, min_objects=2, max_objects=2)
    train = generate_split(root, 4, seed=0, split="train", config=config).split_dir
    test = generate_split(root, 1, seed=0, split="test", config=config).split_dir
    texts = [r["object_description"] for s in (train, test) for r in json.loads((s / "elysium.json").read_text())]
    model, processor = build_tiny_model(
        texts, seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"]
    )
    dataset = BoxOutDataset.from_files([train / "elysium.json"], processor, model.config)
    loader = DataLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        collate_fn=ArtemisCollator(processor, model.config),
        generator=torch.Generator().manual_seed(0),
    )
    trainable = [p for name, p in model.named_parameters() if not name.startswith("vision_tower")]
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    losses: list[float] = []
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        while len(losses) < STEPS:
            for batch in loader:
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.item())
                if len(losses) == STEPS:
                    break
    model.eval()
    model_dir = root / "model"
    ArtemisModel(model, processor).save_pretrained(model_dir)
    return model_dir, test / "elysium.json", losses


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artemis.cli", *args], capture_output=True, text=True, check=False)


def _lines(out: Path) -> list[str]:
    path = out / PREDICTIONS_FILE
    return path.read_text().splitlines() if path.is_file() else []


def test_training_loss_falls(trained) -> None:
    _, _, losses = trained
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_eval_rsot_writes_everything_and_resumes_after_a_kill(trained, tmp_path: Path) -> None:
    model_dir, data, _ = trained
    argv = ["eval", "rsot", "--model", str(model_dir), "--data", f"elysium:{data}", "--max-new-tokens", "40"]
    whole = tmp_path / "whole"
    done = run(*argv, "--out", str(whole), "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert set(printed) == KEYS
    metrics = json.loads((whole / "metrics.json").read_text())
    assert set(metrics) >= KEYS and metrics["num_sequences"] == 2 and metrics["num_frames"] == 30
    assert {"num_unparsed_frames", "num_invalid_boxes", "first_frame_iou"} <= set(metrics)
    records = [json.loads(line) for line in _lines(whole)]
    assert len(records) == 2
    for record in records:
        assert len(record["boxes_xywh_1based"]) == 15 and len(record["texts"]) == 2  # clips 0-7, 7-14
        assert record["expression"]
    assert metrics["num_unparsed_frames"] == sum(len(r["unparsed_frames"]) for r in records)
    report = (whole / "report.md").read_text()
    assert "RSOT evaluation" in report and "readable box" in report
    for plot in ("success_plot.png", "precision_plot.png"):
        assert (whole / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Kill a second run once its first sequence is on disk, then rerun: it resumes and scores the same.
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "artemis.cli", *argv, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not _lines(killed) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first_lines = _lines(killed)
    assert 1 <= len(first_lines) <= 2
    resumed = run(*argv, "--out", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert _lines(killed)[: len(first_lines)] == first_lines and len(_lines(killed)) == 2
    again = json.loads((killed / "metrics.json").read_text())
    assert {k: again[k] for k in KEYS} == {k: metrics[k] for k in KEYS}


def test_eval_sot_with_the_model_writes_boxes_itself(trained, tmp_path: Path) -> None:
    model_dir, data, _ = trained
    out = tmp_path / "sot"
    argv = ["eval", "sot", "--model", str(model_dir), "--data", f"elysium:{data}", "--out", str(out)]
    done = run(*argv, "--max-new-tokens", "40")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= KEYS and "num_unparsed_frames" in metrics and "first_frame_iou" not in metrics
    records = [json.loads(line) for line in _lines(out)]
    assert len(records) == 2 and all(len(r["texts"]) >= 2 for r in records)
    assert json.loads((out / "run.json").read_text())["boxout"]["max_new_tokens"] == 40
    assert (out / "success_plot.png").is_file() and "box output" in (out / "report.md").read_text()

    # --tracker scores a tracker on the same data; the model is not involved.
    tracked = tmp_path / "tracked"
    done = run("eval", "sot", "--tracker", "opencv-csrt", "--data", f"elysium:{data}", "--out", str(tracked))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in _lines(tracked)]
    assert len(records) == 2 and all("texts" not in r for r in records)
    assert json.loads((tracked / "run.json").read_text())["model"] == "opencv-csrt"
    assert json.loads((tracked / "metrics.json").read_text())["tracker"] == "opencv-csrt"


def test_rsot_and_sot_refuse_a_model_without_boxes(trained, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from artemis.cli import main

    _, data, _ = trained
    for task in ("rsot", "sot"):
        argv = ["eval", task, "--model", str(tiny_model_dir), "--data", f"elysium:{data}", "--out", str(tmp_path)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "not trained to write boxes" in err and str(tiny_model_dir) in err
        assert "tasks: [describe, boxes]" in err
    assert not (tmp_path / PREDICTIONS_FILE).exists()


def test_eval_rsot_records_number_window_and_track_found_and_refuses_a_bad_window(
    trained, tmp_path: Path, capsys
) -> None:
    from artemis.cli import main

    model_dir, data, _ = trained
    out = tmp_path / "options"
    argv = ["eval", "rsot", "--model", str(model_dir), "--data", f"elysium:{data}", "--max-new-tokens", "40"]
    done = run(*argv, "--out", str(out), "--number-window", "2", "--track-found")
    assert done.returncode == 0, done.stderr
    boxout = json.loads((out / "run.json").read_text())["boxout"]
    assert boxout["number_window"] == 2 and boxout["track_found"] is True
    records = [json.loads(line) for line in _lines(out)]
    assert len(records) == 2 and all(len(r["boxes_xywh_1based"]) == 15 for r in records)
    # Resuming with other options is refused: the finished lines were made with these.
    again = run(*argv, "--out", str(out), "--number-window", "1")
    assert again.returncode == 2 and "other settings (boxout differ)" in again.stderr

    bad = tmp_path / "bad"
    assert main([*argv, "--out", str(bad), "--number-window", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "number_window=-1" in err and "use 0" in err
    assert not bad.exists()


def test_eval_sot_in_several_views_records_them_and_refuses_a_bad_count(trained, tmp_path: Path, capsys) -> None:
    from artemis.cli import main

    model_dir, data, _ = trained
    out = tmp_path / "views"
    argv = ["eval", "sot", "--model", str(model_dir), "--data", f"elysium:{data}", "--max-new-tokens", "40"]
    done = run(*argv, "--out", str(out), "--views", "3", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "run.json").read_text())["boxout"]["views"] == 3
    assert set(json.loads(done.stdout)) >= KEYS
    records = [json.loads(line) for line in _lines(out)]
    assert len(records) == 2 and all(len(r["boxes_xywh_1based"]) == 15 for r in records)
    again = run(*argv, "--out", str(out))  # one view: not the settings the finished lines were made with
    assert again.returncode == 2 and "other settings (boxout differ)" in again.stderr

    bad = tmp_path / "bad"
    assert main([*argv, "--out", str(bad), "--views", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "views=0 is not a whole number >= 1" in err
    assert not bad.exists()
