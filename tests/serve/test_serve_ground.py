"""The server's box-output verbs (``/v1/ground``, ``/v1/track?by_model=1``) on a model that writes boxes, in
process: the :class:`ModelService` the routes call, with a tiny random box model on a short video."""

from __future__ import annotations

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.model import build_tiny_model
from artemis.serve.service import ModelService
from artemis.tasks import BoxOutTrack
from artemis.video.draw import write_video


@pytest.fixture(scope="module")
def service() -> ModelService:
    model, processor = build_tiny_model(
        ["the red circle"], seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"]
    )
    return ModelService(ArtemisModel(model, processor))


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("serve-ground") / "short.mp4", frames, 10.0)


def test_ground_and_track_by_model(service, short_video) -> None:
    found = service.ground(short_video, "the red circle")
    assert isinstance(found, BoxOutTrack) and found.asked == ["rsot"] and found.num_frames == 3
    data = found.to_json()
    assert data["expression"] == "the red circle" and len(data["status"]) == 3 and data["texts"]
    tracked = service.track_by_model(short_video, (2, 2, 20, 20), 1)
    assert tracked.to_json()["status"][1] == "given" and tracked.clips == [[1, 2], [1, 0]]
