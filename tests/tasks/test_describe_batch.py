"""``describe_batch``: several videos and boxes in one padded generate call, the same texts as one by one."""

from __future__ import annotations

import pytest

from artemis import ArtemisModel
from artemis.tasks.pipeline import DescribeRequest


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return ArtemisModel.from_pretrained(tiny_model_dir)


def test_batch_texts_equal_one_by_one(model, reference_dir):
    videos = reference_dir / "videos"
    bikes, carphone, short = videos / "bikes.mp4", videos / "carphone_pristine.mp4", videos / "realshort.mp4"
    tracks = {
        "bikes": model.track(bikes, (280, 100, 360, 170), frame_index=10),
        "carphone": model.track(carphone, (50, 30, 130, 120), frame_index=60),
    }
    requests = [
        DescribeRequest(bikes, (280, 100, 360, 170), 10, track=tracks["bikes"]),
        DescribeRequest(carphone, (50, 30, 130, 120), 60, track=tracks["carphone"]),
        (short, (100, 60, 200, 180), 10),  # a tuple, tracked here
        DescribeRequest(carphone, (50, 30, 130, 120), 60, "Where is the <region> going?", tracks["carphone"]),
    ]
    batch = model.describe_batch(requests, max_new_tokens=10)
    single = [
        model.describe(bikes, (280, 100, 360, 170), 10, track=tracks["bikes"], max_new_tokens=10),
        model.describe(carphone, (50, 30, 130, 120), 60, track=tracks["carphone"], max_new_tokens=10),
        model.describe(short, (100, 60, 200, 180), 10, max_new_tokens=10),
        model.describe(
            carphone,
            (50, 30, 130, 120),
            60,
            "Where is the <region> going?",
            track=tracks["carphone"],
            max_new_tokens=10,
        ),
    ]
    assert [d.text for d in batch] == [d.text for d in single]
    assert all(d.text for d in batch)
    assert [d.region_frames for d in batch] == [d.region_frames for d in single]
    assert [d.question for d in batch] == [d.question for d in single]
    # Smaller generate calls give the same texts too.
    assert [d.text for d in model.describe_batch(requests, batch_size=3, max_new_tokens=10)] == [d.text for d in batch]


def test_bad_requests(model, reference_dir):
    video = reference_dir / "videos" / "realshort.mp4"
    assert model.describe_batch([]) == []
    with pytest.raises(ValueError, match="video, box, frame_index"):
        model.describe_batch([(video,)])
    with pytest.raises(ValueError, match="batch_size"):
        model.describe_batch([(video, (10, 10, 50, 50), 0)], batch_size=-1)
