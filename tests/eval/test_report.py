"""Plots and Markdown reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from artemis.eval.report import format_metrics_table, write_report, write_tracking_plots
from artemis.eval.tracking import score_sequence


def test_tracking_plots_for_several_trackers(tmp_path: Path) -> None:
    gt = np.array([[1.0 + i, 1.0, 10.0, 10.0] for i in range(5)])
    drift = gt.copy()
    drift[2:, 0] += 30
    paths = write_tracking_plots(
        {"good": score_sequence(gt, gt), "drift": score_sequence(drift, gt)}, tmp_path / "plots"
    )
    assert [p.name for p in paths] == ["success_plot.png", "precision_plot.png"]
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "plots").glob("*.tmp"))  # atomic writes leave nothing behind


def test_report_tables(tmp_path: Path) -> None:
    path = write_report(
        tmp_path / "r" / "report.md",
        "Title",
        {"CIDEr": 1.2421919, "count": 3, "missing": float("nan")},
        ["a note"],
        images=[tmp_path / "r" / "success_plot.png"],
    )
    text = path.read_text()
    assert text.startswith("# Title\n")
    assert "| CIDEr | 1.242192 |" in text and "| missing | nan |" in text and "- a note" in text
    assert "](success_plot.png)" in text
    grid = format_metrics_table({"csrt": {"auc": 0.7}, "mil": {"auc": 0.18, "p20": 0.26}})
    assert grid.splitlines()[0] == "| name | auc | p20 |"
    assert "| csrt | 0.700000 |  |" in grid
