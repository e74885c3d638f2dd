"""Success/precision plots and Markdown reports; every file is written atomically (``artemis.io``)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from artemis.eval.tracking import IOU_THRESHOLDS, PIXEL_THRESHOLDS, TrackingScores
from artemis.io import write_atomic, write_text_atomic

__all__ = ["format_metrics_table", "write_report", "write_tracking_plots"]


def _figure():
    # An explicit Agg canvas instead of pyplot: no global figure state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.8), dpi=150)
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return write_atomic(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def write_tracking_plots(scores_by_name: Mapping[str, TrackingScores], out_dir: str | Path) -> list[Path]:
    """Write ``success_plot.png`` and ``precision_plot.png`` for one or more trackers.

    As in the LaSOT toolkit and got-10k, curves are sorted best first and the legend shows each
    tracker's AUC (success plot) or precision at 20 px (precision plot), ``[0.700] name``.

    Args:
        scores_by_name: ``{tracker name: TrackingScores}``.
        out_dir: output directory (created).

    Returns:
        The two PNG paths.
    """
    if not scores_by_name:
        raise ValueError("no scores to plot")
    out_dir = Path(out_dir)
    plots = [
        ("success_plot.png", "Success plot of OPE", "Overlap threshold", "Success rate", "success"),
        ("precision_plot.png", "Precision plot of OPE", "Location error threshold (pixels)", "Precision", "precision"),
    ]
    written = []
    for filename, title, xlabel, ylabel, kind in plots:
        figure = _figure()
        axes = figure.add_subplot()
        key = (lambda s: s.success_auc) if kind == "success" else (lambda s: s.precision_20px)
        ranked = sorted(scores_by_name.items(), key=lambda item: -_sortable(key(item[1])))
        for name, scores in ranked:
            x = IOU_THRESHOLDS if kind == "success" else PIXEL_THRESHOLDS
            y = scores.success_curve if kind == "success" else scores.precision_curve
            axes.plot(x, y, linewidth=2, label=f"[{key(scores):.3f}] {name}")
        axes.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, x[-1]), ylim=(0, 1.02))
        axes.grid(True, linestyle=":")
        axes.legend(loc="lower left" if kind == "success" else "lower right", fontsize=8)
        written.append(_save_png(figure, out_dir / filename))
    return written


def _sortable(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """A Markdown table: ``{metric: value}`` as two columns, ``{name: {metric: value}}`` as a grid."""
    if metrics and all(isinstance(v, Mapping) for v in metrics.values()):
        columns: list[str] = []
        for row in metrics.values():
            columns += [c for c in row if c not in columns]
        lines = ["| name | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for name, row in metrics.items():
            lines.append(f"| {name} | " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
        return "\n".join(lines)
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in metrics.items()]
    return "\n".join(lines)


def write_report(
    path: str | Path,
    title: str,
    metrics: Mapping[str, Any],
    notes: str | Sequence[str] = (),
    *,
    images: Sequence[str | Path] = (),
) -> Path:
    """Write a Markdown report: a title, a metrics table, notes, and links to images.

    Args:
        path: the ``.md`` file to write.
        title: the report's heading.
        metrics: ``{metric: value}`` or ``{name: {metric: value}}``.
        notes: a paragraph or a list of bullet points (protocol, convention, skipped metrics).
        images: image paths, linked relative to the report.
    """
    path = Path(path)
    parts = [f"# {title}", "", format_metrics_table(metrics), ""]
    if isinstance(notes, str):
        parts += [notes, ""] if notes else []
    elif notes:
        parts += [f"- {note}" for note in notes] + [""]
    for image in images:
        image = Path(image)
        try:
            link = image.relative_to(path.parent)
        except ValueError:
            link = image
        parts += [f"![{image.stem}]({link.as_posix()})", ""]
    return write_text_atomic(path, "\n".join(parts))
