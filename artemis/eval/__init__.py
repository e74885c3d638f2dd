"""Evaluation: tracking metrics (three toolkit conventions), caption metrics, reports and plots.

``artemis.eval.tracking`` needs only numpy. ``artemis.eval.captions`` needs pycocoevalcap and Java, and
``artemis.eval.report`` needs matplotlib (the ``eval`` extra); they are imported on first use so that
scoring boxes works without them.
"""

from __future__ import annotations

from artemis.eval.tracking import (
    CONVENTIONS,
    TrackingScores,
    read_absent_file,
    read_boxes_file,
    score_dataset,
    score_sequence,
)

__all__ = [
    "CONVENTIONS",
    "TrackingScores",
    "read_absent_file",
    "read_boxes_file",
    "score_dataset",
    "score_sequence",
]
