"""``artemis eval synthref --prompt mask``: each target given by its key-frame mask, scored overall and on the
targets whose box also covers another object (the manifest's ``key_frame_overlap``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.cli import main
from artemis.data.synthref import SynthRefConfig, generate_scene, visible_mask
from artemis.data.synthref_writer import generate_split
from artemis.eval.synthref import OVERLAP_SHARE, load_targets, synthref_metrics
from artemis.model import build_tiny_model

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12, min_objects=3, max_objects=4)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("overlap"), 8, seed=3, split="test", config=CONFIG).split_dir


def test_key_frame_overlap_is_the_share_of_another_object_inside_the_box(split: Path) -> None:
    manifest = json.loads((split / "manifest.json").read_text())
    shares = []
    for index, video in enumerate(manifest["videos"]):
        scene = generate_scene(3, "test", index, CONFIG)
        for k, obj in enumerate(video["objects"]):
            x1, y1, x2, y2 = obj["boxes"][obj["key_frame_id"]]
            inside = np.zeros((CONFIG.height, CONFIG.width), dtype=bool)
            inside[y1:y2, x1:x2] = True
            expected = 0.0
            for other in range(len(scene.objects)):
                pixels = visible_mask(scene, other, obj["key_frame_id"])
                if other != k and pixels.any():
                    expected = max(expected, (pixels & inside).sum() / pixels.sum())
            assert obj["key_frame_overlap"] == pytest.approx(expected, abs=1e-4)
            shares.append(expected)
    assert min(shares) == 0.0 and max(shares) > 0.0  # both kinds of target occur
    targets, _ = load_targets(split)
    assert all(t.key_frame_mask is not None for t in targets)
    assert [t.overlap for t in targets] == [o["key_frame_overlap"] for v in manifest["videos"] for o in v["objects"]]


def test_overlap_metrics_split_the_targets_at_the_threshold() -> None:
    labels = {"colour": "red", "shape": "circle", "size": "small", "motion": "still"}
    right, wrong = "The red circle stays still.", "The blue square stays still."
    records = [
        {"labels": labels, "description": right, "overlap": OVERLAP_SHARE + 0.1},
        {"labels": labels, "description": wrong, "overlap": 0.9},
        {"labels": labels, "description": right, "overlap": OVERLAP_SHARE},  # not more than: the rest
        {"labels": labels, "description": right, "overlap": 0.0},
        {"labels": labels, "description": wrong, "overlap": 0.05},
    ]
    metrics = synthref_metrics(records)
    assert (metrics["num_overlap"], metrics["num_rest"]) == (2, 3)
    assert metrics["overlap_joint_accuracy"] == pytest.approx(1 / 2)
    assert metrics["rest_joint_accuracy"] == pytest.approx(2 / 3)
    assert "num_overlap" not in synthref_metrics([{k: v for k, v in r.items() if k != "overlap"} for r in records])


def test_eval_with_mask_prompts_gives_the_model_masks(split: Path, tmp_path: Path, monkeypatch) -> None:
    model, processor = build_tiny_model(["the red circle stays still"], seed=0, region_key_mask=True)
    model_dir = tmp_path / "model"
    ArtemisModel(model, processor).save_pretrained(model_dir)
    calls: list[bool] = []
    original = ArtemisModel.ask

    def ask(self, *args, **kwargs):
        calls.append(any(r.mask is not None for r in kwargs.get("regions") or []))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ArtemisModel, "ask", ask)
    argv = ["eval", "synthref", "--model", str(model_dir), "--data", str(split), "--limit", "3", "--no-controls"]
    argv += ["--max-new-tokens", "4", "--json"]
    assert main([*argv, "--out", str(tmp_path / "mask"), "--prompt", "mask"]) == 0
    metrics = json.loads((tmp_path / "mask" / "metrics.json").read_text())
    assert metrics["num_samples"] == 3 and metrics["num_overlap"] + metrics["num_rest"] == 3
    records = [json.loads(line) for line in (tmp_path / "mask" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["mask"] * 3 and calls[:3] == [True] * 3
    calls.clear()
    assert main([*argv, "--out", str(tmp_path / "box")]) == 0
    assert not any(calls)  # the box prompt goes through describe, without a mask
