"""The user API and the CLI on real videos: describe, ask, track, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from artemis import ArtemisModel
from artemis.errors import BoxError, CheckpointError, VideoError


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return ArtemisModel.from_pretrained(tiny_model_dir)


def test_describe_a_real_video_twice_gives_the_same_text(model, reference_dir):
    video = reference_dir / "videos" / "carphone_pristine.mp4"
    first = model.describe(video, (50, 30, 130, 120), frame_index=60, max_new_tokens=6)
    second = model.describe(video, (50, 30, 130, 120), frame_index=60, max_new_tokens=6)
    assert first.text == second.text
    assert first.text  # the tiny model writes words from its vocabulary
    assert first.track.num_frames == 120 and first.track.visible[60]
    assert len(first.video_frames) == model.config.num_frames
    assert first.region_frames[0] == 60 and len(first.region_frames) == model.config.num_region_frames
    assert all(first.track.visible[f] for f in first.region_frames)


def test_ask_about_two_regions(model, reference_dir):
    video = reference_dir / "videos" / "bikes.mp4"
    boxes = [(280, 100, 360, 170), (20, 20, 120, 120)]
    result = model.ask(video, boxes, "Is <region> left of <region>?", frame_index=10, max_new_tokens=4)
    assert len(result.tracks) == 2 and len(result.region_visible) == 2


def test_describe_with_a_given_track_skips_the_tracker(model, reference_dir):
    video = reference_dir / "videos" / "realshort.mp4"
    track = model.track(video, (100, 60, 200, 180), frame_index=10)
    result = model.describe(video, (100, 60, 200, 180), frame_index=10, track=track, max_new_tokens=3)
    assert result.track is track


def test_bad_inputs_get_clear_errors(model, reference_dir, tmp_path):
    video = reference_dir / "videos" / "realshort.mp4"
    with pytest.raises(VideoError, match=r"frame index 36 is past the end of realshort.mp4 \(36 frames, 0..35\)"):
        model.describe(video, (10, 10, 50, 50), frame_index=36)
    with pytest.raises(BoxError, match="zero area"):
        model.describe(video, (10, 10, 10, 50))
    with pytest.raises(BoxError, match="x2 < x1"):
        model.describe(video, (60, 10, 10, 50))
    with pytest.raises(BoxError, match="outside"):
        model.describe(video, (400, 300, 500, 400))
    with pytest.raises(VideoError, match="does not exist"):
        model.describe(tmp_path / "missing.mp4", (10, 10, 50, 50))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError):
        model.describe(corrupt, (10, 10, 50, 50))


def test_checkpoint_whose_shapes_do_not_match_its_config(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["hidden_size"] = 96  # the weights are 64 wide
    config["text_config"]["head_dim"] = 24
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit its config"):
        ArtemisModel.from_pretrained(broken)
    with pytest.raises(CheckpointError, match="neither a local directory"):
        ArtemisModel.from_pretrained(tmp_path / "nowhere")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artemis.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_describe_is_deterministic_and_bad_input_is_one_line(tiny_model_dir, reference_dir):
    video = str(reference_dir / "videos" / "realshort.mp4")
    args = ["describe", video, "--box", "100,60,200,180", "--frame", "5", "--model", str(tiny_model_dir)]
    first = _cli(*args, "--json", "--max-new-tokens", "5")
    second = _cli(*args, "--json", "--max-new-tokens", "5")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["text"] == json.loads(second.stdout)["text"]
    assert len(json.loads(first.stdout)["tracks"][0]["boxes"]) == 36
    bad = _cli(*args[:-4], "--frame", "99", "--model", str(tiny_model_dir))
    assert bad.returncode == 2
    assert (
        bad.stderr.strip().splitlines()
        == ["artemis describe: error: frame index 99 is past the end of realshort.mp4 (36 frames, 0..35)"]
        or "past the end" in bad.stderr.strip().splitlines()[-1]
    )
    assert "Traceback" not in bad.stderr
