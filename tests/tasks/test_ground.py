"""Box output through ``ArtemisModel.ground`` / ``track_with_llm``: clip chaining and seeding, the UNPARSED
carry-over, bad inputs, and memory bounded by one clip on a long video with the key frame in the middle.

A scripted model (its generation step replaced by answers the test writes) checks the chaining exactly;
a tiny random model trained for nothing checks that odd inputs are answered, not crashed.
"""

from __future__ import annotations

import itertools
import math
import re
import weakref
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch

from artemis import ArtemisModel
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.number_loss import number_token_ids
from artemis.tasks import box_output
from artemis.tasks import pipeline as pipeline_module
from artemis.tasks.box_output import BoxStatus
from artemis.video import available_backends
from artemis.video.reader import ClosesOnExit

GIVEN, PREDICTED, UNPARSED, INVALID = BoxStatus.GIVEN, BoxStatus.PREDICTED, BoxStatus.UNPARSED, BoxStatus.INVALID


@pytest.fixture(scope="module")
def tiny_boxes():
    """A tiny random model that may write boxes (``tasks=["describe", "boxes"]``, per-frame tokens)."""
    return build_tiny_model(
        ["the red circle"], seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"]
    )


class Scripted(ArtemisModel):
    """The model's answers come from ``answer(clip_number, num_frames)``; the prompts are recorded."""

    def __init__(self, model, processor, answer, monkeypatch) -> None:
        super().__init__(model, processor)
        self.answer = answer
        self.prompts: list[str] = []
        monkeypatch.setattr(box_output, "generate", self._generate)

    def _generate(self, model, processor, inputs, **options) -> list[str]:
        self.prompts.append(processor.decode(inputs["input_ids"][0]))
        num_frames = int(inputs["frame_mask"][0].sum())
        return [self.answer(len(self.prompts) - 1, num_frames)]


def frames_answer(boxes: Sequence[Sequence[int]]) -> str:
    return ", ".join(f"Frame {i}: [{','.join(map(str, b))}]" for i, b in enumerate(boxes, start=1))


def asked_box(prompt: str) -> list[int] | None:
    """The box of an SOT prompt (the word tokenizer decodes "[10,10,20,27]" as "[ 10, 10, 20, 27 ]")."""
    found = re.search(r"coordinates \[([\d, ]+)\]", prompt)
    return None if found is None else [int(v) for v in found.group(1).split(",")]


# --- chaining, seeding, carry-over -----------------------------------------------------------------------


def test_rsot_asks_the_expression_then_the_last_box_and_again_after_a_clip_that_found_nothing(
    tiny_boxes, monkeypatch
) -> None:
    frames = np.zeros((29, 100, 100, 3), dtype=np.uint8)  # square: one text unit is one pixel
    # Clips start at 0, 7, 14, 21. Clip 1 is garbage: frames 8-14 unparsed, carrying frame 7's box.
    answers = [
        frames_answer([[10, 10, 20, 20 + f] for f in range(8)]),
        "I do not see it",
        frames_answer([[30, 30, 40, 40 + f] for f in range(8)]),
        frames_answer([[50, 50, 60, 60 + f] for f in range(8)]),
    ]
    model = Scripted(*tiny_boxes, lambda clip, n: answers[clip], monkeypatch)
    track = model.ground(frames, "The red circle.")

    assert track.clips == [list(range(s, s + 8)) for s in (0, 7, 14, 21)]
    assert track.asked == ["rsot", "sot", "rsot", "sot"]
    assert "Please find the red circle in every frame" in model.prompts[0]
    assert asked_box(model.prompts[1]) == [10, 10, 20, 27]  # frame 7, the last box of clip 0
    assert asked_box(model.prompts[2]) is None and "Please find the red circle" in model.prompts[2]
    assert asked_box(model.prompts[3]) == [30, 30, 40, 47]  # frame 21, the last box of clip 2
    status = track.status.tolist()
    assert status[:8] == [PREDICTED] * 8 and status[8:15] == [UNPARSED] * 7 and status[15:] == [PREDICTED] * 14
    assert track.num_unparsed == 7 and track.num_invalid == 0
    np.testing.assert_allclose(track.boxes[8:15], np.tile([10, 10, 20, 27], (7, 1)), atol=1e-9)  # carried
    np.testing.assert_allclose(track.boxes[15], [30, 30, 40, 41], atol=1e-9)  # clip 2 frame 2 (frame 14 overlaps)
    np.testing.assert_allclose(track.boxes[28], [50, 50, 60, 67], atol=1e-9)
    assert track.visible.all()
    data = track.to_json()
    assert data["num_unparsed"] == 7 and data["status"][8] == "unparsed" and data["texts"][1] == "I do not see it"
    assert data["expression"] == "The red circle." and data["asked"] == track.asked


def test_rsot_frames_before_the_target_is_found_stay_empty(tiny_boxes, monkeypatch) -> None:
    frames = np.zeros((15, 100, 100, 3), dtype=np.uint8)
    answers = ["nothing here", "Frame 1: [0,0,0,0], " + ", ".join(f"Frame {i}: [5,5,25,25]" for i in range(2, 9))]
    model = Scripted(*tiny_boxes, lambda clip, n: answers[clip], monkeypatch)
    track = model.ground(frames, "the red circle")
    assert track.asked == ["rsot", "rsot"]  # clip 0 found nothing: the expression again
    assert not track.visible[:8].any() and track.visible[8:].all()  # no box to carry before the first find
    assert track.status[7] == UNPARSED  # clip 1's [0,0,0,0] on frame 7 is an overlap, dropped


def test_rsot_with_track_found_tracks_from_the_first_box_the_expression_found(tiny_boxes, monkeypatch) -> None:
    frames = np.zeros((20, 100, 100, 3), dtype=np.uint8)  # square: one text unit is one pixel
    found = "Frame 1: [0,0,0,0], " + ", ".join(f"Frame {i}: [10,10,20,{18 + i}]" for i in range(2, 9))
    answers = ["nothing here", found] + [
        frames_answer([[40 + c, 40, 50 + c, 50 + f] for f in range(8)]) for c in (1, 2)
    ]
    model = Scripted(*tiny_boxes, lambda clip, n: answers[clip], monkeypatch)
    track = model.ground(frames, "the red circle", track_found=True)
    # Clip 0 (frames 0-7) found nothing, clip 1 (7-14) found the target on its second frame, 8: the clips are
    # planned again from frame 8 (8-15, then 12-19 moved back to end on the last frame), asked from that box.
    assert track.asked == ["rsot", "rsot", "sot", "sot"]
    assert track.clips == [list(range(0, 8)), list(range(7, 15)), list(range(8, 16)), list(range(12, 20))]
    assert asked_box(model.prompts[2]) == [10, 10, 20, 20]  # frame 8's box, the expression's first find
    assert asked_box(model.prompts[3]) == [41, 40, 51, 54]  # frame 12, where the moved-back clip 3 starts
    np.testing.assert_allclose(track.boxes[8], [10, 10, 20, 20], atol=1e-9)
    np.testing.assert_allclose(track.boxes[9], [41, 40, 51, 51], atol=1e-9)  # clip 2's, not clip 1's [10,10,20,21]
    np.testing.assert_allclose(track.boxes[16], [42, 40, 52, 54], atol=1e-9)  # clip 3's fifth frame
    assert not track.visible[:8].any() and track.visible[8:].all() and track.status[7] == UNPARSED
    # Without it the expression's clip keeps its own boxes for frames 9-14 (Elysium's way).
    plain = Scripted(*tiny_boxes, lambda clip, n: answers[clip], monkeypatch).ground(frames, "the red circle")
    assert plain.clips == [list(range(0, 8)), list(range(7, 15)), list(range(12, 20))]
    np.testing.assert_allclose(plain.boxes[9], [10, 10, 20, 21], atol=1e-9)
    # A target found on the very last frame leaves nothing to ask.
    last = "Frame 1: [0,0,0,0], Frame 2: [0,0,0,0], Frame 3: [60,60,70,70]"
    tail = Scripted(*tiny_boxes, lambda clip, n: last, monkeypatch).ground(frames[:3], "x", track_found=True)
    assert tail.asked == ["rsot"] and tail.visible.tolist() == [False, False, True]


def test_sot_from_a_middle_frame_carries_through_an_unreadable_backward_clip(tiny_boxes, monkeypatch) -> None:
    frames = np.zeros((20, 100, 100, 3), dtype=np.uint8)
    # Forward from 10: positions [0, 2] -> clips 10-17, 12-19. Backward 10..0: clips 10..3, 7..0.
    answers = [
        frames_answer([[40, 40, 50, 50 + f] for f in range(8)]),
        frames_answer([[41, 41, 51, 51 + f] for f in range(8)]),
        "Frame 1: [40,40,50,50], Frame 2: [40,40,50",  # frame 9 garbled, 8..3 missing
        frames_answer([[20, 20, 30, 30 + f] for f in range(8)]),
    ]
    model = Scripted(*tiny_boxes, lambda clip, n: answers[clip], monkeypatch)
    track = model.track_with_llm(frames, box=(40, 40, 50, 50), frame_index=10)
    assert track.clips[2] == list(range(10, 2, -1)) and track.clips[3] == list(range(7, -1, -1))
    assert track.asked == ["sot"] * 4
    assert asked_box(model.prompts[3]) == [40, 40, 50, 50]  # the carried box of frame 7 seeds the next clip
    assert track.status[10] == GIVEN and (track.status[3:10] == UNPARSED).all()
    np.testing.assert_allclose(track.boxes[3:10], np.tile([40, 40, 50, 50], (7, 1)), atol=1e-9)
    np.testing.assert_allclose(track.boxes[0], [20, 20, 30, 37], atol=1e-9)  # frame 0 is backward frame 8
    np.testing.assert_allclose(track.boxes[19], [41, 41, 51, 58], atol=1e-9)


# --- bad input -------------------------------------------------------------------------------------------


def test_an_expression_of_unknown_words_is_answered_with_its_parse_status(tiny_boxes) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (10, 40, 40, 3), dtype=np.uint8)
    track = ArtemisModel(*tiny_boxes).ground(frames, "zebra xylophone quokka", max_new_tokens=6)
    assert track.unknown_words == ["zebra", "xylophone", "quokka"]
    assert len(track.texts) == 2 and track.num_frames == 10
    assert track.num_unparsed + track.num_invalid + int((track.status == PREDICTED).sum()) == 10
    assert track.to_json()["unknown_words"] == ["zebra", "xylophone", "quokka"]
    assert ArtemisModel(*tiny_boxes).ground(frames[:2], "the red circle", max_new_tokens=2).unknown_words == []
    with pytest.raises(ConfigError, match="referring expression is empty"):
        ArtemisModel(*tiny_boxes).ground(frames, "  . ")


def test_a_one_pixel_wide_target_at_the_frame_edge(tiny_boxes, monkeypatch) -> None:
    frames = np.zeros((9, 48, 64, 3), dtype=np.uint8)
    box = (63, 10, 64, 30)  # the last column of the frame
    track = ArtemisModel(*tiny_boxes).track_with_llm(frames, box=box, frame_index=4, max_new_tokens=6)
    assert track.status[4] == GIVEN and track.boxes[4].tolist() == list(box)
    # A model that answers the same thin box: a box of zero width in text is invalid, never a crash.
    model = Scripted(*tiny_boxes, lambda clip, n: frames_answer([[100, 30, 100, 55]] * n), monkeypatch)
    echoed = model.track_with_llm(frames, box=box, frame_index=4)
    x1, _, x2, _ = asked_box(model.prompts[0])
    assert (x1, x2) == (98, 100)  # columns 63..64 of 64, in hundredths (the padding adds rows only)
    assert echoed.num_invalid == 8 and not echoed.visible[[0, 8]].any()


def test_videos_shorter_than_one_clip(tiny_boxes) -> None:
    model = ArtemisModel(*tiny_boxes)
    frames = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    sot = model.track_with_llm(frames, box=(4, 4, 20, 20), frame_index=1, max_new_tokens=6)
    assert sot.clips == [[1, 2], [1, 0]] and sot.status[1] == GIVEN and len(sot.texts) == 2
    rsot = model.ground(frames, "the red circle", max_new_tokens=6)
    assert rsot.clips == [[0, 1, 2]] and rsot.num_frames == 3
    single = model.track_with_llm(frames[:1], box=(4, 4, 20, 20))
    assert single.clips == [] and single.status.tolist() == [GIVEN] and single.visible.tolist() == [True]
    assert model.ground(frames[:1], "the red circle", max_new_tokens=6).clips == [[0]]


def test_a_model_without_box_output_is_refused_by_the_api() -> None:
    model, processor = build_tiny_model(seed=0, video_layout="frames", frame_pool_size=2)
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match=r"was not trained to write boxes"):
        ArtemisModel(model, processor).ground(frames, "the red circle")


# --- memory ----------------------------------------------------------------------------------------------


class CountingVideo(ClosesOnExit):
    """A long video made up on demand: records every read, and how many frames it handed out are still alive."""

    def __init__(self, num_frames: int, size: int = 24) -> None:
        self.num_frames, self.width, self.height, self.fps, self.path = num_frames, size, size, 25.0, "<counting>"
        self.reads: list[list[int]] = []
        self.alive_at_read: list[int] = []
        self._handed: list[tuple[weakref.ref, int]] = []

    def _alive(self) -> int:
        # Arrays are freed by reference counting as soon as nothing holds them (no cycles to collect).
        return sum(count for ref, count in self._handed if ref() is not None)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        self.alive_at_read.append(self._alive())
        self.reads.append([int(i) for i in indices])
        batch = np.stack([np.full((self.height, self.width, 3), i % 256, dtype=np.uint8) for i in indices])
        self._handed.append((weakref.ref(batch), len(indices)))
        return batch

    def get_frame(self, index: int) -> np.ndarray:
        return self.get_frames([index])[0]

    def iter_frames(self, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        raise AssertionError("box output reads clips, it never streams the whole video")

    def close(self) -> None:
        pass


def test_memory_is_bounded_by_one_clip_on_a_long_video_from_a_middle_key_frame(tiny_boxes, monkeypatch) -> None:
    video = CountingVideo(160)
    model = Scripted(*tiny_boxes, lambda clip, n: frames_answer([[10, 10, 50, 50]] * n), monkeypatch)
    track = model.track_with_llm(video, box=(5, 5, 12, 12), frame_index=80)
    assert track.visible.all() and track.num_unparsed == 0
    assert max(len(read) for read in video.reads) <= 8  # one clip at a time
    assert max(video.alive_at_read) <= 8  # what is still held when the next clip is read: one clip at most
    decoded = [index for read in video.reads for index in read]
    assert sorted(decoded) == sorted([*range(160), 80])  # every frame once; the key frame once per direction
    forward = [read for read in video.reads if read[0] >= 80]
    assert all(a[-1] < b[0] for a, b in itertools.pairwise(forward))  # a stream, never a step back
    assert all(read == sorted(read) for read in video.reads)  # backward clips decode in increasing order too


def test_box_output_decodes_with_pyav_unless_told_otherwise(tiny_boxes, monkeypatch, tmp_path) -> None:
    """decord's decoding thread reads ahead while the model generates between clips (memory grows with the
    video, docs/box_output.md), so with backend "auto" the box-output calls open a file with PyAV."""
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for t in range(20):
        writer.write(np.full((48, 64, 3), 10 * t, dtype=np.uint8))
    writer.release()
    used: list[str] = []

    def record(model, processor, source, **kwargs):
        used.append(source.backend)
        return real(model, processor, source, **kwargs)

    def record_ground(model, processor, source, expression, **kwargs):
        used.append(source.backend)
        return real_ground(model, processor, source, expression, **kwargs)

    real, real_ground = pipeline_module.track_with_llm, pipeline_module.ground
    monkeypatch.setattr(pipeline_module, "track_with_llm", record)
    monkeypatch.setattr(pipeline_module, "ground", record_ground)
    answer = lambda clip, n: frames_answer([[10, 10, 50, 50]] * n)  # noqa: E731
    model = Scripted(*tiny_boxes, answer, monkeypatch)
    assert model.track_with_llm(path, box=(5, 5, 20, 20), frame_index=3).visible.all()
    assert model.ground(path, "the red circle").visible.all()
    assert used == ["pyav", "pyav"]
    if "decord" in available_backends():
        chosen = Scripted(*tiny_boxes, answer, monkeypatch)
        chosen.video_backend = "decord"  # an explicit choice is kept
        chosen.track_with_llm(path, box=(5, 5, 20, 20))
        assert used[-1] == "decord"


# --- box values as a local mean (number_window) ------------------------------------------------------------


def test_number_window_writes_the_local_mean_of_the_number_distribution(tiny_boxes) -> None:
    _, processor = tiny_boxes
    ids = number_token_ids(processor.tokenizer)
    vocab = len(processor.tokenizer)
    scores = torch.full((3, vocab), -30.0)
    # Row 0: a number whose neighbours are almost as likely, and a bump at 80 far outside the window.
    probs = {36: 0.40, 37: 0.25, 38: 0.20, 35: 0.05, 80: 0.10}
    for value, p in probs.items():
        scores[0, ids[value]] = math.log(p)
    # Row 1: a word is the greedy token; its numbers must not matter.
    scores[1, 5] = 0.0
    scores[1, ids[50]] = -1.0
    # Row 2: one number only.
    scores[2, ids[7]] = 0.0
    out = box_output.NumberWindow(ids, window=2)(torch.zeros((3, 1), dtype=torch.long), scores.clone())
    near = {v: p for v, p in probs.items() if abs(v - 36) <= 2}
    expected = round(sum(v * p for v, p in near.items()) / sum(near.values()))  # 36.6 -> 37, not pulled to 80
    assert expected == 37 and int(out[0].argmax()) == ids[expected] and torch.isinf(out[0]).sum() == vocab - 1
    assert torch.equal(out[1], scores[1])
    assert int(out[2].argmax()) == ids[7]
    greedy = box_output.NumberWindow(ids, window=0)(torch.zeros((3, 1), dtype=torch.long), scores.clone())
    assert int(greedy[0].argmax()) == ids[36]


def test_number_window_through_the_api_and_its_bad_values(tiny_boxes, monkeypatch) -> None:
    frames = np.random.default_rng(3).integers(0, 255, (9, 40, 40, 3), dtype=np.uint8)
    model = ArtemisModel(*tiny_boxes)
    seen: list[object] = []
    real = box_output.generate

    def spy(model_, processor, inputs, **options):
        seen.append(options.get("logits_processor"))
        return real(model_, processor, inputs, **options)

    monkeypatch.setattr(box_output, "generate", spy)
    track = model.track_with_llm(frames, box=(4, 4, 20, 20), number_window=3, max_new_tokens=12)
    assert len(track.texts) == 2 and track.num_frames == 9
    assert all(isinstance(p[-1], box_output.NumberWindow) and p[-1].window == 3 for p in seen)
    seen.clear()
    model.track_with_llm(frames, box=(4, 4, 20, 20), max_new_tokens=12)
    assert seen == [None, None]  # greedy by default
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match=f"number_window={bad!r} is not a whole number"):
            model.track_with_llm(frames, box=(4, 4, 20, 20), number_window=bad)
    monkeypatch.setattr(box_output, "number_token_ids", lambda tokenizer: None)
    with pytest.raises(ConfigError, match=r"one token.*use number_window=0"):
        model.ground(frames, "the red circle", number_window=2)


# --- several views of each clip (views) ----------------------------------------------------------------------


class ScriptedViews(ArtemisModel):
    """Answers every sample of a batch: ``answer(view, asked_box, num_frames)`` per sample, in batch order."""

    def __init__(self, model, processor, answer, monkeypatch) -> None:
        super().__init__(model, processor)
        self.answer = answer
        self.batches: list[list[list[int] | None]] = []
        self.prompts: list[list[str]] = []
        self.shapes: list[tuple[int, ...]] = []
        monkeypatch.setattr(box_output, "generate", self._generate)

    def _generate(self, model, processor, inputs, **options) -> list[str]:
        prompts = [processor.decode(ids) for ids in inputs["input_ids"]]
        asked = [asked_box(prompt) for prompt in prompts]
        self.batches.append(asked)
        self.prompts.append(prompts)
        self.shapes.append(tuple(inputs["pixel_values"].shape))
        num_frames = int(inputs["frame_mask"][0].sum())
        return [self.answer(view, box, num_frames) for view, box in enumerate(asked)]


def test_views_plan_a_mirror_and_canvases_of_half_a_patch_and_refuse_bad_counts() -> None:
    View = box_output.View
    assert box_output.plan_views(7, 4) == [
        View(),
        View(mirror=True),
        View(4, 4, 4),
        View(4, 4, 4, mirror=True),
        View(0, 0, 4),
        View(0, 0, 4, mirror=True),
        View(4, 0, 4),
    ]
    assert box_output.plan_views(11, 4)[-1] == View(8, 8, 8)  # the second ring: twice the step
    frames = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    shown = View(2, 1, 3).frames(frames)
    assert shown.shape == (2, 6, 8, 3)
    np.testing.assert_array_equal(shown[:, 1:4, 2:7], frames)  # the frame at (2, 1) on the canvas
    np.testing.assert_array_equal(shown[:, 0, 2:7], frames[:, 0])  # the border repeats the frame's edge
    np.testing.assert_array_equal(View(2, 1, 3, mirror=True).frames(frames), shown[:, :, ::-1])
    np.testing.assert_array_equal(View().frames(frames), frames)
    # A box on the 5 px wide frame, on the mirrored 8 px canvas: moved by (2, 1), then flipped.
    np.testing.assert_allclose(View(2, 1, 3, mirror=True).box(np.array([0.0, 0.0, 1.0, 2.0]), 5), [5, 1, 6, 3])
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises(ConfigError, match=f"views={bad!r} is not a whole number >= 1"):
            box_output.plan_views(bad, 4)


def test_a_mirrored_view_swaps_left_and_right_in_the_expression() -> None:
    mirror = box_output.mirror_words
    assert mirror("the circle moving left") == "the circle moving right"
    assert mirror("Right of the leftmost square, moving rightwards") == "Left of the rightmost square, moving leftwards"
    assert mirror("the bright triangle, leftover") == "the bright triangle, leftover"  # whole words only
    assert box_output.View(mirror=True).expression("the left one") == "the right one"
    assert box_output.View(4, 4, 4).expression("the left one") == "the left one"


def test_combine_views_votes_for_a_box_then_averages_the_boxes_that_agree_with_it() -> None:
    def clip(rows):
        boxes = np.array([r if isinstance(r, list) else [np.nan] * 4 for r in rows], dtype=float)
        status = np.array([PREDICTED if isinstance(r, list) else r for r in rows], dtype=np.int8)
        return box_output.ClipBoxes(boxes, status)

    merged = box_output.combine_views(
        [
            clip([[0, 0, 10, 10], [60, 60, 70, 70], INVALID, UNPARSED, INVALID, [0, 0, 10, 10]]),
            clip([[1, 1, 11, 11], [5, 5, 15, 15], INVALID, UNPARSED, [1, 1, 4, 4], [40, 40, 50, 50]]),
            clip([[2, 0, 12, 10], [6, 6, 16, 16], [3, 3, 5, 5], UNPARSED, UNPARSED, UNPARSED]),
        ]
    )
    # Frame 0: all three agree (IoU >= 0.5 pairwise): their mean.
    np.testing.assert_allclose(merged.boxes[0], [1, 1 / 3, 11, 31 / 3])
    # Frame 1: view 0 strays to another object; the two that agree outvote it, and only they are averaged.
    np.testing.assert_allclose(merged.boxes[1], [5.5, 5.5, 15.5, 15.5])
    assert merged.status.tolist() == [PREDICTED, PREDICTED, INVALID, UNPARSED, PREDICTED, PREDICTED]
    assert np.isnan(merged.boxes[2:4]).all()
    np.testing.assert_allclose(merged.boxes[4], [1, 1, 4, 4])  # one box against one empty answer: the box
    np.testing.assert_allclose(merged.boxes[5], [0, 0, 10, 10])  # two boxes that disagree: the earlier view's
    single = clip([[0, 0, 1, 1]])
    assert box_output.combine_views([single]) is single


def test_sot_in_three_views_maps_each_views_boxes_back_to_the_frame(tiny_boxes, monkeypatch) -> None:
    frames = np.random.default_rng(5).integers(0, 255, (15, 80, 100, 3), dtype=np.uint8)  # not square
    box = np.array([30.0, 20.0, 50.0, 44.0])

    # A copy tracker: every view writes the box it was asked on every frame, except view 0, which strays.
    def answer(view, asked, n):
        return frames_answer([[0, 20, 9, 29] if view == 0 else asked] * n)

    model = ScriptedViews(*tiny_boxes, answer, monkeypatch)
    track = model.track_with_llm(frames, box=box, views=3)
    assert len(model.batches) == 2 and all(len(batch) == 3 for batch in model.batches)
    assert model.shapes[0][:2] == (3, 8)  # one batch of three clips of eight frames
    # 100 x 80 frames on a square of 100; views 1 and 2 on canvases half a vision patch larger
    vision = tiny_boxes[0].config.vision_config
    step = round(0.5 * vision.patch_size * 100 / vision.image_size)
    assert step >= 2
    first = model.batches[0]
    assert first[0] == [30, 30, 50, 54]  # the frame as it is: box + 10 rows of padding, in hundredths
    assert first[1] != first[0] and first[2] != first[0]  # the same box on other canvases reads otherwise
    # Views 1 and 2 agree, so the median is their box mapped back: the given box within the text's rounding.
    scale = (100 + step) / 100  # one hundredth of the larger canvas in pixels
    np.testing.assert_allclose(track.boxes[1:], np.tile(box, (14, 1)), atol=scale)
    assert (track.status[1:] == PREDICTED).all() and track.texts[0].startswith("Frame 1: [0,20,9,29]")
    # The same tracker asked once writes view 0's stray box.
    once = ScriptedViews(*tiny_boxes, answer, monkeypatch).track_with_llm(frames, box=box)
    np.testing.assert_allclose(once.boxes[1:], np.tile([0, 10, 9, 19], (14, 1)), atol=1e-9)


def test_views_through_ground(monkeypatch) -> None:
    frames = np.zeros((8, 64, 64, 3), dtype=np.uint8)
    words = build_tiny_model(
        ["the circle moving left", "the circle moving right"], seed=0, video_layout="frames", tasks=["boxes"]
    )
    # View 0 writes [10,10,40,40] on the 64 px frame: [6.4, 6.4, 25.6, 25.6]. The mirror writes [61,10,91,40],
    # [39.04, 6.4, 58.24, 25.6] on its flipped frame, which is [5.76, 6.4, 24.96, 25.6] on the frame: they
    # agree, and the clip's box is their mean.
    answers = [[10, 10, 40, 40], [61, 10, 91, 40]]
    model = ScriptedViews(*words, lambda view, asked, n: frames_answer([answers[view]] * n), monkeypatch)
    track = model.ground(frames, "the circle moving left", views=2)
    assert model.batches == [[None, None]]  # both views asked the expression, in one batch
    assert "moving left" in model.prompts[0][0] and "moving right" in model.prompts[0][1]  # view 1 is a mirror
    np.testing.assert_allclose(track.boxes, np.tile([6.08, 6.4, 25.28, 25.6], (8, 1)), atol=1e-9)
    with pytest.raises(ConfigError, match="views=0 is not a whole number"):
        model.ground(frames, "the red circle", views=0)
