"""SynthRef pair questions: exact answers from the generator, and their scorer."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import artemis.data.synthref_writer as writer
from artemis.cli import main
from artemis.data.synthref import generate_scene
from artemis.data.synthref_writer import PAIRS_FILE, generate_split, read_pair_records
from artemis.eval.synthref import pair_answer, pair_metrics


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return generate_split(tmp_path_factory.mktemp("pairs"), 4, seed=5, split="val").split_dir


def _which(first_wins: bool) -> str:
    return "region1" if first_wins else "region2"


def _expected(kind: str, a: dict, b: dict, scene_a, scene_b, last: int) -> str:
    """The answer from the manifest's labels and the generator's centres on the last frame."""
    if kind in ("same_colour", "same_shape", "same_direction"):
        label = {"same_colour": "colour", "same_shape": "shape", "same_direction": "motion"}[kind]
        return "yes" if a[label] == b[label] else "no"
    if kind == "faster":
        return _which(a["speed"] > b["speed"])
    axis = 0 if kind == "left" else 1
    return _which(scene_a.centre(last)[axis] < scene_b.centre(last)[axis])


def test_every_answer_is_exact_against_the_generator(split):
    manifest = json.loads((split / "manifest.json").read_text())
    videos = {video["name"]: video for video in manifest["videos"]}
    raw = json.loads((split / PAIRS_FILE).read_text())
    assert raw and {r["kind"] for r in raw} == {"same_colour", "same_shape", "left", "up", "faster", "same_direction"}
    for record, read in zip(raw, read_pair_records(split / PAIRS_FILE), strict=True):
        name = record["video_name"].removesuffix(".mp4")
        scene = generate_scene(5, "val", int(name.split("_")[1]))
        i, j = record["objects"]
        a, b = videos[name]["objects"][i], videos[name]["objects"][j]
        expected = _expected(record["kind"], a, b, scene.objects[i], scene.objects[j], scene.num_frames - 1)
        assert pair_answer(record["caption"]) == expected, record["id"]
        assert record["question"].count("<region>") == 2
        if record["kind"] == "same_direction":
            assert "still" not in (a["motion"], b["motion"])
        # Each region keeps its own key frame and the generator's boxes (where visible).
        assert record["key_frame_id"] == [a["key_frame_id"], b["key_frame_id"]]
        for track, obj in zip(record["track_list"], (a, b), strict=True):
            assert track == [box if seen else [] for box, seen in zip(obj["boxes"], obj["visible"], strict=True)]
        assert read.key_frames == (a["key_frame_id"], b["key_frame_id"]) and read.answer == record["caption"]
        both = np.isfinite(read.boxes[0]).all(1) & np.isfinite(read.boxes[1]).all(1)
        assert both.any()  # a frame shows both: the prompt's shared key slot exists


def test_pairs_leave_every_other_file_byte_identical(split, tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_pair_records", lambda *args: [])
    without = generate_split(tmp_path, 4, seed=5, split="val").split_dir

    def digest(folder):
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != PAIRS_FILE
        }

    assert digest(split) == digest(without)
    assert json.loads((without / PAIRS_FILE).read_text()) == []


def test_the_scorer_on_hand_written_predictions():
    records = [
        # right, and the swap flips the named region: a model that follows its boxes
        {"kind": "left", "answer": "region1 is further left.", "prediction": "region1 is further left.",
         "swap": {"answer": "region2 is further left.", "prediction": "Region2 is further left."}},
        # wrong, and the swap does not flip: a model that ignores its boxes
        {"kind": "faster", "answer": "region2 moves faster.", "prediction": "region1 moves faster.",
         "swap": {"answer": "region1 moves faster.", "prediction": "region1 moves faster."}},
        {"kind": "same_colour", "answer": "No.", "prediction": "No, they differ.",
         "swap": {"answer": "No.", "prediction": "yes"}},
        {"kind": "same_colour", "answer": "No.", "prediction": "I cannot tell."},
    ]  # fmt: skip
    metrics = pair_metrics(records)
    assert metrics["pair_accuracy"] == pytest.approx(2 / 4)
    assert metrics["chance_pair_accuracy"] == 0.5
    assert metrics["majority_pair_accuracy"] == 1.0  # one answer per kind here
    assert metrics["swap_pair_accuracy"] == pytest.approx(2 / 3)
    assert metrics["swap_flip_rate"] == pytest.approx(1 / 2)
    assert metrics["num_pairs"] == 4 and metrics["num_swap"] == 3 and metrics["num_unparsed"] == 1
    assert metrics["pair_accuracy_same_colour"] == 0.5 and metrics["pair_accuracy_faster"] == 0.0
    assert pair_answer("Region2, clearly") == "region2" and pair_answer("nothing") is None


def test_eval_synthref_pairs_command(split, tiny_model_dir, tmp_path, capsys):
    code = main(
        ["eval", "synthref", "--task", "pairs", "--data", str(split), "--model", str(tiny_model_dir),
         "--out", str(tmp_path / "eval"), "--limit", "3", "--max-new-tokens", "3", "--json"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    metrics = json.loads(out)
    assert metrics["num_pairs"] == 3 and metrics["num_swap"] == 3 and metrics["chance_pair_accuracy"] == 0.5
    assert 0.0 <= metrics["pair_accuracy"] <= 1.0
    lines = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["swap"]["prediction"] is not None
    missing = main(["eval", "synthref", "--task", "pairs", "--data", str(tmp_path), "--model", str(tiny_model_dir)])
    assert missing == 2 and "regenerate the split" in capsys.readouterr().err
