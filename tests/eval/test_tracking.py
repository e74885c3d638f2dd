"""Tracking metrics: the reference table, then each toolkit's rules on small hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from artemis.errors import AnnotationError, BoxError
from artemis.eval.tracking import (
    CONVENTIONS,
    TrackingScores,
    read_absent_file,
    read_boxes_file,
    score_dataset,
    score_sequence,
)

# /work/shared/reference/README.md, "otb_crossing": values of the three unmodified evaluators.
TABLE = {
    ("CSRT", "got10k"): {"success_auc": 0.700397, "precision_20px": 1.0},
    ("CSRT", "lasot"): {"success_auc": 0.700397, "precision_20px": 1.0, "norm_precision_020": 0.925},
    ("CSRT", "pytracking"): {
        "success_auc": 0.700397,
        "precision_20px": 1.0,
        "norm_precision_020": 0.925,
        "ao": 0.713053,
    },
    ("MIL", "got10k"): {"success_auc": 0.186905, "precision_20px": 0.266667},
    ("MIL", "lasot"): {"success_auc": 0.186905, "precision_20px": 0.266667, "norm_precision_020": 0.25},
    ("MIL", "pytracking"): {
        "success_auc": 0.186905,
        "precision_20px": 0.266667,
        "norm_precision_020": 0.25,
        "ao": 0.189229,
    },
}

HIT = 20 / 21  # AUC of a sequence tracked perfectly: IoU 1 beats every threshold but 1.0


@pytest.mark.reference
@pytest.mark.parametrize(("tracker", "convention"), sorted(TABLE))
def test_reproduces_reference_table(reference_dir: Path, tracker: str, convention: str) -> None:
    folder = reference_dir / "otb_crossing"
    gt = read_boxes_file(folder / "groundtruth_rect.txt")
    pred = read_boxes_file(folder / f"pred_opencv_Tracker{tracker}.txt")
    scores = score_sequence(pred, gt, convention=convention).to_dict()
    for key, expected in TABLE[(tracker, convention)].items():
        assert scores[key] == pytest.approx(expected, abs=1e-6), key


@pytest.mark.reference
@pytest.mark.parametrize(
    ("name", "num_frames", "num_absent"), [("airplane-1", 2788, 0), ("bear-5", 1000, 134), ("yoyo-15", 1000, 33)]
)
def test_lasot_annotations_parse(reference_dir: Path, name: str, num_frames: int, num_absent: int) -> None:
    gt = read_boxes_file(reference_dir / "lasot" / f"{name}.groundtruth.txt")
    absent = read_absent_file(reference_dir / "lasot" / f"{name}.absent.txt")
    assert gt.shape == (num_frames, 4) and absent.shape == (num_frames,) and absent.dtype == bool
    assert int(absent.sum()) == num_absent
    assert not np.isnan(gt).any()
    visible = 1 - num_absent / num_frames
    # A perfect prediction: the LaSOT toolkit and pytracking count absent frames as misses; got-10k
    # ignores the flags (and misses a zero-area GT box: bear-5 frame 484 is 0,0,0,0 and absent).
    zero_area = int(np.sum(gt[:, 2] * gt[:, 3] == 0))
    for convention, fraction in [("lasot", visible), ("pytracking", visible), ("got10k", 1 - zero_area / num_frames)]:
        scores = score_sequence(gt, gt, absent, convention=convention)
        assert scores.success_auc == pytest.approx(HIT * fraction, abs=1e-12), convention
        assert scores.sr50 == pytest.approx(fraction, abs=1e-12), convention


def _gt(n: int = 4) -> np.ndarray:
    return np.array([[11.0 + i, 21.0, 10.0, 20.0] for i in range(n)])


# --- invalid predicted boxes ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[np.nan] * 4, [12.0, 21.0, 0.0, 20.0], [12.0, 21.0, -10.0, 20.0]])
def test_lasot_replaces_invalid_box_by_previous(bad: list[float]) -> None:
    gt = _gt(3)
    pred = gt.copy()
    pred[1] = bad
    scores = score_sequence(pred, gt, convention="lasot")
    # frame 2 gets frame 1's box [11,21,10,20] vs its GT [12,21,10,20]: IoU 9*20 / (2*200 - 180) = 180/220
    iou = 180 / 220
    expected_curve = (2 + (iou > np.linspace(0, 1, 21))) / 3 * (np.linspace(0, 1, 21) < 1)
    np.testing.assert_allclose(scores.success_curve, expected_curve, atol=1e-12)
    assert scores.precision_20px == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [[np.nan] * 4, [12.0, 21.0, -10.0, 20.0], [12.0, 21.0, 10.0, -1.0]])
def test_pytracking_refuses_nan_and_negative(bad: list[float]) -> None:
    pred = _gt(3)
    pred[1] = bad
    with pytest.raises(BoxError, match="pytracking"):
        score_sequence(pred, _gt(3), convention="pytracking")


def test_pytracking_checks_frame_one_before_replacing_it() -> None:
    pred = _gt(3)
    pred[0] = [np.nan] * 4  # frame 1 is replaced by GT, but pytracking checks first
    with pytest.raises(BoxError):
        score_sequence(pred, _gt(3), convention="pytracking")
    assert score_sequence(pred, _gt(3), convention="lasot").success_auc == pytest.approx(HIT)


def test_pytracking_replaces_zero_size_by_previous() -> None:
    gt = _gt(3)
    pred = gt.copy()
    pred[2] = [13.0, 21.0, 10.0, 0.0]
    scores = score_sequence(pred, gt, convention="pytracking")
    iou = 180 / 220  # frame 3 gets frame 2's box, one px off
    assert scores.ao == pytest.approx((2 + iou) / 3)


def test_got10k_scores_invalid_boxes_as_is() -> None:
    gt = _gt(3)
    for bad, hit_px in [([np.nan] * 4, False), ([12.0, 21.0, 0.0, 20.0], True), ([12.0, 21.0, -10.0, 20.0], True)]:
        pred = gt.copy()
        pred[1] = bad
        scores = score_sequence(pred, gt, convention="got10k")
        assert scores.success_auc == pytest.approx(HIT * 2 / 3), bad  # IoU NaN or 0: a miss
        assert scores.precision_20px == pytest.approx((2 + hit_px) / 3), bad  # centre x + (w-1)/2 as is


def test_lasot_nan_frame_one_propagates() -> None:
    # The replacement loop runs before frame 1 is set to GT, so frame 2 copies frame 1's raw NaN.
    gt = _gt(3)
    pred = gt.copy()
    pred[0] = pred[1] = [np.nan] * 4
    scores = score_sequence(pred, gt, convention="lasot")
    assert scores.precision_20px == pytest.approx(2 / 3)
    assert scores.success_auc == pytest.approx(HIT * 2 / 3)
    assert scores.ao == pytest.approx(2 / 3)  # frame 1 is the GT, frame 2 has no box (IoU 0, not NaN), frame 3 exact


def test_lasot_ao_counts_a_frame_left_without_a_box_as_a_miss() -> None:
    # Hidden on frame 1 (its GT row is NaN, so frame 1's NaN prediction stays), then visible: the lost rows
    # after it copy a NaN. Each such frame overlaps nothing; the others are exact.
    gt = _gt(5)
    gt[0] = np.nan
    pred = gt.copy()
    pred[1] = [np.nan] * 4  # copies frame 1's NaN
    scores = score_sequence(pred, gt, convention="lasot")
    assert scores.ao == pytest.approx(3 / 4)  # 4 frames with valid GT, 3 of them exact
    assert scores.success_auc == pytest.approx(HIT * 3 / 5)  # all 5 frames in the denominator


# --- absent frames and invalid ground truth ---------------------------------------------------------


def test_absent_frames() -> None:
    gt = _gt(4)
    absent = np.array([False, False, True, False])
    pred = gt.copy()  # perfect, including on the absent frame
    expected = {"lasot": 0.75, "pytracking": 0.75, "got10k": 1.0}
    for convention, fraction in expected.items():
        scores = score_sequence(pred, gt, absent, convention=convention)
        assert scores.success_auc == pytest.approx(HIT * fraction), convention
        assert scores.precision_20px == pytest.approx(fraction), convention
        assert scores.norm_precision_020 == pytest.approx(fraction), convention
        assert scores.ao == pytest.approx(1.0), convention
        assert scores.sr50 == pytest.approx(fraction), convention


def test_invalid_ground_truth_counts_as_precision_hit() -> None:
    gt = _gt(4)
    gt[2] = [0.0, 21.0, 10.0, 20.0]  # x = 0: invalid for the LaSOT toolkit, fine for pytracking
    pred = gt.copy()
    pred[2] = [200.0, 200.0, 10.0, 20.0]  # a total miss
    lasot = score_sequence(pred, gt, convention="lasot")
    assert lasot.precision_20px == pytest.approx(1.0)  # error -1 <= every threshold
    assert lasot.success_auc == pytest.approx(HIT * 0.75)
    py = score_sequence(pred, gt, convention="pytracking")
    assert py.precision_20px == pytest.approx(0.75)
    gt[2] = [11.0, 21.0, 10.0, 0.0]  # zero height: pytracking's normalised error is -1 (a hit), pixel Inf
    py = score_sequence(pred, gt, convention="pytracking")
    assert (py.precision_20px, py.norm_precision_020) == pytest.approx((0.75, 1.0))


def test_nan_ground_truth() -> None:
    gt = _gt(4)
    gt[3] = np.nan
    pred = gt.copy()
    pred[3] = [11.0, 21.0, 10.0, 20.0]
    with pytest.raises(AnnotationError, match="NaN"):
        score_sequence(pred, gt, convention="pytracking")
    assert score_sequence(pred, gt, convention="lasot").precision_20px == pytest.approx(1.0)
    assert score_sequence(pred, gt, convention="got10k").precision_20px == pytest.approx(0.75)  # kept, missed
    assert score_sequence(pred, gt, convention="got10k", dataset="lasot").precision_20px == pytest.approx(1.0)


# --- long failures, lengths, data sets --------------------------------------------------------------


def test_long_failure() -> None:
    gt = _gt(10)
    pred = gt.copy()
    pred[3:] = [300.0, 300.0, 10.0, 20.0]
    for convention in CONVENTIONS:
        scores = score_sequence(pred, gt, convention=convention)
        assert scores.success_auc == pytest.approx(HIT * 0.3), convention
        assert scores.precision_20px == pytest.approx(0.3), convention
        assert scores.ao == pytest.approx(0.3), convention


def test_longer_prediction_is_truncated_except_by_got10k_otb() -> None:
    gt = _gt(4)
    pred = np.concatenate([gt, [[1.0, 1.0, 5.0, 5.0]]])
    for convention in ("lasot", "pytracking"):
        assert score_sequence(pred, gt, convention=convention).success_auc == pytest.approx(HIT)
    assert score_sequence(pred, gt, convention="got10k", dataset="lasot").success_auc == pytest.approx(HIT)
    with pytest.raises(AnnotationError, match="ExperimentOTB"):
        score_sequence(pred, gt, convention="got10k")


def test_shorter_prediction() -> None:
    gt = _gt(4)
    pred = gt[:3]
    with pytest.raises(AnnotationError):
        score_sequence(pred, gt, convention="lasot")
    with pytest.raises(AnnotationError):
        score_sequence(pred, gt, np.zeros(4, bool), convention="pytracking")  # LaSOT branch
    assert score_sequence(pred, gt, convention="pytracking").success_auc == pytest.approx(HIT * 0.75)  # zero pad
    with pytest.raises(AnnotationError):
        score_sequence(pred, gt, convention="got10k")
    # ExperimentLaSOT truncates the GT too: 3 of 3 frames scored.
    assert score_sequence(pred, gt, convention="got10k", dataset="lasot").success_auc == pytest.approx(HIT)


def test_pytracking_zero_box_past_the_end_fails_like_pytracking() -> None:
    gt = _gt(3)
    pred = np.concatenate([gt, [[1.0, 1.0, 0.0, 0.0]]])
    with pytest.raises(AnnotationError, match="IndexError"):
        score_sequence(pred, gt, convention="pytracking")


def test_normalised_precision_definitions_differ() -> None:
    gt = np.array([[1.0, 1.0, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5]])
    pred = np.array([[1.0, 1.0, 0.5, 0.5], [1.1, 1.0, 0.5, 0.5]])  # 0.1 px off a sub-pixel box
    # LaSOT/pytracking divide by w = 0.5 (error 0.2); got-10k divides by max(1, w) (error 0.1).
    for convention in ("lasot", "pytracking"):
        curve = score_sequence(pred, gt, convention=convention).norm_precision_curve
        assert curve[15] == pytest.approx(0.5) and curve[25] == pytest.approx(1.0)
    curve = score_sequence(pred, gt, convention="got10k").norm_precision_curve
    assert curve[9] == pytest.approx(0.5) and curve[11] == pytest.approx(1.0)


def test_dataset_means_per_sequence_curves_and_lasot_drops_empty_curves() -> None:
    gt = _gt(4)
    good = (gt, gt, None)
    half = (np.concatenate([gt[:2], [[300.0, 300.0, 10.0, 20.0]] * 2]), gt, None)
    gone = (gt, gt, np.ones(4, bool))  # every frame absent: an all-zero curve
    for convention in CONVENTIONS:
        scores = score_dataset([good, half], convention)
        assert scores.success_auc == pytest.approx(HIT * 0.75)
        assert scores.num_frames == 8
    assert score_dataset([good, gone], "lasot").success_auc == pytest.approx(HIT)  # plot_draw_save.m
    assert score_dataset([good, gone], "pytracking").success_auc == pytest.approx(HIT / 2)


def test_scores_shape_and_dict() -> None:
    scores = score_sequence(_gt(), _gt())
    assert isinstance(scores, TrackingScores)
    assert scores.success_curve.shape == (21,)
    assert scores.precision_curve.shape == scores.norm_precision_curve.shape == (51,)
    assert set(scores.to_dict()) == {"success_auc", "precision_20px", "norm_precision_020", "ao", "sr50"}
    with pytest.raises(ValueError, match="convention"):
        score_sequence(_gt(), _gt(), convention="otb")  # type: ignore[arg-type]
    with pytest.raises(AnnotationError, match="absent"):
        score_sequence(_gt(), _gt(), np.zeros(3, bool))


# --- files ------------------------------------------------------------------------------------------


def test_read_boxes_file_separators_and_nan(tmp_path: Path) -> None:
    path = tmp_path / "boxes.txt"
    path.write_text("1,2,3,4\n5\t6\t7\t8\n9 10  11 12\nnan,NaN,nan,nan\n\n13, 14, 15, 16\n")
    boxes = read_boxes_file(path)
    assert boxes.shape == (5, 4)
    assert np.isnan(boxes[3]).all()
    np.testing.assert_array_equal(boxes[[0, 1, 2, 4], 0], [1, 5, 9, 13])


@pytest.mark.parametrize("line", ["1,2,3", "1,2,3,x", "1,2,3,4,5"])
def test_read_boxes_file_malformed_line_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "pred.txt"
    path.write_text(f"1,2,3,4\n{line}\n")
    with pytest.raises(AnnotationError, match=r"pred\.txt, line 2"):
        read_boxes_file(path)


def test_read_absent_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.txt"
    path.write_text("0\n1\n0\n")
    np.testing.assert_array_equal(read_absent_file(path), [False, True, False])
    path.write_text("0\n2\n")
    with pytest.raises(AnnotationError, match="line 2"):
        read_absent_file(path)
