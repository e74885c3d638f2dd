"""CSRT through track_video on the real OTB "Crossing" sequence, scored with the LaSOT protocol."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from track_synth import open_reader, success_auc

from artemis.boxes import otb_to_xyxy, xyxy_to_otb
from artemis.eval.tracking import read_boxes_file
from artemis.track import track_video

pytestmark = [pytest.mark.reference, pytest.mark.slow]
logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def crossing(reference_dir):
    folder = reference_dir / "otb_crossing"
    gt_otb = read_boxes_file(folder / "groundtruth_rect.txt")  # (120, 4) 1-based x y w h
    return folder, gt_otb


def _score(track, gt_otb: np.ndarray) -> float:
    # OTB/LaSOT evaluators compare 1-based xywh; a lost frame stays NaN for the protocol to handle.
    return success_auc(xyxy_to_otb(track.boxes), gt_otb)


def test_forward_from_first_frame_reaches_reference_auc(crossing):
    folder, gt_otb = crossing
    reader = open_reader(folder / "img")
    assert (reader.num_frames, reader.width, reader.height) == (120, 360, 240)
    started = time.perf_counter()
    track = track_video(reader, otb_to_xyxy(gt_otb[0]), 0)
    elapsed = time.perf_counter() - started
    auc = _score(track, gt_otb)
    logger.warning("Crossing forward: success AUC %.6f in %.2f s", auc, elapsed)
    assert auc >= 0.65
    # OpenCV's own run of the same CSRT: our RGB->BGR and box conversions must not cost accuracy.
    reference = read_boxes_file(folder / "pred_opencv_TrackerCSRT.txt")
    assert auc >= success_auc(reference, gt_otb) - 0.02


def test_backward_from_middle_frame(crossing):
    folder, gt_otb = crossing
    track = track_video(open_reader(folder / "img"), otb_to_xyxy(gt_otb[60]), 60)
    np.testing.assert_allclose(track.boxes[60], otb_to_xyxy(gt_otb[60]))
    # Score the backward half on its own (reversed, so the key frame is frame 1 of the protocol) and
    # the whole sequence with the key frame's GT as the protocol's init.
    backward = _score_reversed(track, gt_otb, 60)
    whole = _score(track, gt_otb)
    logger.warning("Crossing from frame 60: backward AUC %.6f, whole-sequence AUC %.6f", backward, whole)
    assert backward >= 0.6 and whole >= 0.6


def _score_reversed(track, gt_otb: np.ndarray, key: int) -> float:
    pred = xyxy_to_otb(track.boxes[: key + 1][::-1])
    return success_auc(pred, gt_otb[: key + 1][::-1])


def test_default_fast_settings_keep_the_reference_quality(crossing):
    """What ArtemisModel and `artemis describe` track with by default (tracker, stride, working size, parallel)."""
    from inspect import signature

    from artemis.tasks.pipeline import VideoPipeline

    parameters = signature(VideoPipeline).parameters
    tracker = parameters["tracker"].default
    stride, max_side = parameters["track_stride"].default, parameters["track_max_side"].default
    folder, gt_otb = crossing
    for key in (0, 60):
        track = track_video(
            open_reader(folder / "img"),
            otb_to_xyxy(gt_otb[key]),
            key,
            tracker=tracker,
            stride=stride,
            max_side=max_side,
        )
        auc = _score(track, gt_otb)
        logger.warning(
            "Crossing from frame %d, %s, stride %s, max_side %s: success AUC %.4f", key, tracker, stride, max_side, auc
        )
        assert auc >= 0.65
