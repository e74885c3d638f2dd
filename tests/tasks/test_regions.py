"""Several regions, each given on a frame of its own: one tracking pass, the training prompt layout."""

from __future__ import annotations

import collections
import contextlib

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.errors import BoxError, VideoError
from artemis.model.processing import shared_key_frame
from artemis.prompts import referring_prompt
from artemis.regions import Region, parse_region_arg
from artemis.track import Track, resolve_stride, track_targets, track_video, tracked_indices
from artemis.video import open_video

BIKE = (280, 100, 360, 170)  # a cyclist on frame 10 of bikes.mp4
OTHER = (20, 20, 120, 120)  # the top-left corner on frame 200


class CountingVideo:
    """A video source that counts how often each frame index is decoded."""

    def __init__(self, source) -> None:
        self.source = source
        self.reads: collections.Counter[int] = collections.Counter()

    def __getattr__(self, name):
        return getattr(self.source, name)

    def get_frame(self, index):
        self.reads[int(index)] += 1
        return self.source.get_frame(index)

    def get_frames(self, indices):
        self.reads.update(int(i) for i in indices)
        return self.source.get_frames(indices)

    def iter_frames(self, start=0, stop=None, step=1):
        for index, frame in self.source.iter_frames(start, stop, step):
            self.reads[int(index)] += 1
            yield index, frame

    def iter_indices(self, indices):
        for index, frame in self.source.iter_indices(indices):
            self.reads[int(index)] += 1
            yield index, frame

    def close(self) -> None:
        self.source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def bikes(reference_dir):
    path = reference_dir / "videos" / "bikes.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the two-region test needs the reference video bikes.mp4")
    return path


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return ArtemisModel.from_pretrained(tiny_model_dir, log_card=False)


def test_two_targets_tracked_in_one_decode_match_tracking_each_alone(bikes):
    with contextlib.closing(CountingVideo(open_video(bikes))) as video:
        tracks = track_targets(video, [BIKE, OTHER], [10, 200], stride=8, max_side=320)
        assert max(video.reads.values()) == 1  # every frame decoded once, for both targets
        wanted = set()
        for key in (10, 200):
            forward, backward = tracked_indices(key, video.num_frames, 8)
            wanted |= set(forward) | set(backward)
        assert set(video.reads) == wanted
    for track, box, key in zip(tracks, (BIKE, OTHER), (10, 200), strict=True):
        alone = track_video(bikes, box, key, stride=8, max_side=320)
        assert track.key_frame == key and np.allclose(track.boxes[key], box)
        np.testing.assert_array_equal(track.visible, alone.visible)
        np.testing.assert_allclose(track.boxes, alone.boxes, equal_nan=True)


def test_ask_about_two_regions_on_different_frames_decodes_each_frame_once_for_tracking(model, bikes):
    video = CountingVideo(open_video(bikes))
    regions = [Region(box=BIKE, frame=10), Region(box=OTHER, frame=200)]
    result = model.ask(video, regions=regions, question="Is <region> left of <region>?", max_new_tokens=4)
    assert [t.key_frame for t in result.tracks] == [10, 200]
    assert np.allclose(result.tracks[0].boxes[10], BIKE) and np.allclose(result.tracks[1].boxes[200], OTHER)
    key = result.region_frames[0]
    assert all(t.visible[key] for t in result.tracks)  # the shared key slot shows both regions
    tracked = set()
    stride = resolve_stride(model.track_stride, video.num_frames)
    for frame in (10, 200):
        forward, backward = tracked_indices(frame, video.num_frames, stride)
        tracked |= set(forward) | set(backward)
    prompt_frames = set(result.video_frames) | set(result.region_frames)
    # The tracking pass reads each frame once; the prompt reads its own frames at most once more (none of
    # those the tracking pass kept for it).
    assert set(video.reads) == tracked | prompt_frames
    assert sum(video.reads.values()) <= len(tracked) + len(prompt_frames)
    assert max(video.reads.values()) <= 2


def test_describe_reads_the_models_frames_during_the_tracking_pass(model, bikes):
    """The frames the model is shown are kept as the tracker's pass decodes them: no frame is decoded twice."""
    video = CountingVideo(open_video(bikes))
    result = model.describe(video, BIKE, 10, max_new_tokens=4)
    stride = resolve_stride(model.track_stride, video.num_frames)
    forward, backward = tracked_indices(10, video.num_frames, stride)
    prompt_frames = set(result.video_frames) | set(result.region_frames)
    assert not prompt_frames <= set(forward) | set(backward)  # the model is shown frames the tracker skips
    assert set(video.reads) == set(forward) | set(backward) | prompt_frames
    # Only the key frame is decoded twice: each tracking pass (forward, backward) starts from it.
    assert {index: count for index, count in video.reads.items() if count > 1} == {10: 2}
    # The same answer and frames as with the track given (then the frames are read after tracking).
    again = model.describe(bikes, BIKE, 10, max_new_tokens=4, track=result.track)
    assert (again.text, again.video_frames, again.region_frames) == (
        result.text,
        result.video_frames,
        result.region_frames,
    )


def test_two_region_prompt_is_the_training_layout(model, bikes):
    processor = model.processor
    question = "Is <region> left of <region>?"
    with open_video(bikes) as source:
        tracks = [track_video(source, BIKE, 10, stride=8, max_side=320), track_video(source, OTHER, 200, stride=8)]
        item, plan = processor.referring_item(source, question, tracks, [10, 200])
    # The dataset encodes its text with referring_text(question, num_regions, answer): the same ids.
    expected = processor.referring_text(question, 2).input_ids
    assert item["input_ids"].tolist() == expected
    assert "region1" in referring_prompt(question, 2) and "region2" in referring_prompt(question, 2)
    region_ids = (item["input_ids"] == model.config.region_token_id).sum().item()
    assert region_ids == 2 * (1 + model.config.num_selected)
    assert plan.region_boxes.shape[0] == 2 and plan.region_visible[:, 0].all()


def test_the_old_boxes_form_still_works(model, bikes):
    result = model.ask(bikes, [BIKE, (300, 120, 380, 200)], "Is <region> left of <region>?", 10, max_new_tokens=3)
    assert [t.key_frame for t in result.tracks] == [10, 10] and result.region_frames[0] == 10


def test_shared_key_frame_picks_a_frame_showing_every_region():
    def region(visible):
        visible = np.asarray(visible, dtype=bool)
        return (np.where(visible[:, None], 1.0, np.nan) * np.ones((len(visible), 4)), visible)

    a = region([1, 1, 1, 1, 0, 0])
    b = region([0, 0, 1, 1, 1, 1])
    assert shared_key_frame([a, b], [3, 5]) == 3  # the first key frame where both are seen
    assert shared_key_frame([a, b], [0, 5]) == 2  # else the shared frame nearest the first key frame
    with pytest.raises(VideoError, match="no frame shows all 2 regions"):
        shared_key_frame([region([1, 1, 0, 0, 0, 0]), b], [0, 5])


def test_bad_regions_get_clear_errors(model, bikes):
    with pytest.raises(VideoError, match=r"frame index 999 is past the end of bikes\.mp4"):
        model.ask(
            bikes, regions=[Region(box=BIKE, frame=10), Region(box=OTHER, frame=999)], question="<region> <region>"
        )
    with pytest.raises(ValueError, match="exactly one of them"):
        model.ask(bikes, [BIKE], "what?", regions=[Region(box=BIKE)])
    with pytest.raises(BoxError, match="box or a mask"):
        Region(frame=3)
    with pytest.raises(BoxError, match=r"frame 'x' after '@' is not a frame index"):
        parse_region_arg("1,2,3,4@x")
    apart = Track.from_boxes([[0, 0, 10, 10]] * 3 + [None] * 3, key_frame=0, width=640, height=272)
    later = Track.from_boxes([None] * 3 + [[0, 0, 10, 10]] * 3, key_frame=3, width=640, height=272)
    with pytest.raises(VideoError, match="no frame shows all 2 regions"):
        model.ask(
            np.zeros((6, 272, 640, 3), np.uint8),
            regions=[Region(box=(0, 0, 10, 10), frame=0), Region(box=(0, 0, 10, 10), frame=3)],
            question="<region> and <region>?",
            tracks=[apart, later],
        )
    assert parse_region_arg("1,2,3,4@7") == Region(box=(1.0, 2.0, 3.0, 4.0), frame=7)


def test_chat_keeps_earlier_turns_and_encodes_regions_once(model, bikes):
    regions = [Region(box=BIKE, frame=10), Region(box=OTHER, frame=200)]
    first = "Is <region> left of <region>?"
    asked = model.ask(bikes, regions=regions, question=first, max_new_tokens=4)
    opened = model.chat(bikes, regions, [{"role": "user", "content": first}], max_new_tokens=4)
    assert opened.text == asked.text  # one turn: the same prompt as ask
    messages = [*opened.messages, {"role": "user", "content": "Which one is faster, region1 or region2?"}]
    follow = model.chat(bikes, regions, messages, max_new_tokens=4)
    assert follow.messages[:-1] == messages and follow.messages[-1] == {"role": "assistant", "content": follow.text}
    assert follow.to_dict()["messages"] == follow.messages

    processor = model.processor
    turns = [(first, opened.text), (messages[-1]["content"], None)]
    text = processor.referring_conversation_text(turns, 2)
    assert (
        text.input_ids == processor.encode_conversation([(referring_prompt(first, 2), opened.text), turns[1]]).input_ids
    )
    region_ids = sum(i == model.config.region_token_id for i in text.input_ids)
    assert region_ids == 2 * (1 + model.config.num_selected)  # the regions' tokens stand once, in the first turn
    answer_ids = processor.encode_conversation([("x", opened.text)]).labels
    assert [i for i in text.labels if i >= 0] == [i for i in answer_ids if i >= 0]  # the earlier answer is kept


def test_bad_conversations_get_clear_errors(model, bikes):
    regions = [Region(box=BIKE, frame=10)]
    with pytest.raises(ValueError, match="ending with the user's new question"):
        model.chat(bikes, regions, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}])
    with pytest.raises(ValueError, match="later turns name them in words"):
        model.chat(
            bikes,
            regions,
            [{"role": "user", "content": "What is <region>?"}, {"role": "assistant", "content": "a bike"},
             {"role": "user", "content": "And <region>?"}],
        )  # fmt: skip
