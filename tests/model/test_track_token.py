"""The track token (``region_track_token``): one more token per region that embeds the geometry of its whole
track, so where a target ends and how fast it moves are plain numbers the LLM can compare between regions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artemis import ArtemisModel
from artemis.data import read
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.configuration import tiny_config
from artemis.model.region import TrackEmbedding
from artemis.regions import Region

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("track"), 3, seed=5, split="train", config=CONFIG).split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    return build_tiny_model(texts, seed=0, region_track_token=True)


def test_features_follow_time_and_skip_hidden_frames() -> None:
    # key frame at t=0.5 first, then frames at t=0, 0.25, 0.75 (hidden), 1.0; the target moves right.
    boxes = torch.tensor([[0.4, 0.1, 0.5, 0.2], [0.0, 0.1, 0.1, 0.2], [0.2, 0.1, 0.3, 0.2],
                          [0.9, 0.9, 1.0, 1.0], [0.8, 0.1, 0.9, 0.2]])  # fmt: skip
    times = torch.tensor([0.5, 0.0, 0.25, 0.75, 1.0])
    visible = torch.tensor([True, True, True, False, True])
    features = TrackEmbedding.features(boxes[None], visible[None], times[None])[0]
    first, last = features[:4], features[4:8]
    torch.testing.assert_close(first, boxes[1])  # earliest visible
    torch.testing.assert_close(last, boxes[4])  # latest visible, not the hidden frame at 0.75
    torch.testing.assert_close(features[8:10], torch.tensor([0.8, 0.0]))  # centre shift
    torch.testing.assert_close(features[10:12], torch.tensor([0.8, 0.0]))  # over a span of 1.0
    # path over visible neighbours in time order: 0.2 + 0.2 + 0.4 (the hidden frame breaks no step twice)
    torch.testing.assert_close(features[12], torch.tensor(0.8))
    torch.testing.assert_close(features[13:], torch.tensor([0.0, 1.0]))


def test_a_still_target_seen_once_has_zero_motion() -> None:
    boxes = torch.tensor([[[0.3, 0.3, 0.4, 0.4], [float("nan")] * 4, [0.0, 0.0, 0.1, 0.1]]])
    visible = torch.tensor([[True, False, False]])
    features = TrackEmbedding.features(boxes, visible, torch.tensor([[0.4, 0.2, 0.9]]))[0]
    assert torch.isfinite(features).all()
    torch.testing.assert_close(features[:4], features[4:8])  # only the key box: first == last
    assert float(features[8:13].abs().sum()) == 0.0


def test_relations_are_differences_from_the_mean_of_present_regions() -> None:
    values = torch.tensor([[[1.0, 4.0], [3.0, 0.0], [100.0, 100.0]]])  # the third region is padding
    present = torch.tensor([[True, True, False]])
    relative = TrackEmbedding.relative(values, present)
    torch.testing.assert_close(relative, torch.tensor([[[-1.0, 2.0], [1.0, -2.0], [0.0, 0.0]]]))
    lone = TrackEmbedding.relative(values[:, :1], None)
    assert float(lone.abs().sum()) == 0.0  # one region: nothing to compare with


def test_the_track_token_of_a_region_depends_on_the_other_region(tiny) -> None:
    model, _ = tiny
    model.eval()
    track = model.region_encoder.track_embedding
    generator = torch.Generator().manual_seed(3)
    corner = torch.rand(1, 2, 4, 2, generator=generator) * 0.5
    boxes = torch.cat([corner, corner + 0.3], -1)  # (1, 2, K=4, 4)
    times = torch.linspace(0, 1, 4)[None]
    content = torch.randn(1, 2, model.config.region_hidden_size, generator=generator)
    with torch.no_grad():
        pair = track(boxes, None, times, content)
        moved = boxes.clone()
        moved[0, 1] += 0.1  # only the second region moves
        pair_moved = track(moved, None, times, content)
        alone = track(boxes[:, :1], None, times, content[:, :1])
        alone_padded = track(
            torch.cat([boxes[:, :1], moved[:, 1:]], 1), None, times, content, torch.tensor([[True, False]])
        )
    assert not torch.allclose(pair[0, 0], pair_moved[0, 0])  # region 1's token sees region 2's track
    torch.testing.assert_close(alone_padded[0, 0], alone[0, 0])  # a padding region is not compared with


def test_the_track_token_is_one_more_region_token(tiny) -> None:
    model, processor = tiny
    plain = tiny_config()
    assert model.config.num_region_tokens == plain.num_selected + 2
    assert processor.num_region_tokens == model.config.num_region_tokens
    with pytest.raises(ConfigError, match="region_track_token"):
        tiny_config(region_track_token="yes")


def test_two_regions_ask_and_the_track_token_sees_the_end_of_each_track(tiny, split: Path, tmp_path: Path) -> None:
    model, processor = tiny
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    artemis = ArtemisModel.from_pretrained(tmp_path / "m", tracker="opencv-kcf")
    record = json.loads((split / "videoref45k_pairs.json").read_text())[0]
    video = split / record["frame_path"]
    captured: list[torch.Tensor] = []
    encoder = artemis.model.region_encoder.track_embedding
    handle = encoder.register_forward_hook(lambda module, args, out: captured.append(out.detach()))
    try:
        regions = [
            Region(box=tuple(b), frame=int(f))
            for b, f in zip(record["key_frame_box"], record["key_frame_id"], strict=True)
        ]
        answer = artemis.ask(str(video), regions=regions, question="Are <region> and <region> the same colour?")
    finally:
        handle.remove()
    assert isinstance(answer.text, str) and len(answer.tracks) == 2
    assert captured and captured[0].shape == (1, 2, model.config.text_config.hidden_size)
    # the two regions differ, so their track tokens differ
    assert not torch.allclose(captured[0][0, 0], captured[0][0, 1])


def test_the_region_words_objective_reads_the_track_token(tiny, split: Path) -> None:
    from artemis.train.region_words import RegionWordsObjective

    model, _ = tiny
    head = RegionWordsObjective(model).head
    assert head.in_features == 3 * model.config.text_config.hidden_size
    assert np.isfinite(head.weight.detach().numpy()).all()
