"""The task mix of ``artemis train``: describe, SOT and RSOT files side by side in one stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY_VISION, few_steps, write_config

from artemis.cli import main
from artemis.data.box_output_dataset import BoxOutDataset
from artemis.data.collator import ArtemisCollator
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.task_mix import TaskMix
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.number_loss import ordered_number_loss
from artemis.train import load_config


def _config(root: Path, out: Path, *, boxes: bool = True) -> dict:
    train = root / "train"
    tracks = str(train / "elysium_track.json")
    tiny = {
        "seed": 0,
        "vocab_from": [f"videoref45k:{train / 'videoref45k.json'}", f"elysium:{tracks}"],
        "video_layout": "frames",
        "frame_pool_size": 2,
        "vision_config": TINY_VISION,
    }
    if boxes:
        tiny["tasks"] = ["describe", "boxes"]
    return {
        "stage": "boxes",
        "model": {"tiny": tiny},
        "train": {"projector": True, "llm": "full", "region_encoder": True, "vision_tower": False},
        "data": {
            "files": [
                {"format": "videoref45k", "path": str(train / "videoref45k.json")},
                {"format": "elysium", "path": tracks, "task": "sot", "weight": 0.5},
                {"format": "elysium", "path": tracks, "task": "rsot", "weight": 0.5},
            ],
            "max_length": 256,
            "sot_box_jitter": 0.1,
            "log_samples": True,
        },
        "training": few_steps(out, 3),
    }


def test_artemis_train_mixes_describe_sot_and_rsot_in_its_batches(synthref_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_config(tmp_path / "mix.yaml", _config(synthref_root, out))
    assert main(["train", "--config", str(path)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 3 and all(torch.isfinite(torch.tensor(loss)) for _, loss in summary["losses"])
    keys = [json.loads(line)["key"] for line in (out / "samples-rank0.jsonl").read_text().splitlines()]
    kinds = ["sot" if k.startswith("sot:") else "rsot" if k.startswith("rsot:") else "describe" for k in keys]
    assert len(kinds) >= 12
    batches = [set(kinds[i : i + 4]) for i in range(0, 12, 4)]  # no workers: items are read batch by batch
    assert {"describe", "sot", "rsot"} <= set(kinds)
    assert any("describe" in b and b & {"sot", "rsot"} for b in batches), batches
    assert (out / "config.json").is_file()
    assert "boxes" in json.loads((out / "config.json").read_text())["tasks"]


def test_artemis_train_trains_the_frame_selector_on_the_target_cells(
    synthref_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``frame_select_box_loss`` and ``frame_select_centre`` through ``artemis train``; a bad weight is refused."""
    raw = _config(synthref_root, tmp_path / "out")
    select = {"frame_tokens": "select", "frame_select_tokens": 4, "frame_select_query": True}
    raw["model"]["tiny"].update(select, frame_select_centre=True, frame_select_box_loss=1.0)
    raw["data"]["files"] = raw["data"]["files"][1:]  # SOT and RSOT clips only
    raw["data"]["sot_query_exact"] = True  # the query reads the exact box, the prompt the jittered one
    assert main(["train", "--config", str(write_config(tmp_path / "select.yaml", raw))]) == 0
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["frame_select_box_loss"] == 1.0 and saved["frame_select_centre"] is True
    start = load_file(tmp_path / "out" / "base" / "model.safetensors")["frame_selector.trans_bias"]
    trained = load_file(tmp_path / "out" / "model.safetensors")["frame_selector.trans_bias"]
    assert not torch.equal(start, trained)
    raw["model"]["tiny"]["frame_select_box_loss"] = -1
    raw["training"] = few_steps(tmp_path / "bad", 3)
    assert main(["train", "--config", str(write_config(tmp_path / "bad.yaml", raw))]) == 2
    assert "frame_select_box_loss=-1 is not valid" in capsys.readouterr().err
    raw["model"]["tiny"]["frame_select_box_loss"] = 1.0
    raw["data"]["sot_query_exact"] = "often"
    assert main(["train", "--config", str(write_config(tmp_path / "bad.yaml", raw))]) == 2
    assert "data.sot_query_exact=often: expected bool" in capsys.readouterr().err


def test_artemis_train_takes_box_numbers_against_ordered_targets(
    synthref_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train.box_label_sigma`` reaches the model's loss on every training step; bad values are refused."""
    from artemis.model import modeling

    calls = []

    def spy(logits, labels, number_ids, sigma, num_items_in_batch=None):
        calls.append((len(number_ids), sigma))
        return ordered_number_loss(logits, labels, number_ids, sigma, num_items_in_batch)

    monkeypatch.setattr(modeling, "ordered_number_loss", spy)
    raw = _config(synthref_root, tmp_path / "out")
    raw["data"]["files"] = raw["data"]["files"][1:]  # SOT and RSOT clips only
    raw["train"]["box_label_sigma"] = 1.5
    assert main(["train", "--config", str(write_config(tmp_path / "sigma.yaml", raw))]) == 0
    assert len(calls) == 3 and set(calls) == {(101, 1.5)}
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in summary["losses"])
    assert summary["config"]["train"]["box_label_sigma"] == 1.5
    for bad, message in ((-1, "train.box_label_sigma=-1.0: expected a number >= 0"), ("wide", "box_label_sigma")):
        raw["train"]["box_label_sigma"] = bad
        raw["training"] = few_steps(tmp_path / "bad", 3)
        assert main(["train", "--config", str(write_config(tmp_path / "bad.yaml", raw))]) == 2
        assert message in capsys.readouterr().err


def test_a_describe_item_and_a_box_item_collate_and_train_together(synthref_root: Path) -> None:
    train = synthref_root / "train"
    texts = [r["object_description"] for r in json.loads((train / "elysium_track.json").read_text())]
    texts += [r["caption"] for r in json.loads((train / "videoref45k.json").read_text())]
    model, processor = build_tiny_model(
        texts, seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"], vision_config=TINY_VISION
    )
    referring = ReferringDataset.from_files([("videoref45k", train / "videoref45k.json")], processor, model.config)
    sot = BoxOutDataset.from_files([train / "elysium_track.json"], processor, model.config, tasks=("sot",))
    mix = TaskMix(model.config, referring, [(sot, 1.0)])
    first_box = len(referring)
    assert mix.entry(0).task == "describe" and mix.entry(first_box).task == "sot"
    batch = ArtemisCollator(processor, model.config)([mix[0], mix[first_box]])
    assert batch["pixel_values"].shape[:2] == (2, max(len(mix[0]["pixel_values"]), len(mix[first_box]["pixel_values"])))
    assert torch.isfinite(batch["region_boxes"][0]).all()  # the describe item's region
    assert torch.isnan(batch["region_boxes"][1]).all() and not batch["region_visible"][1].any()  # padding
    model.train()
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_weights_set_each_task_s_share_and_redraw_per_epoch(synthref_root: Path) -> None:
    train = synthref_root / "train"
    texts = [r["object_description"] for r in json.loads((train / "elysium_track.json").read_text())]
    model, processor = build_tiny_model(
        texts, seed=0, video_layout="frames", frame_pool_size=2, tasks=["describe", "boxes"], vision_config=TINY_VISION
    )
    path = train / "elysium_track.json"
    sot = BoxOutDataset.from_files([path], processor, model.config, tasks=("sot",))
    rsot = BoxOutDataset.from_files([path], processor, model.config, tasks=("rsot",))
    mix = TaskMix(model.config, None, [(sot, 2.0), (rsot, 0.5)], seed=3)
    assert mix.counts() == {"sot": 2 * len(sot), "rsot": round(0.5 * len(rsot))}
    first = [mix.entry(i).key for i in range(len(mix))]
    mix.set_epoch(1)
    second = [mix.entry(i).key for i in range(len(mix))]
    assert len(first) == len(second) and first != second  # a new random half of the RSOT clips


def test_a_box_file_is_refused_for_a_model_without_boxes(
    synthref_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = write_config(tmp_path / "nobox.yaml", _config(synthref_root, tmp_path / "out", boxes=False))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.files.1 has task: sot" in err and "model.tiny.tasks: [describe, boxes]" in err
    assert "Writing" not in err  # refused before any model is built
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "train_summary.json").exists()


def test_an_unknown_task_is_a_config_error(synthref_root: Path, tmp_path: Path) -> None:
    raw = _config(synthref_root, tmp_path / "out")
    raw["data"]["files"][1]["task"] = "track"
    with pytest.raises(ConfigError, match=r"data\.files\.1\.task='track'; expected one of describe, sot, rsot"):
        load_config(write_config(tmp_path / "bad.yaml", raw))


def test_a_box_file_is_refused_for_a_saved_model_without_boxes(synthref_root: Path, tmp_path: Path) -> None:
    from artemis import ArtemisModel
    from artemis.train import run_training

    train = synthref_root / "train"
    texts = [r["caption"] for r in json.loads((train / "videoref45k.json").read_text())]
    model, processor = build_tiny_model(texts, seed=0, video_layout="frames", vision_config=TINY_VISION)
    ArtemisModel(model, processor).save_pretrained(tmp_path / "describer")
    raw = _config(synthref_root, tmp_path / "out")
    raw["model"] = {"base": str(tmp_path / "describer")}
    with pytest.raises(ConfigError, match=r"data\.files\.1 has task: sot .* model's tasks are \['describe'\]"):
        run_training(load_config(write_config(tmp_path / "base.yaml", raw)))


def test_the_box_files_share_one_decoded_video_store(synthref_root: Path, tmp_path: Path, monkeypatch) -> None:
    """The SOT and the RSOT file read the same videos: one store of data.video_cache_mb serves both."""
    import artemis.data.box_output_dataset as box_output

    made = []
    original = box_output.DecodedVideoCache.__init__

    def spy(self, max_bytes: int, max_video_bytes: int) -> None:
        original(self, max_bytes, max_video_bytes)
        made.append(self)

    monkeypatch.setattr(box_output.DecodedVideoCache, "__init__", spy)
    out = tmp_path / "out"
    raw = _config(synthref_root, out)
    raw["data"]["video_cache_mb"] = 64
    assert main(["train", "--config", str(write_config(tmp_path / "mix.yaml", raw))]) == 0
    assert len(made) == 1 and made[0].max_bytes == 64 * 2**20
    keys = [json.loads(line)["key"] for line in (out / "samples-rank0.jsonl").read_text().splitlines()]
    box_items = sum(k.startswith(("sot:", "rsot:")) for k in keys)
    assert box_items > 0 and made[0].hits + made[0].misses == box_items


def test_a_bad_video_cache_size_is_a_config_error(synthref_root: Path, tmp_path: Path) -> None:
    for bad in (-1, "1GB", True, float("nan")):
        raw = _config(synthref_root, tmp_path / "out")
        raw["data"]["video_cache_mb"] = bad
        with pytest.raises(ConfigError, match=r"data\.video_cache_mb="):
            load_config(write_config(tmp_path / "bad.yaml", raw))


def test_bf16_with_use_cpu_trains_under_cpu_autocast(synthref_root: Path, tmp_path: Path, monkeypatch) -> None:
    """bf16 alone (a GPU recipe's setting) still trains in fp32 on the CPU; bf16 with use_cpu autocasts."""
    from artemis.model import ArtemisForConditionalGeneration
    from artemis.model.cpu_attention import FP32_SDPA
    from artemis.train.runner import training_arguments

    seen, attention = [], []
    original = ArtemisForConditionalGeneration.forward

    def spy(self, *args, **kwargs):
        if self.training:
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            attention.append(self.language_model.config._attn_implementation)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ArtemisForConditionalGeneration, "forward", spy)
    for use_cpu, expected in ((False, False), (True, True)):
        out = tmp_path / f"out-{use_cpu}"
        raw = _config(synthref_root, out)
        raw["training"].update(bf16=True, max_steps=2, **({"use_cpu": True} if use_cpu else {}))
        path = write_config(tmp_path / f"bf16-{use_cpu}.yaml", raw)
        assert training_arguments(load_config(path)).bf16 is expected
        seen.clear()
        attention.clear()
        assert main(["train", "--config", str(path)]) == 0
        assert len(seen) == 2 and all(enabled is expected for enabled, _ in seen), seen
        # Under CPU autocast the attention runs in fp32 (artemis/model/cpu_attention.py); otherwise plain sdpa.
        assert set(attention) == {FP32_SDPA if expected else "sdpa"}
        if expected:
            assert all(dtype == torch.bfloat16 for _, dtype in seen)
        summary = json.loads((out / "train_summary.json").read_text())
        assert all(torch.isfinite(torch.tensor(loss)) for _, loss in summary["losses"])
