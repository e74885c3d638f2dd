"""``artemis ground``, ``artemis track --by-model`` and the demo's box output, run through the CLI's ``main``.

The model is a tiny random one with ``tasks=["describe", "boxes"]``: it writes mostly unreadable boxes, so
these tests check what the commands write and that nothing crashes, not where the boxes are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artemis import ArtemisModel
from artemis.cli import main
from artemis.data import generate_split
from artemis.model import build_tiny_model
from artemis.model.loading import DEFAULT_BOX_MODEL, bundled_models
from artemis.track import Track

TRACK_KEYS = {"num_frames", "fps", "width", "height", "key_frame", "boxes", "visible"}
BOX_OUTPUT_KEYS = {"status", "num_unparsed", "num_invalid", "texts", "clips", "asked", "expression", "unknown_words"}


@pytest.fixture(scope="module")
def box_model_dir(tmp_path_factory) -> Path:
    model, processor = build_tiny_model(
        ["the red circle", "the small blue square"],
        seed=0,
        video_layout="frames",
        frame_pool_size=2,
        tasks=["describe", "boxes"],
    )
    directory = tmp_path_factory.mktemp("tiny-boxes")
    ArtemisModel(model, processor).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def synthref_video(tmp_path_factory) -> tuple[Path, dict]:
    """One SynthRef test video (128x128, 24 frames) and the target the demo would pick."""
    split = generate_split(tmp_path_factory.mktemp("synthref"), 1, seed=3, split="test").split_dir
    entry = json.loads((split / "manifest.json").read_text())["videos"][0]
    return split / entry["video"], entry["objects"][0]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("artemis ")]


def test_ground_writes_the_track_json_and_a_viz(box_model_dir, synthref_video, tmp_path, capsys) -> None:
    video, target = synthref_video
    out, viz = tmp_path / "track.json", tmp_path / "track.gif"
    argv = ["ground", str(video), "--expression", target["caption"], "--model", str(box_model_dir)]
    code = main([*argv, "--out", str(out), "--viz", str(viz), "--max-new-tokens", "8", "--no-progress"])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data) >= TRACK_KEYS | BOX_OUTPUT_KEYS
    assert data["num_frames"] == 24 and len(data["boxes"]) == 24 and len(data["status"]) == 24
    assert data["num_unparsed"] == data["status"].count("unparsed") and data["asked"][0] == "rsot"
    assert [clip[0] for clip in data["clips"]] == [0, 7, 14, 16] and len(data["texts"]) == 4
    assert Track.from_json(data).num_frames == 24  # the tracker path's reader takes it
    assert viz.stat().st_size > 0
    assert any("unparsed" in line for line in _errors(capsys))


def test_track_by_model_writes_the_same_json_as_the_tracker(box_model_dir, synthref_video, tmp_path) -> None:
    video, target = synthref_video
    key = next(i for i, box in enumerate(target["boxes"]) if box)
    box = ",".join(str(v) for v in target["boxes"][key])
    tracker_json, model_json = tmp_path / "tracker.json", tmp_path / "model.json"
    assert main(["track", str(video), "--box", box, "--frame", str(key), "--out", str(tracker_json)]) == 0
    argv = ["track", str(video), "--box", box, "--frame", str(key), "--by-model", "--model", str(box_model_dir)]
    assert main([*argv, "--out", str(model_json), "--max-new-tokens", "8", "--no-progress"]) == 0
    tracker, model = json.loads(tracker_json.read_text()), json.loads(model_json.read_text())
    assert set(tracker) - {"scores"} <= set(model) and set(model) >= BOX_OUTPUT_KEYS
    assert {k: model[k] for k in ("num_frames", "width", "height", "key_frame")} == {
        k: tracker[k] for k in ("num_frames", "width", "height", "key_frame")
    }
    assert model["boxes"][key] == tracker["boxes"][key] and model["status"][key] == "given"
    assert model["expression"] is None and set(model["asked"]) == {"sot"}


def test_views_reach_the_model_from_both_commands(box_model_dir, synthref_video, tmp_path, monkeypatch, capsys) -> None:
    from artemis.tasks import box_output

    batches: list[int] = []
    real = box_output.generate

    def counted(model, processor, inputs, **options):
        batches.append(int(inputs["input_ids"].shape[0]))
        return real(model, processor, inputs, **options)

    monkeypatch.setattr(box_output, "generate", counted)
    video, target = synthref_video
    model = ["--model", str(box_model_dir), "--max-new-tokens", "8", "--no-progress"]
    out = tmp_path / "ground.json"
    ground = ["ground", str(video), "--expression", "the red circle", *model]
    assert main([*ground, "--views", "3", "--out", str(out)]) == 0
    assert batches and set(batches) == {3}  # every clip asked in three views, in one batch
    assert json.loads(out.read_text())["num_frames"] == 24
    batches.clear()
    key = next(i for i, box in enumerate(target["boxes"]) if box)
    box = ",".join(str(v) for v in target["boxes"][key])
    track = ["track", str(video), "--box", box, "--frame", str(key)]
    assert main([*track, "--by-model", *model, "--views", "2", "--out", str(tmp_path / "t.json")]) == 0
    assert batches and set(batches) == {2}
    assert main([*track, "--views", "2"]) == 2  # the tracker path has no views
    errors = _errors(capsys)
    assert "--views" in errors[-1] and "add --by-model" in errors[-1]
    assert main([*ground, "--views", "0"]) == 2
    assert "views=0 is not a whole number >= 1" in _errors(capsys)[-1]


@pytest.mark.slow
@pytest.mark.reference
def test_the_three_real_videos(box_model_dir, reference_dir, tmp_path) -> None:
    videos = reference_dir / "videos"
    if not videos.is_dir():
        pytest.skip(f"no reference videos at {videos}")
    runs = [
        ["track", str(videos / "bikes.mp4"), "--box", "280,100,360,170", "--frame", "120", "--by-model"],
        ["ground", str(videos / "carphone_pristine.mp4"), "--expression", "the man on the phone"],
        ["ground", str(videos / "realshort.mp4"), "--expression", "the red circle", "--frame", "20"],
    ]
    for number, argv in enumerate(runs):
        out = tmp_path / f"{number}.json"
        code = main([*argv, "--model", str(box_model_dir), "--max-new-tokens", "4", "--no-progress", "--out", str(out)])
        assert code == 0, argv
        data = json.loads(out.read_text())
        assert len(data["boxes"]) == data["num_frames"] == len(data["status"]) and data["texts"]
    assert {"man", "phone"} <= set(json.loads((tmp_path / "1.json").read_text())["unknown_words"])


def test_a_model_without_box_output_is_one_line(tiny_model_dir, synthref_video, capsys) -> None:
    video, _ = synthref_video
    for argv in (
        ["ground", str(video), "--expression", "the red circle", "--model", str(tiny_model_dir)],
        ["track", str(video), "--box", "1,1,20,20", "--by-model", "--model", str(tiny_model_dir)],
    ):
        assert main(argv) == 2
        errors = _errors(capsys)
        assert len(errors) == 1 and "was not trained to write boxes" in errors[0], errors


def test_no_bundled_box_model_names_the_flag_to_pass(synthref_video, capsys) -> None:
    if DEFAULT_BOX_MODEL in bundled_models():
        pytest.skip(f"{DEFAULT_BOX_MODEL} is bundled: it is the default")
    video, _ = synthref_video
    assert main(["ground", str(video), "--expression", "the red circle"]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "no bundled model writes boxes" in errors[0] and "--model DIR" in errors[0]


def test_outputs_are_checked_before_the_model_loads(synthref_video, tmp_path, capsys) -> None:
    video, _ = synthref_video
    blocked = tmp_path / "file"
    blocked.write_text("")
    argv = ["ground", str(video), "--expression", "the red circle", "--model", str(tmp_path / "missing")]
    assert main([*argv, "--out", str(blocked / "track.json")]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "--out" in errors[0], errors  # not the missing model
    assert main(["ground", str(video), "--expression", " ", "--model", str(tmp_path / "missing")]) == 2
    assert "referring expression is empty" in _errors(capsys)[0]


def test_demo_draws_the_models_boxes_beside_the_trackers(box_model_dir, tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", str(box_model_dir), "--max-new-tokens", "6"]) == 0
    result = json.loads((out / "result.json").read_text())
    llm = result["box_output"]
    assert llm["model"] == box_model_dir.name and 0.0 <= llm["success_auc"] <= 1.0
    assert llm["track"]["status"][result["key_frame"]] == "given" and llm["track"]["texts"]
    assert (out / "demo.gif").stat().st_size > 0
    assert "box output:" in capsys.readouterr().out
    if DEFAULT_BOX_MODEL not in bundled_models():  # a describing model alone: said in one line, tracker only
        plain = ["demo", "--out", str(tmp_path / "plain"), "--model", str(tiny_model_dir), "--max-new-tokens", "4"]
        assert main(plain) == 0
        notes = [line for line in capsys.readouterr().err.splitlines() if "no bundled model writes boxes" in line]
        assert len(notes) == 1
        assert json.loads((tmp_path / "plain" / "result.json").read_text())["box_output"] is None
