"""``artemis eval sot | rsot --data synthref:SPLIT_DIR``: a SynthRef split, each target from its first visible box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.cli import main
from artemis.data import SynthRefConfig, generate_split
from artemis.eval.runner import PREDICTIONS_FILE
from artemis.model import build_tiny_model

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12, min_objects=2, max_objects=3)


def _first_visible(record: dict) -> int:
    return next(i for i, box in enumerate(record["box"]) if box)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-video split in which some target first shows after frame 0 (the first seed that gives one)."""
    root = tmp_path_factory.mktemp("sot-synthref")
    for seed in range(40):
        split_dir = generate_split(root / str(seed), 3, seed=seed, split="test", config=CONFIG).split_dir
        records = json.loads((split_dir / "elysium_track.json").read_text())
        if any(_first_visible(r) > 0 for r in records):
            return split_dir
    raise AssertionError("no seed below 40 gives a target that enters late")


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _predictions(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / PREDICTIONS_FILE).read_text().splitlines())}


def test_sot_with_a_tracker_starts_each_target_on_its_first_visible_box(
    split: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "kcf"
    argv = ["sot", "--tracker", "opencv-kcf", "--data", f"synthref:{split}", "--out", str(out), "--json"]
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0
    scores = json.loads(stdout)
    assert 0.0 < scores["success_auc"] <= 1.0
    records = json.loads((split / "elysium_track.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_sequences"] == len(records)
    assert metrics["num_frames"] == sum(CONFIG.num_frames - _first_visible(r) for r in records)
    predictions = _predictions(out)
    late = [r for r in records if _first_visible(r) > 0]
    for record in records:
        start = _first_visible(record)
        rows = predictions[record["id"]]["boxes_xywh_1based"]
        assert len(rows) == CONFIG.num_frames - start  # frames before the first visible one are not in the run
        assert predictions[record["id"]]["start_frame"] == 0
        x1, y1, x2, y2 = np.array(record["box"][start]) * ([CONFIG.width, CONFIG.height] * 2)
        np.testing.assert_allclose(rows[0], [x1 + 1, y1 + 1, x2 - x1, y2 - y1], atol=1e-6)  # the tracker's seed box
    assert late
    report = (out / "report.md").read_text()
    assert "first frame where the target is visible" in report
    # A second run resumes: nothing is tracked again and the scores are the same.
    code, again, _ = _run(capsys, *argv)
    assert code == 0 and json.loads(again) == scores


def test_rsot_with_a_tiny_random_box_model_runs_on_the_expressions(
    split: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    records = json.loads((split / "elysium_track.json").read_text())
    texts = [r["object_description"] for r in records]
    model, processor = build_tiny_model(
        texts, seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"]
    )
    ArtemisModel(model, processor).save_pretrained(tmp_path / "model")
    out = tmp_path / "rsot"
    argv = ["rsot", "--model", str(tmp_path / "model"), "--data", f"synthref:{split}", "--out", str(out)]
    code, _, err = _run(capsys, *argv, "--limit", "2", "--max-new-tokens", "40", "--json")
    assert code == 0, err
    predictions = _predictions(out)
    assert len(predictions) == 2
    by_id = {r["id"]: r for r in records}
    for sample_id, line in predictions.items():
        assert line["expression"] == by_id[sample_id]["object_description"]
        assert len(line["boxes_xywh_1based"]) == CONFIG.num_frames - _first_visible(by_id[sample_id])
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"num_unparsed_frames", "first_frame_iou"} <= set(metrics)


def test_a_folder_without_the_track_records_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["sot", "--tracker", "opencv-kcf", "--data", f"synthref:{tmp_path}", "--out", str(tmp_path / "o")]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert "elysium_track.json" in err and "artemis data synthref" in err and len(err.strip().splitlines()) == 1
