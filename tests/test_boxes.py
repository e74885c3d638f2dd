"""Every box conversion: round trips (hypothesis) and the exact conventions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis import boxes as B
from artemis.errors import BoxError

coordinate = st.floats(0, 2000, allow_nan=False, allow_infinity=False)
size = st.floats(0.5, 2000, allow_nan=False, allow_infinity=False)


@st.composite
def xyxy_boxes(draw):
    x1, y1, w, h = draw(coordinate), draw(coordinate), draw(size), draw(size)
    return np.array([x1, y1, x1 + w, y1 + h])


@given(xyxy_boxes())
def test_xywh_round_trip(box):
    assert np.allclose(B.xywh_to_xyxy(B.xyxy_to_xywh(box)), box)


@given(xyxy_boxes())
def test_otb_round_trip_and_one_based_origin(box):
    otb = B.xyxy_to_otb(box)
    assert np.allclose(otb[:2], box[:2] + 1)
    assert np.allclose(B.otb_to_xyxy(otb), box)


@given(xyxy_boxes(), st.integers(1, 4000), st.integers(1, 4000))
def test_normalise_round_trip(box, width, height):
    assert np.allclose(B.denormalize(B.normalize(box, width, height), width, height), box)


@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=4, max_size=4))
def test_elysium_text_round_trip_is_within_half_a_percent(values):
    text = B.format_elysium_box(values)
    assert " " not in text and text.startswith("[") and text.endswith("]")
    assert np.all(np.abs(B.parse_elysium_box(text) - np.array(values)) <= 0.005 + 1e-12)


@settings(max_examples=50)
@given(xyxy_boxes(), st.integers(16, 1920), st.integers(16, 1080), st.sampled_from([32, 224, 336]))
def test_square_transform_round_trip(box, width, height, size):
    transform = B.SquareTransform(width, height, size)
    assert np.allclose(transform.boxes_from_model(transform.boxes_to_model(box)), box)


def test_known_values():
    # OTB Crossing frame 1: "198 214 34 81" (1-based x y w h) -> 0-based xyxy.
    assert B.otb_to_xyxy([198, 214, 34, 81]).tolist() == [197, 213, 231, 294]
    assert B.format_elysium_box([0.125, 0.5, 0.999, 1.0]) == "[12,50,100,100]"
    transform = B.SquareTransform(640, 272, 224)  # wide: padded 184 px above
    assert transform.boxes_to_model([0, 0, 640, 272]).tolist() == pytest.approx([0, 184 / 640, 1, 456 / 640])


def test_elysium_frames_parse_tolerates_garbage():
    text = "Frame 1: [1,2,3,4], Frame 2: [oops], Frame 3: [10,20,30,40], Frame 9: [1,1,2,2]"
    parsed = B.parse_elysium_frames(text, 3)
    assert parsed[0].tolist() == [0.01, 0.02, 0.03, 0.04] and parsed[1] is None
    assert parsed[2].tolist() == [0.1, 0.2, 0.3, 0.4]
    assert B.parse_elysium_frames("no boxes here", 2) == [None, None]
    unlabelled = B.parse_elysium_frames("[1,2,3,4] [5,6,7,8]", 3)
    assert unlabelled[1].tolist() == [0.05, 0.06, 0.07, 0.08] and unlabelled[2] is None
    boxes = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.6, 0.7]]
    assert B.format_elysium_frames(boxes) == "Frame 1: [10,20,30,40], Frame 2: [50,50,60,70]"


def test_validate_box_errors_name_the_box_and_the_frame():
    with pytest.raises(BoxError, match=r"box \(10.0, 10.0, 5.0, 40.0\) has x2 < x1; .*frame 12 \(640x360\)"):
        B.validate_box((10, 10, 5, 40), 640, 360, frame_index=12)
    with pytest.raises(BoxError, match="zero area"):
        B.validate_box((10, 10, 10, 40), 640, 360)
    with pytest.raises(BoxError, match="lies outside"):
        B.validate_box((700, 10, 800, 40), 640, 360)
    with pytest.raises(BoxError, match="non-finite"):
        B.validate_box((np.nan, 10, 20, 40), 640, 360)
    with pytest.raises(BoxError, match="has 3 values"):
        B.validate_box((1, 2, 3), 640, 360)
    with pytest.raises(BoxError, match="zero or negative size"):
        B.validate_box((10, 10, 0, 5), 640, 360, box_format="xywh")
    # Partly outside: clipped to the frame.
    assert B.validate_box((-5, 10, 50, 400), 640, 360).tolist() == [0, 10, 50, 360]
    assert B.validate_box((10, 10, 5, 5), 640, 360, box_format="xywh").tolist() == [10, 10, 15, 15]


def test_box_arg_parsing():
    assert B.parse_box_arg("10,20, 30 40") == (10.0, 20.0, 30.0, 40.0)
    with pytest.raises(BoxError, match="has 3 values"):
        B.parse_box_arg("1,2,3")
    with pytest.raises(BoxError, match="not 4 numbers"):
        B.parse_box_arg("a,b,c,d")


def test_iou():
    assert B.box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    assert B.box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0
