"""One-pass tracking metrics, replicating three third-party evaluators rule for rule.

The protocol (DESIGN.md, "Evaluation protocols"): frame 1 of the prediction is set to the ground truth;
success is the fraction of frames with IoU > t over 21 thresholds ``0:0.05:1`` and its mean is the AUC;
precision counts frames whose centre error (centre ``x + (w - 1) / 2``) is <= 20 px; normalised
precision counts frames whose size-normalised centre error is <= 0.20.

The three evaluators agree on that much and differ on everything else (invalid boxes, absent frames,
length mismatches, the normalised error, IoU corner cases). ``convention`` picks whose rules apply:

* ``"lasot"``: HengLan/LaSOT_Evaluation_Toolkit (``utils/calc_seq_err_robust.m``, ``eval_tracker.m``,
  ``plot_draw_save.m``), the MATLAB code of the LaSOT paper.
* ``"pytracking"``: visionml/pytracking ``pytracking/analysis/extract_results.py`` + ``plot_results.py``.
* ``"got10k"``: got-10k/toolkit ``got10k/experiments/otb.py`` (``ExperimentOTB``) and ``lasot.py``
  (``ExperimentLaSOT``), ``got10k/utils/metrics.py``.

pytracking and got-10k branch on the data set of the sequence; ``dataset`` selects the branch
(``"lasot"`` when absent flags are given, ``"otb"`` otherwise). Every rule is listed with its source in
``docs/evaluation.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from artemis.errors import AnnotationError, BoxError

logger = logging.getLogger(__name__)

Convention = Literal["lasot", "pytracking", "got10k"]
Dataset = Literal["otb", "lasot"]
CONVENTIONS: tuple[str, ...] = ("lasot", "pytracking", "got10k")

__all__ = [
    "CONVENTIONS",
    "IOU_THRESHOLDS",
    "NORM_THRESHOLDS",
    "PIXEL_THRESHOLDS",
    "TrackingScores",
    "read_absent_file",
    "read_boxes_file",
    "score_dataset",
    "score_sequence",
]

# np.linspace(0, 1, 21) is i * 0.05 in floating point; so are Octave's 0:0.05:1 and got-10k's thresholds.
IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
# torch.arange(0, 1.05, 0.05) (pytracking) accumulates in vector chunks and lands one ulp above
# i * 0.05 at 0.65 and 0.75 (x86-64 CPU). Only an IoU of exactly that double is affected; kept for
# fidelity.
_PYTRACKING_IOU_THRESHOLDS = IOU_THRESHOLDS.copy()
_PYTRACKING_IOU_THRESHOLDS[[13, 15]] = np.nextafter(IOU_THRESHOLDS[[13, 15]], 2.0)
PIXEL_THRESHOLDS = np.arange(51, dtype=np.float64)
# LaSOT ((0:50)/100) and pytracking (arange(51)/100) divide; got-10k uses linspace(0, 0.5, 51).
NORM_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0
_GOT10K_NORM_THRESHOLDS = np.linspace(0.0, 0.5, 51)
_MATLAB_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class TrackingScores:
    """Scores of one sequence or a data set, all in ``[0, 1]``.

    Attributes:
        success_auc: mean of ``success_curve`` (the success-plot AUC).
        precision_20px: ``precision_curve`` at 20 px.
        norm_precision_020: ``norm_precision_curve`` at 0.20.
        ao: average overlap (mean IoU; see ``docs/evaluation.md`` for each convention's frames).
        sr50: success rate at IoU > 0.5 (``success_curve[10]``).
        success_curve: (21,) success rate at IoU thresholds 0, 0.05, ..., 1.
        precision_curve: (51,) precision at 0..50 px.
        norm_precision_curve: (51,) normalised precision at 0, 0.01, ..., 0.5.
        num_frames: ground-truth frames scored (summed over sequences).
    """

    success_auc: float
    precision_20px: float
    norm_precision_020: float
    ao: float
    sr50: float
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    num_frames: int

    @property
    def norm_precision_auc(self) -> float:
        """Mean of the normalised-precision curve: what got-10k's ``ExperimentLaSOT`` reports."""
        return float(np.mean(self.norm_precision_curve))

    def to_dict(self) -> dict[str, float]:
        """The five scalar scores (``success_auc``, ``precision_20px``, ``norm_precision_020``, ``ao``,
        ``sr50``), JSON-ready; curves and ``num_frames`` stay attributes."""
        return {
            "success_auc": float(self.success_auc),
            "precision_20px": float(self.precision_20px),
            "norm_precision_020": float(self.norm_precision_020),
            "ao": float(self.ao),
            "sr50": float(self.sr50),
        }


# --- files ------------------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[,\s]+")


def read_boxes_file(path: str | Path) -> np.ndarray:
    """Read an OTB/LaSOT box file: one ``x, y, w, h`` per line, comma-, tab- or space-separated.

    Blank lines are skipped; ``nan``/``NaN`` is accepted (trackers write it for a lost target).

    Returns:
        (N, 4) float64 array.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        AnnotationError: naming the file and line of a line that is not 4 numbers.
    """
    path = Path(path)
    rows: list[list[float]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            parts = [p for p in _SEPARATORS.split(text) if p]
            try:
                values = [float(p) for p in parts]
            except ValueError:
                values = []
            if len(values) != 4:
                raise AnnotationError(
                    f"{path}, line {number}: {text[:60]!r} is not a box; expected 4 numbers x,y,w,h "
                    "separated by commas, tabs or spaces"
                )
            rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def read_absent_file(path: str | Path) -> np.ndarray:
    """Read a LaSOT ``absent``/``full_occlusion`` file: one ``0``/``1`` per line (1 = target absent).

    Returns:
        (N,) bool array.

    Raises:
        AnnotationError: naming the file and line of a value other than 0 or 1.
    """
    path = Path(path)
    flags: list[bool] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = [p for p in _SEPARATORS.split(line.strip()) if p]
            for part in parts:  # LaSOT's own files are one flag a line; a comma-separated row also works
                try:
                    value = float(part)
                except ValueError:
                    value = -1.0
                if value not in (0.0, 1.0):
                    raise AnnotationError(f"{path}, line {number}: {part!r} is not an absent flag; expected 0 or 1")
                flags.append(value == 1.0)
    return np.asarray(flags, dtype=bool)


# --- per-sequence rules -----------------------------------------------------------------------------


@dataclass
class _Curves:
    success: np.ndarray  # (21,)
    precision: np.ndarray  # (51,)
    norm_precision: np.ndarray  # (51,)
    ao: float
    num_frames: int


def _centres(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, :2] + (boxes[:, 2:] - 1) / 2  # (N, 2), OTB centre of a 1-based box


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum((a - b) ** 2, axis=1))


def _lasot_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``calc_rect_int.m``: inclusive pixel corners; MATLAB ``min``/``max`` skip NaN (``np.fmin``)."""
    right_a, top_a = a[:, 0] + a[:, 2] - 1, a[:, 1] + a[:, 3] - 1
    right_b, top_b = b[:, 0] + b[:, 2] - 1, b[:, 1] + b[:, 3] - 1
    inter_w = np.fmax(0, np.fmin(right_a, right_b) - np.fmax(a[:, 0], b[:, 0]) + 1)
    inter_h = np.fmax(0, np.fmin(top_a, top_b) - np.fmax(a[:, 1], b[:, 1]) + 1)
    inter = inter_w * inter_h
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def _lasot_sequence(pred: np.ndarray, gt: np.ndarray, absent: np.ndarray | None) -> _Curves:
    n = len(gt)
    if len(pred) == 0:
        # eval_tracker.m breaks out on an empty result and leaves the sequence's curves at zero.
        logger.warning("empty prediction: the LaSOT toolkit leaves this sequence's curves at zero")
        return _Curves(np.zeros(21), np.zeros(51), np.zeros(51), float("nan"), n)
    if len(pred) < n:
        raise AnnotationError(
            f"prediction has {len(pred)} boxes for {n} ground-truth frames; the LaSOT toolkit needs at least "
            "one box per frame (longer predictions are truncated)"
        )
    results = pred[:n].copy()
    for i in range(1, n):
        # Invalid (NaN, w <= 0 or h <= 0) -> previous frame's box, unless the GT row has a NaN. Runs
        # before frame 1 is set to GT, so a NaN frame-1 prediction can propagate.
        r = results[i]
        if (np.isnan(r).any() or r[2] <= 0 or r[3] <= 0) and not np.isnan(gt[i]).any():
            results[i] = results[i - 1]
    results[0] = gt[0]
    anno = gt
    if absent is not None:
        results, anno = results[~absent], gt[~absent]
    with np.errstate(invalid="ignore", divide="ignore"):
        centre, centre_gt = _centres(results), _centres(anno)
        err = _distance(centre, centre_gt)
        norm_err = _distance(centre / anno[:, 2:], centre_gt / anno[:, 2:])
        ok = np.all(anno > 0, axis=1)  # every GT value > 0, x and y included; NaN fails
        iou = np.full(len(anno), -1.0)
        iou[ok] = _lasot_iou(results[ok], anno[ok])
    # Frames with invalid GT get error -1, which is <= every threshold: they count as precision hits.
    err[~ok] = -1.0
    norm_err[~ok] = -1.0
    denominator = n + _MATLAB_EPS  # all frames, absent ones included
    with np.errstate(invalid="ignore"):
        success = np.sum(iou[:, None] > IOU_THRESHOLDS, axis=0) / denominator
        precision = np.sum(err[:, None] <= PIXEL_THRESHOLDS, axis=0) / denominator
        norm_precision = np.sum(norm_err[:, None] <= NORM_THRESHOLDS, axis=0) / denominator
    # A frame still without a box after the replacement (a NaN copied from frame 1, or after a hidden frame)
    # overlaps nothing: IoU 0, as the success curve already counts it (NaN > threshold is False).
    ao = float(np.mean(np.nan_to_num(iou[ok], nan=0.0))) if ok.any() else float("nan")
    return _Curves(success, precision, norm_precision, ao, n)


def _pytracking_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, :2] + a[:, 2:] - 1.0, b[:, :2] + b[:, 2:] - 1.0)
    size = np.clip(br - tl + 1.0, 0, None)
    inter = size[:, 0] * size[:, 1]
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def _pytracking_sequence(pred: np.ndarray, gt: np.ndarray, absent: np.ndarray | None, dataset: Dataset) -> _Curves:
    pred = pred.copy()
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise BoxError(
            "prediction has NaN or negative sizes, which pytracking refuses ('Error: Invalid results'); "
            "use convention='lasot' to replace them by the previous box, or 'got10k' to score them as is"
        )
    if np.isnan(gt).any():
        raise AnnotationError("ground truth has NaN values, which pytracking refuses ('NaNs in annotation')")
    n = len(gt)
    for i in range(1, len(pred)):
        if (pred[i, 2:] == 0).any():
            if i >= n:
                raise AnnotationError(
                    f"prediction row {i + 1} lies past the {n} ground-truth frames and has zero size: "
                    "pytracking fails there (IndexError)"
                )
            pred[i] = pred[i - 1]
    if len(pred) > n:
        pred = pred[:n]
    elif len(pred) < n:
        if dataset == "lasot" or len(pred) == 0:
            raise AnnotationError(
                f"prediction has {len(pred)} boxes for {n} ground-truth frames; pytracking refuses a short "
                "prediction on LaSOT ('Mis-match in tracker prediction and GT lengths')"
            )
        pred = np.concatenate([pred, np.zeros((n - len(pred), 4))])  # other data sets: zero boxes
    pred[0] = gt[0]
    visible = ~absent if absent is not None else np.ones(n, dtype=bool)
    valid = np.all(gt[:, 2:] > 0, axis=1) & visible
    with np.errstate(invalid="ignore", divide="ignore"):
        centre, centre_gt = _centres(pred), _centres(gt)
        err = _distance(centre, centre_gt)
        norm_err = _distance(centre / gt[:, 2:], centre_gt / gt[:, 2:])
        iou = _pytracking_iou(pred, gt)
    err[~valid] = np.inf
    norm_err[~valid] = -1.0  # sic: an invalid frame is a normalised-precision hit ...
    iou[~valid] = -1.0
    if dataset == "lasot":
        norm_err[~visible] = np.inf  # ... except an absent frame on LaSOT
        err[~visible] = np.inf
    if np.isnan(iou).any():
        raise BoxError("pytracking refuses a sequence whose overlaps contain NaN ('Nans in calculated overlap')")
    ao = float(np.mean(iou[valid])) if valid.any() else float("nan")
    success = np.sum(iou[:, None] > _PYTRACKING_IOU_THRESHOLDS, axis=0) / n
    precision = np.sum(err[:, None] <= PIXEL_THRESHOLDS, axis=0) / n
    norm_precision = np.sum(norm_err[:, None] <= NORM_THRESHOLDS, axis=0) / n
    return _Curves(success, precision, norm_precision, ao, n)


def _got10k_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``rect_iou``: continuous corners, ``eps`` in the union, clipped to [0, 1] (NaN stays NaN)."""
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + _MATLAB_EPS), 0.0, 1.0)


def _got10k_sequence(pred: np.ndarray, gt: np.ndarray, dataset: Dataset) -> _Curves:
    if len(pred) == 0:
        raise AnnotationError("prediction is empty; got-10k needs one box per frame")
    boxes, anno = pred.copy(), gt
    boxes[0] = anno[0]
    if len(boxes) != len(anno):
        if dataset != "lasot":
            raise AnnotationError(
                f"prediction has {len(boxes)} boxes for {len(anno)} ground-truth frames; got-10k's "
                "ExperimentOTB asserts equal lengths"
            )
        # ExperimentLaSOT truncates both to the shorter one (with a warning).
        logger.warning("prediction has %d boxes for %d GT frames; truncating both", len(boxes), len(anno))
        m = min(len(boxes), len(anno))
        boxes, anno = boxes[:m], anno[:m]
    if dataset == "lasot":
        keep = ~np.any(np.isnan(anno), axis=1)  # ExperimentLaSOT drops NaN-GT frames entirely
        boxes, anno = boxes[keep], anno[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = _got10k_iou(boxes, anno)
        centre, centre_gt = _centres(boxes), _centres(anno)
        err = _distance(centre, centre_gt)
        norm_err = np.sqrt(np.sum(((centre - centre_gt) / np.maximum(1.0, anno[:, 2:])) ** 2, axis=1))
        success = np.mean(iou[:, None] > IOU_THRESHOLDS, axis=0)
        precision = np.mean(err[:, None] <= PIXEL_THRESHOLDS, axis=0)
        norm_precision = np.mean(norm_err[:, None] <= _GOT10K_NORM_THRESHOLDS, axis=0)
    ao = float(np.mean(np.nan_to_num(iou, nan=0.0))) if len(iou) else float("nan")
    return _Curves(success, precision, norm_precision, ao, len(gt))


# --- public API -------------------------------------------------------------------------------------


def _as_input(boxes: np.ndarray | Iterable, what: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise BoxError(f"{what} has shape {array.shape}; expected (N, 4) boxes x, y, w, h")
    return array


def _sequence_curves(pred, gt, absent, convention: str, dataset: Dataset | None) -> _Curves:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    pred, gt = _as_input(pred, "prediction"), _as_input(gt, "ground truth")
    if len(gt) == 0:
        raise AnnotationError("ground truth is empty; expected one box per frame")
    flags = None
    if absent is not None:
        flags = np.asarray(absent).astype(bool).reshape(-1)
        if len(flags) != len(gt):
            raise AnnotationError(
                f"{len(flags)} absent flags for {len(gt)} ground-truth frames; expected one per frame"
            )
    branch: Dataset = dataset or ("lasot" if flags is not None else "otb")
    if dataset not in (None, "otb", "lasot"):
        raise ValueError(f"unknown dataset {dataset!r}; expected 'otb' or 'lasot'")
    if convention == "lasot":
        return _lasot_sequence(pred, gt, flags)
    if convention == "pytracking":
        return _pytracking_sequence(pred, gt, flags, branch)
    if flags is not None and flags.any():
        logger.info("got-10k convention ignores absent flags (%d absent frames scored as is)", int(flags.sum()))
    return _got10k_sequence(pred, gt, branch)


def _mean_rows(curves: np.ndarray, drop_zero_rows: bool) -> np.ndarray:
    if drop_zero_rows:
        # plot_draw_save.m averages only sequences whose curve sums to more than eps.
        curves = curves[curves.sum(axis=1) > _MATLAB_EPS]
    if len(curves) == 0:
        return np.full(curves.shape[1], np.nan)
    return curves.mean(axis=0)


def score_dataset(
    sequences: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    convention: Convention = "lasot",
    *,
    dataset: Dataset | None = None,
) -> TrackingScores:
    """Score several sequences: the mean over sequences of the per-sequence curves, as the toolkits do.

    Args:
        sequences: ``(pred_xywh, gt_xywh, absent)`` per sequence; boxes (N, 4) 1-based ``x, y, w, h``,
            ``absent`` (N,) bool or ``None``.
        convention: whose rules to follow: ``"lasot"``, ``"pytracking"`` or ``"got10k"``.
        dataset: the toolkit branch for pytracking/got-10k: ``"lasot"`` or ``"otb"``; by default
            ``"lasot"`` for a sequence with absent flags and ``"otb"`` otherwise.

    Returns:
        The data-set scores; ``ao`` is the mean of the per-sequence AOs.

    Raises:
        AnnotationError, BoxError: where the chosen toolkit refuses the input (see docs/evaluation.md).
    """
    per_sequence = [_sequence_curves(p, g, a, convention, dataset) for p, g, a in sequences]
    if not per_sequence:
        raise AnnotationError("no sequences to score")
    drop = convention == "lasot"
    success = _mean_rows(np.stack([c.success for c in per_sequence]), drop)
    precision = _mean_rows(np.stack([c.precision for c in per_sequence]), drop)
    norm_precision = _mean_rows(np.stack([c.norm_precision for c in per_sequence]), drop)
    return TrackingScores(
        success_auc=float(np.mean(success)),
        precision_20px=float(precision[20]),
        norm_precision_020=float(norm_precision[20]),
        ao=float(np.mean([c.ao for c in per_sequence])),
        sr50=float(success[10]),
        success_curve=success,
        precision_curve=precision,
        norm_precision_curve=norm_precision,
        num_frames=sum(c.num_frames for c in per_sequence),
    )


def score_sequence(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    absent: np.ndarray | None = None,
    *,
    convention: Convention = "lasot",
    dataset: Dataset | None = None,
) -> TrackingScores:
    """Score one sequence as the chosen toolkit scores a one-sequence data set.

    Args:
        pred_xywh: (N, 4) predicted boxes, 1-based ``x, y, w, h`` (OTB convention); row 1 is replaced by
            the ground truth.
        gt_xywh: (N, 4) ground-truth boxes in the same convention.
        absent: (N,) flags, true where the target is absent (LaSOT ``absent.txt``), or ``None``.
        convention: ``"lasot"`` (default), ``"pytracking"`` or ``"got10k"``.
        dataset: toolkit branch for pytracking/got-10k (see :func:`score_dataset`).

    Returns:
        :class:`TrackingScores` with scores in ``[0, 1]``.

    Example:
        >>> gt = np.array([[1, 1, 10, 10], [2, 2, 10, 10]])
        >>> score_sequence(gt, gt).precision_20px
        1.0
    """
    return score_dataset([(pred_xywh, gt_xywh, absent)], convention, dataset=dataset)
