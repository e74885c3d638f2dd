"""Elysium box output: clip schedule, answer parsing on crafted texts, clip merging through the public API."""

from __future__ import annotations

import re

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.boxes import SquareTransform
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.prompts import format_box_answer as format_answer
from artemis.prompts import normalize_expression, rsot_question, sot_question
from artemis.tasks import box_output
from artemis.tasks.box_output import BoxStatus, clip_starts, parse_clip_answer

GIVEN, PREDICTED, UNPARSED = BoxStatus.GIVEN, BoxStatus.PREDICTED, BoxStatus.UNPARSED

# A 200x100 frame padded to a 200x200 square: 50 rows of padding above, 1 text unit = 2 px.
WIDE = SquareTransform(width=200, height=100, size=32)


def test_clip_schedule() -> None:
    assert clip_starts(20) == [0, 7, 12]  # frames 0-7, 7-14, 12-19: the last clip is moved back
    assert clip_starts(15) == [0, 7]  # ends on a clip boundary
    assert clip_starts(8) == [0] and clip_starts(3) == [0]
    assert clip_starts(22) == [0, 7, 14]
    assert clip_starts(10, clip_length=4, stride=2) == [0, 2, 4, 6]
    with pytest.raises(ConfigError, match="1 <= stride < clip_length"):
        clip_starts(20, clip_length=8, stride=8)


def test_text_coordinates_are_on_the_square_input() -> None:
    # Pixel box (20, 10, 100, 90) on the wide frame is (20, 60, 100, 140) on the 200x200 square.
    assert sot_question(WIDE.boxes_to_model([20, 10, 100, 90])) == (
        "This is a video showing an object with coordinates [10,30,50,70] in Frame 1. "
        "Provide the coordinates of this object in each frame."
    )
    answer = format_answer(np.array([[0.1, 0.3, 0.5, 0.7], [np.nan] * 4]))
    assert answer == "Frame 1: [10,30,50,70], Frame 2: [0,0,0,0]"
    assert rsot_question("The red circle moves up.") == (
        "Please find the red circle moves up in every frame and provide the coordinates of it."
    )
    assert normalize_expression("  NASA rocket ") == "NASA rocket"


CRAFTED = [
    # (text, frames, expected pixel boxes (NaN row = none), expected status)
    ("Frame 1: [10,30,50,70], Frame 2: [20,30,60,70]", 2, [[20, 10, 100, 90], [40, 10, 120, 90]], [1, 1]),
    # the word-level tokenizer decodes with spaces
    ("Frame 1 : [ 10, 30, 50, 70 ], Frame 2 : [ 20, 30, 60, 70 ]", 2, [[20, 10, 100, 90], [40, 10, 120, 90]], [1, 1]),
    # garbled: three values, letters, an unclosed bracket
    ("Frame 1: [10,30,50], Frame 2: [a,b,c,d], Frame 3: [10,30,50,70", 3, [[np.nan] * 4] * 3, [2, 2, 2]),
    # short: the answer stops after frame 1
    ("Frame 1: [10,30,50,70], Frame 2:", 3, [[20, 10, 100, 90], [np.nan] * 4, [np.nan] * 4], [1, 2, 2]),
    # extra frames past the clip and a repeated label are ignored
    (
        "Frame 1: [10,30,50,70], Frame 1: [0,50,10,60], Frame 2: [10,30,50,70], Frame 3: [1,1,2,2]",
        2,
        [[20, 10, 100, 90], [20, 10, 100, 90]],
        [1, 1],
    ),
    # out of range: clipped to the square (0..100), then to the frame
    ("Frame 1: [-10,30,150,70], Frame 2: [10,20,50,90]", 2, [[0, 10, 200, 90], [20, 0, 100, 100]], [1, 1]),
    # inside the padding only, the absent marker [0,0,0,0], and an inverted box: invalid
    ("Frame 1: [10,0,50,20], Frame 2: [0,0,0,0], Frame 3: [50,30,10,70]", 3, [[np.nan] * 4] * 3, [3, 3, 3]),
    # no labels at all: boxes taken in order
    ("[10,30,50,70] [20,30,60,70]", 2, [[20, 10, 100, 90], [40, 10, 120, 90]], [1, 1]),
    ("I cannot see it.", 2, [[np.nan] * 4] * 2, [2, 2]),
    ("", 1, [[np.nan] * 4], [2]),
]


@pytest.mark.parametrize(("text", "frames", "boxes", "status"), CRAFTED)
def test_parse_crafted_answers(text: str, frames: int, boxes: list, status: list) -> None:
    parsed = parse_clip_answer(text, frames, WIDE)
    np.testing.assert_array_equal(parsed.boxes, np.array(boxes, dtype=np.float64))
    assert parsed.status.tolist() == status


def test_format_parse_round_trip_within_half_a_unit() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        x1, y1 = rng.uniform(0, 150), rng.uniform(0, 60)
        box = np.array([x1, y1, x1 + rng.uniform(5, 50), y1 + rng.uniform(5, 40)])
        text = format_answer(WIDE.boxes_to_model(box)[None])
        parsed = parse_clip_answer(text, 1, WIDE)
        assert parsed.status.tolist() == [PREDICTED]
        assert np.abs(parsed.boxes[0] - box).max() <= 0.5 * 200 / 100 + 1e-9


class ScriptedModel(ArtemisModel):
    """Answers each clip with a scripted text and records the question it was asked (the box-output task's
    generation step is replaced; everything around it runs as it does for a real model)."""

    def __init__(self, model, processor, answers, monkeypatch):
        super().__init__(model, processor)
        self.answers = list(answers)
        self.prompts: list[str] = []
        monkeypatch.setattr(box_output, "generate", self._scripted)

    def _scripted(self, model, processor, inputs, **options):
        assert model is self.model and inputs["input_ids"].shape[0] == 1
        self.prompts.append(processor.decode(inputs["input_ids"][0]))
        return [self.answers.pop(0)]


@pytest.fixture(scope="module")
def tiny_frames():
    return build_tiny_model(
        ["the red circle"], seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"]
    )


def _answer(values: list[list[int]]) -> str:
    return ", ".join(f"Frame {i}: [{','.join(map(str, v))}]" for i, v in enumerate(values, start=1))


def test_sot_clip_merge_on_a_20_frame_video(tiny_frames, monkeypatch) -> None:
    model, processor = tiny_frames
    frames = np.zeros((20, 100, 100, 3), dtype=np.uint8)  # square: text unit = 1 px
    # Clip k writes box value 10k + frame, so every merged frame tells which clip it came from.
    clip_a = _answer([[0, 0, 10, 10 + f] for f in range(8)])  # frames 0-7
    clip_b = _answer([[10, 10, 30, 20 + f] for f in range(8)])  # frames 7-14
    clip_c = "Frame 1: [20,20,50,40], Frame 2: garbage, Frame 4: [20,20,50,43], Frame 8: [20,20,50,47]"  # 12-19
    scripted = ScriptedModel(model, processor, [clip_a, clip_b, clip_c], monkeypatch)
    track = scripted.track_with_llm(frames, box=(1, 2, 11, 12))

    assert track.clips == [list(range(0, 8)), list(range(7, 15)), list(range(12, 20))]
    expected = np.full((20, 4), np.nan)
    expected[0] = [1, 2, 11, 12]  # the user's box, not the model's frame 1
    for f in range(1, 8):
        expected[f] = [0, 0, 10, 10 + f]
    for f in range(8, 15):  # frame 7 (clip b's frame 1) is dropped: clip a's prediction stands
        expected[f] = [10, 10, 30, 20 + f - 7]
    expected[15] = [20, 20, 50, 43]  # clip c's frame 4; its frames 1-3 (12-14) overlap and are dropped
    expected[16:19] = expected[15]  # unparsed: the previous box carried
    expected[19] = [20, 20, 50, 47]
    np.testing.assert_allclose(track.boxes, expected, rtol=0, atol=1e-9)  # exact up to float rounding
    assert track.status[0] == GIVEN and track.num_unparsed == 3  # frames 16, 17, 18 of clip c
    assert [int(s) for s in track.status[15:]] == [PREDICTED, UNPARSED, UNPARSED, UNPARSED, PREDICTED]
    assert track.visible.tolist() == np.isfinite(expected).all(1).tolist()
    # Chaining: each clip's frame-1 box is the merged prediction for its first frame.
    boxes_asked = [re.search(r"coordinates \[ ?([\d, ]+) ?\]", p).group(1).replace(" ", "") for p in scripted.prompts]
    assert boxes_asked == ["1,2,11,12", "0,0,10,17", "10,10,30,25"]
    assert track.to_json()["status"][16] == "unparsed"


def test_rsot_starts_from_the_expression_then_the_last_box(tiny_frames, monkeypatch) -> None:
    model, processor = tiny_frames
    frames = np.zeros((15, 100, 100, 3), dtype=np.uint8)
    first = "Frame 1: [5,5,25,25], Frame 2: nothing"  # frames 0-7: only frame 0 found
    second = _answer([[6, 6, 26, 26 + f] for f in range(8)])
    scripted = ScriptedModel(model, processor, [first, second], monkeypatch)
    track = scripted.track_with_llm(frames, expression="The red circle.")
    assert "Please find the red circle in every frame" in scripted.prompts[0]
    # Frame 7 (clip 2's first frame) is unparsed, so clip 2 starts from the last box found: frame 0's.
    assert "coordinates [ 5, 5, 25, 25 ]" in scripted.prompts[1]
    assert track.status.tolist() == [PREDICTED] + [UNPARSED] * 7 + [PREDICTED] * 7
    np.testing.assert_allclose(track.boxes[8], [6, 6, 26, 27], rtol=0, atol=1e-9)


def test_sot_from_a_middle_frame_runs_backward_too(tiny_frames, monkeypatch) -> None:
    model, processor = tiny_frames
    frames = np.zeros((12, 100, 100, 3), dtype=np.uint8)
    forward = _answer([[50, 50, 60, 60 + f] for f in range(7)])  # frames 5..11
    backward = _answer([[40, 40, 50, 50 + f] for f in range(6)])  # frames 5, 4, ..., 0
    scripted = ScriptedModel(model, processor, [forward, backward], monkeypatch)
    track = scripted.track_with_llm(frames, box=(50, 50, 60, 60), frame_index=5)
    assert track.clips == [[5, 6, 7, 8, 9, 10, 11], [5, 4, 3, 2, 1, 0]]
    np.testing.assert_allclose(track.boxes[11], [50, 50, 60, 66], rtol=0, atol=1e-9)
    np.testing.assert_allclose(track.boxes[0], [40, 40, 50, 55], rtol=0, atol=1e-9)
    np.testing.assert_allclose(track.boxes[5], [50, 50, 60, 60], rtol=0, atol=1e-9)


def test_models_not_trained_for_boxes_and_bad_arguments_are_refused(tiny_frames) -> None:
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    # Per-frame video tokens alone do not make a box writer: the config must say it was trained for boxes.
    for layout in ({}, {"video_layout": "frames", "frame_pool_size": 2}):
        untrained, processor = build_tiny_model(seed=0, **layout)
        with pytest.raises(ConfigError, match=r"was not trained to write boxes \(its tasks are \['describe'\]\)"):
            ArtemisModel(untrained, processor).track_with_llm(frames, box=(1, 1, 10, 10))
    with pytest.raises(ConfigError, match=r"tasks=.*'boxes'.*video_layout='pooled'.*set video_layout='frames'"):
        build_tiny_model(seed=0, tasks=["describe", "boxes"])
    model = ArtemisModel(*tiny_frames)
    with pytest.raises(ConfigError, match=r"either box= .* or expression="):
        model.track_with_llm(frames)
    with pytest.raises(ConfigError, match="clip_length=9 exceeds the model's num_frames=8"):
        model.track_with_llm(frames, box=(1, 1, 10, 10), clip_length=9)


@pytest.mark.parametrize("rsot", [False, True])
def test_later_clips_look_for_the_target_as_the_first_box_showed_it(monkeypatch, rsot: bool) -> None:
    """``template``: the frame selector's query of the first clip started from a box is given to every later
    clip (``select_query``), so a clip chained from a written box still looks for the user's target."""
    import torch

    from artemis.model.generation import generate as real_generate

    model, processor = build_tiny_model(
        ["the red circle"], seed=0, tasks=["describe", "boxes"], video_layout="frames", frame_tokens="select",
        frame_select_tokens=5, frame_select_query=True, frame_select_text_query=True,
    )  # fmt: skip
    model.eval()
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 255, (20, 48, 64, 3), dtype=np.uint8)
    seen: list[dict] = []

    def recording(model_, processor_, inputs, **options):
        seen.append(dict(inputs))
        if rsot and len(seen) <= 2:  # RSOT's first clips find boxes, so the later clips are asked one
            return [_answer([[10, 10, 40, 40 + f] for f in range(8)])]
        return real_generate(model_, processor_, inputs, **{**options, "max_new_tokens": 12})

    monkeypatch.setattr(box_output, "generate", recording)
    wrapped = ArtemisModel(model, processor)
    request = {"expression": "the red circle"} if rsot else {"box": (10, 8, 30, 28)}
    track = wrapped.track_with_llm(frames, **request)  # a random model's answers: nothing of its own parses
    assert len(track.clips) == 3 and len(seen) == 3
    first_boxed = 1 if rsot else 0  # RSOT: the first clip is asked the expression; later ones a box
    assert all("select_query" not in inputs for inputs in seen[: first_boxed + 1])
    template = model.frame_query(
        seen[first_boxed]["pixel_values"], seen[first_boxed]["query_boxes"], seen[first_boxed]["frame_mask"]
    )
    assert template.shape == (1, model.config.vision_config.hidden_size) and torch.isfinite(template).all()
    for inputs in seen[first_boxed + 1 :]:
        assert torch.equal(inputs["select_query"], template)
    # The query a clip computes for itself is the one frame_query gives: handed back, nothing changes.
    own = seen[first_boxed]
    last = {name: value for name, value in seen[-1].items() if name != "select_query"}
    with torch.no_grad():
        plain = model(**own).logits
        given = model(**own, select_query=template).logits
        other = model(**last, select_query=template).logits  # a later clip, its own query replaced
        later = model(**last).logits
        nan_row = model(**last, select_query=torch.full_like(template, float("nan"))).logits
    torch.testing.assert_close(given, plain, rtol=0, atol=0)
    assert not torch.allclose(other, later)  # the template, not the clip's own first box, chose its cells
    torch.testing.assert_close(nan_row, later, rtol=0, atol=0)  # a NaN row falls back to the clip's own query
    # template=False: every clip computes its own query from its own first box.
    seen.clear()
    wrapped.track_with_llm(frames, template=False, **request)
    assert len(seen) == 3 and all("select_query" not in inputs for inputs in seen)
    # A model whose selector reads no box has no template to give.
    plain_model, _ = build_tiny_model(seed=0, tasks=["describe", "boxes"], video_layout="frames")
    with pytest.raises(ValueError, match="frame_query needs a frame selector that scores against a box"):
        plain_model.frame_query(seen[0]["pixel_values"], seen[-1]["query_boxes"])
