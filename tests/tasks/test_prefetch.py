"""The model's frames read while the targets are tracked: the same frames, the same answer, sooner."""

from __future__ import annotations

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.tasks import pipeline as pipeline_module
from artemis.tasks.prefetch import FramePrefetch, PrefetchedSource, planned_frames
from artemis.video import ArrayVideo

BIKE = (300, 100, 360, 200)  # a cyclist on frame 0 of bikes.mp4


@pytest.fixture
def bikes(reference_dir):
    path = reference_dir / "videos" / "bikes.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the prefetch test needs the reference video bikes.mp4")
    return path


@pytest.fixture
def served(monkeypatch):
    """The PrefetchedSource of every ask call, as the pipeline hands it to the model."""
    sources: list[PrefetchedSource] = []

    class Recording(FramePrefetch):
        def source(self, source):
            prefetched = super().source(source)
            sources.append(prefetched)
            return prefetched

    monkeypatch.setattr(pipeline_module, "FramePrefetch", Recording)
    return sources


@pytest.mark.parametrize("frame", [0, 120])
def test_describe_with_prefetched_frames_equals_describe_without(tiny_model_dir, bikes, served, frame):
    model = ArtemisModel.from_pretrained(tiny_model_dir)
    model.prefetch_frames = False
    plain = model.describe(str(bikes), BIKE, frame, max_new_tokens=8)
    assert served == []  # switched off: nothing prefetched
    model.prefetch_frames = True
    fast = model.describe(str(bikes), BIKE, frame, max_new_tokens=8)
    assert fast.text == plain.text
    assert fast.video_frames == plain.video_frames and fast.region_frames == plain.region_frames
    np.testing.assert_array_equal(fast.tracks[0].boxes, plain.tracks[0].boxes)
    # The thread read the plan of a target seen on every frame; frames the real track moved the plan to
    # (where the tracker lost the cyclist) were read afterwards, and only those.
    with model.open(str(bikes)) as source:
        guess = set(planned_frames(model.processor, source, [frame]).tolist())
    used = set(fast.video_frames) | set(fast.region_frames)
    assert set(fast.video_frames) <= guess
    assert len(served) == 1 and served[0].read_through == sorted(used - guess)


def test_frames_the_guess_missed_are_read_from_the_source():
    frames = np.random.default_rng(0).integers(0, 256, (10, 6, 8, 3), dtype=np.uint8)
    video = ArrayVideo(frames)
    source = PrefetchedSource(video, {2: frames[2], 5: frames[5]})
    np.testing.assert_array_equal(source.get_frames([5, 7, 2, 7, 9]), frames[[5, 7, 2, 7, 9]])
    assert source.read_through == [7, 9]
    np.testing.assert_array_equal(source.get_frame(9), frames[9])
    assert source.read_through == [7, 9]  # read once
    assert (source.num_frames, source.width, source.height) == (10, 8, 6)


def test_a_prefetch_that_fails_leaves_the_reading_to_the_caller(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    missing = tmp_path / "gone.mp4"  # no such file: the thread's reader fails, quietly
    source = FramePrefetch(missing, [0, 3]).source(ArrayVideo(frames))
    np.testing.assert_array_equal(source.get_frames([3, 0]), frames[[3, 0]])
    assert source.read_through == [0, 3]


def test_the_guessed_plan_is_the_plan_of_a_target_seen_on_every_frame(tiny_model_dir):
    from artemis.model.processing import ArtemisProcessor

    model = ArtemisModel.from_pretrained(tiny_model_dir)
    processor: ArtemisProcessor = model.processor
    video = ArrayVideo(np.zeros((90, 30, 40, 3), dtype=np.uint8))
    boxes = np.tile([[5.0, 5.0, 20.0, 20.0]], (90, 1))
    plan = processor.plan(90, 40, 30, 30, [(boxes, np.ones(90, dtype=bool))])
    expected = np.union1d(plan.video_frames, plan.region_frames)
    np.testing.assert_array_equal(planned_frames(processor, video, [30]), expected)
    # Two regions on frames of their own share one key slot: their first key frame when both are seen there.
    two = processor.plan(90, 40, 30, 10, [(boxes, np.ones(90, dtype=bool))] * 2)
    np.testing.assert_array_equal(
        planned_frames(processor, video, [10, 70]), np.union1d(two.video_frames, two.region_frames)
    )


def test_describe_batch_prefetches_each_request_and_answers_as_before(tiny_model_dir, bikes, served):
    model = ArtemisModel.from_pretrained(tiny_model_dir)
    requests = [(str(bikes), BIKE, 0), (str(bikes), (100, 60, 180, 160), 40)]
    model.prefetch_frames = False
    plain = model.describe_batch(requests, max_new_tokens=6)
    model.prefetch_frames = True
    fast = model.describe_batch(requests, max_new_tokens=6)
    assert [d.text for d in fast] == [d.text for d in plain]
    assert [d.region_frames for d in fast] == [d.region_frames for d in plain]
    assert len(served) == 2
