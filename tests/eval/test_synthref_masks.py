"""``artemis eval synthref --prompt mask [--prompt-frame overlap]``: each target given by its visible pixels
(on its key frame, or on the frame where its box covers the most of another object), scored overall and on
the targets whose box also covers more than 30% of another object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.cli import main
from artemis.data.synthref import SynthRefConfig, draw_mask, generate_scene, most_overlapped_frame, visible_mask
from artemis.data.synthref_writer import generate_split
from artemis.errors import BoxError
from artemis.eval import synthref as synthref_eval
from artemis.eval.synthref import OVERLAP_SHARE, load_targets, synthref_metrics
from artemis.model import build_tiny_model
from artemis.regions import mask_box

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
    assert all(t.scene is not None and t.scene.name == t.video_name for t in targets)
    assert [t.overlap for t in targets] == [o["key_frame_overlap"] for v in manifest["videos"] for o in v["objects"]]


def test_the_overlap_frame_is_the_hardest_frame_where_half_the_target_shows(split: Path) -> None:
    targets, _ = load_targets(split)
    found = 0
    for target in targets:
        scene, k = target.scene, target.object_index
        chosen = most_overlapped_frame(scene, k)
        shares = {}
        for t in range(scene.num_frames):
            own = draw_mask(scene.objects[k], t, scene.width, scene.height)
            seen = visible_mask(scene, k, t)
            if own.any() and seen.sum() >= 0.5 * own.sum() and _one_object(seen):
                ys, xs = np.nonzero(own)
                inside = np.zeros_like(own)
                inside[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
                others = [visible_mask(scene, j, t) for j in range(len(scene.objects)) if j != k]
                shares[t] = max([(m & inside).sum() / m.sum() for m in others if m.any()], default=0.0)
        if not shares:
            assert chosen is None
            continue
        best = max(shares.values())
        assert chosen == (min(t for t, v in shares.items() if v == best), pytest.approx(best))
        found += best > OVERLAP_SHARE
    assert found > 0


def _one_object(mask: np.ndarray) -> bool:
    try:
        mask_box(mask, mask.shape[1], mask.shape[0])
    except BoxError:
        return False
    return True


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
    argv = ["eval", "synthref", "--model", str(model_dir), "--data", str(split), "--limit", "4", "--no-controls"]
    argv += ["--max-new-tokens", "4", "--json"]
    assert main([*argv, "--out", str(tmp_path / "mask"), "--prompt", "mask", "--prompt-frame", "overlap"]) == 0
    metrics = json.loads((tmp_path / "mask" / "metrics.json").read_text())
    assert metrics["num_samples"] == 4 and metrics["num_overlap"] + metrics["num_rest"] == 4
    records = [json.loads(line) for line in (tmp_path / "mask" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["mask"] * 4 and calls[:4] == [True] * 4
    targets, _ = load_targets(split)
    for record, target in zip(records, targets, strict=False):
        chosen = most_overlapped_frame(target.scene, target.object_index)
        assert (record["key_frame"], record["overlap"]) == (chosen or (target.key_frame_id, target.overlap))
    calls.clear()
    assert main([*argv, "--out", str(tmp_path / "box")]) == 0
    assert not any(calls)  # the box prompt goes through describe, without a mask
    records = [json.loads(line) for line in (tmp_path / "box" / "predictions.jsonl").read_text().splitlines()]
    assert [r["key_frame"] for r in records] == [t.key_frame_id for t in targets[:4]]


def test_a_refused_mask_is_recorded_and_the_run_goes_on(split: Path, tmp_path: Path, monkeypatch) -> None:
    model, processor = build_tiny_model(["the red circle stays still"], seed=0, region_key_mask=True)
    model_dir = tmp_path / "model"
    ArtemisModel(model, processor).save_pretrained(model_dir)
    real = synthref_eval.visible_mask

    def split_in_two(scene, index, t):  # the first target's mask cut into two parts far apart
        mask = real(scene, index, t)
        if index == 0:
            mask = np.zeros_like(mask)
            mask[0:4, 0:4] = mask[-4:, -4:] = True
        return mask

    monkeypatch.setattr(synthref_eval, "visible_mask", split_in_two)
    argv = ["eval", "synthref", "--model", str(model_dir), "--data", str(split), "--limit", "3", "--no-controls"]
    assert main([*argv, "--max-new-tokens", "2", "--out", str(tmp_path / "run"), "--prompt", "mask"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert "separate parts far apart" in records[0]["error"] and records[0]["description"] == ""
    assert all(r["error"] is None for r in records[1:]) and len(records) == 3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_errors"] == 1
