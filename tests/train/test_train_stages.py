"""The three stages chain through their outputs, resume after a kill, and merge; the loss falls."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import stage_config, write_config

from artemis.api import ArtemisModel
from artemis.train import load_config, load_stage, run_training
from artemis.train.runner import SUMMARY_FILE

pytestmark = pytest.mark.slow


def _train(root: Path, out: Path, stage: str, **changes) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = write_config(out / f"{stage}.yaml", stage_config(root, out, stage, **changes))
    return run_training(load_config(path))


@pytest.fixture(scope="module")
def chain(synthref_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chain")
    for stage in ("pretrain", "finetune", "referring"):
        _train(synthref_root, out, stage)
    return out


def test_stage1_saves_only_what_trained(chain: Path) -> None:
    stage1 = chain / "stage1"
    info = json.loads((stage1 / "artemis_stage.json").read_text())
    assert info["saved"] == "trainables" and info["base"] == str((stage1 / "base").resolve())
    assert not (stage1 / "model.safetensors").exists()
    names = load_file(str(stage1 / "trainables.safetensors")).keys()
    assert {name.split(".")[0] for name in names} == {"mm_projector", "vision_tower"}
    # Loading applies the trained parameters to the saved starting model.
    model, _ = load_stage(stage1)
    start, _ = load_stage(stage1 / "base")
    trained = load_file(str(stage1 / "trainables.safetensors"))
    for name, value in model.state_dict().items():
        expected = trained.get(name, start.state_dict()[name])
        assert torch.equal(value, expected), name
    assert not torch.equal(trained["mm_projector.linear_1.weight"], start.mm_projector.linear_1.weight)


def test_stage2_saves_the_full_model_started_from_stage1(chain: Path) -> None:
    info = json.loads((chain / "stage2" / "artemis_stage.json").read_text())
    assert info["saved"] == "full" and (chain / "stage2" / "model.safetensors").exists()
    assert info["base"] == str((chain / "stage1").resolve())
    summary = json.loads((chain / "stage2" / SUMMARY_FILE).read_text())
    assert summary["trainable_parameters"]["region_encoder"] == 0 and summary["trainable_parameters"]["llm"] > 0


def test_stage3_saves_lora_and_non_lora_trainables(chain: Path) -> None:
    stage3 = chain / "stage3"
    info = json.loads((stage3 / "artemis_stage.json").read_text())
    assert info["saved"] == "lora" and info["base"] == str((chain / "stage2").resolve())
    adapter = load_file(str(stage3 / "adapter" / "adapter_model.safetensors"))
    assert any("lora_A" in name and "language_model" in name for name in adapter)
    assert not any("lora_" in name and "vision_tower" in name for name in adapter)
    saved_parts = {name.split(".")[2] for name in adapter if "lora_" not in name}
    assert saved_parts == {"mm_projector", "region_encoder"}  # peft modules_to_save


def test_merge_lora_matches_the_adapter(chain: Path, synthref_root: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    merged_dir = tmp_path / "merged"
    result = subprocess.run(
        [sys.executable, "-m", "artemis.cli", "merge-lora", str(chain / "stage3"), str(merged_dir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    merged = ArtemisModel.from_pretrained(merged_dir)
    base, processor = load_stage(chain / "stage2")
    unmerged = PeftModel.from_pretrained(base, chain / "stage3" / "adapter").eval()
    ids = torch.tensor([processor.encode_conversation([("what colour is it ?", "red")]).input_ids])
    with torch.no_grad():
        expected = unmerged(input_ids=ids).logits
        got = merged.model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # The merged model is an ordinary checkpoint: it describes a SynthRef video through the API.
    record = json.loads((synthref_root / "train" / "videoref45k.json").read_text())[0]
    key = record["frame_id"].index(record["key_frame_id"]) if isinstance(record["frame_id"], list) else 0
    video = synthref_root / "train" / "videos" / record["video_name"]
    text = merged.describe(video, record["track_list"][key], key, max_new_tokens=8).text
    assert isinstance(text, str)


def test_smoke_training_loss_falls(synthref_root: Path, tmp_path: Path) -> None:
    out = _train(
        synthref_root,
        tmp_path,
        "pretrain",
        train={"projector": True, "llm": "full", "region_encoder": False, "vision_tower": False},
        training__max_steps=30,
        training__save_steps=100,
    )
    losses = [loss for _, loss in json.loads((out / SUMMARY_FILE).read_text())["losses"]]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses


def test_resume_after_kill_continues_exactly(synthref_root: Path, tmp_path: Path) -> None:
    steps = {"training__max_steps": 10, "training__save_steps": 2}
    straight = _train(synthref_root, tmp_path / "straight", "pretrain", **steps)

    out = tmp_path / "killed"
    out.mkdir()
    config = write_config(out / "c.yaml", stage_config(synthref_root, out, "pretrain", **steps))
    command = [sys.executable, "-m", "artemis.cli", "train", "--config", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "stage1" / "checkpoint-4" / "trainer_state.json").exists():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "stage1" / SUMMARY_FILE).exists()

    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "stage1" / SUMMARY_FILE).read_text())
    assert summary["resumed_from"].endswith(tuple(f"checkpoint-{n}" for n in (4, 6, 8)))
    assert summary["global_step"] == 10
    expected = load_file(str(straight / "trainables.safetensors"))
    got = load_file(str(out / "stage1" / "trainables.safetensors"))
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)


def test_stage1_composes_clip_and_an_llm_from_directories(synthref_root: Path, tmp_path: Path) -> None:
    """Real-scale stage 1 starts from a local CLIP and a local LLM (here tiny ones saved to disk)."""
    from train_helpers import TINY_VISION
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from artemis.model.tokenizer import build_word_tokenizer
    from artemis.prompts import REGION_TOKEN, VIDEO_TOKEN

    texts = [r["caption"] for r in json.loads((synthref_root / "train" / "videoref45k.json").read_text())]
    texts += [t["value"] for r in json.loads((synthref_root / "train" / "llava_stage1.json").read_text())
              for t in r["conversations"]]  # fmt: skip
    tokenizer = build_word_tokenizer(texts)
    clip = CLIPVisionModel(CLIPVisionConfig(**{k: v for k, v in TINY_VISION.items() if k != "model_type"}))
    clip.save_pretrained(tmp_path / "clip")
    llm_config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=len(tokenizer) - 2)  # fmt: skip
    llm = LlamaForCausalLM(llm_config)
    llm.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")

    raw = stage_config(
        synthref_root,
        tmp_path,
        "pretrain",
        model={
            "vision_tower": str(tmp_path / "clip"),
            "language_model": str(tmp_path / "llm"),
            "config": {
                "num_frames": 8,
                "region_feature_layers": [-3, -2, -1],
                "region_hidden_size": 32,
                "region_num_fuse": 2,
                "region_norm_groups": 8,
                "roi_output_size": 4,
                "num_track_boxes": 6,
                "num_selected": 3,
            },
        },
        train={"projector": True, "llm": "frozen", "region_encoder": False, "vision_tower": False},
        training__max_steps=2,
    )
    out = run_training(load_config(write_config(tmp_path / "compose.yaml", raw)))
    model, processor = load_stage(out)
    assert model.config.video_token_id == processor.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    assert model.config.region_token_id == processor.tokenizer.convert_tokens_to_ids(REGION_TOKEN)
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)
    # The towers are the saved ones, untouched; only the projector trained.
    for name, value in clip.state_dict().items():
        assert torch.equal(model.vision_tower.state_dict()[name], value), name
    for name, value in llm.state_dict().items():
        if "embed_tokens" not in name and "lm_head" not in name:  # resized for the two placeholders
            assert torch.equal(model.language_model.state_dict()[name], value), name
    assert set(load_file(str(out / "trainables.safetensors"))) == {
        name for name, _ in model.named_parameters() if name.startswith("mm_projector")
    }


@pytest.mark.parametrize("features", [False, True], ids=["frames-cache", "features-cache"])
def test_stage3_trains_from_a_cache(chain: Path, synthref_root: Path, tmp_path: Path, features: bool) -> None:
    """Training reads a cache built by `artemis data cache` (frames, or the frozen tower's features)."""
    annotations = synthref_root / "train" / "videoref45k.json"
    command = [sys.executable, "-m", "artemis.cli", "data", "cache", "--data", f"videoref45k:{annotations}"]
    command += ["--model", str(chain / "stage2"), "--out", str(tmp_path / "cache"), "--tracker", "none"]
    result = subprocess.run(command + (["--features"] if features else []), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run"
    out.mkdir()
    raw = stage_config(synthref_root, out, "referring", model={"base": str(chain / "stage2")})
    raw["data"]["cache_dir"] = str(tmp_path / "cache")
    summary = json.loads((run_training(load_config(write_config(out / "c.yaml", raw))) / SUMMARY_FILE).read_text())
    assert summary["global_step"] == 4
    assert all(0 < loss < 100 for _, loss in summary["losses"])


def test_stage3_lora_can_train_the_embeddings_in_full(chain: Path, synthref_root: Path, tmp_path: Path) -> None:
    """``lora.modules_to_save`` adds LLM modules trained in full to the adapter; loading and merging apply them."""
    out = tmp_path / "run"
    out.mkdir()
    raw = stage_config(synthref_root, out, "referring", model={"base": str(chain / "stage2")})
    raw["lora"] = {"modules_to_save": ["embed_tokens", "lm_head"]}
    stage3 = run_training(load_config(write_config(out / "c.yaml", raw)))
    adapter = load_file(str(stage3 / "adapter" / "adapter_model.safetensors"))
    full = [name for name in adapter if "lora_" not in name]
    assert any("embed_tokens" in name for name in full) and any("lm_head" in name for name in full)
    trained, _ = load_stage(stage3)
    start, _ = load_stage(chain / "stage2")
    embeddings = trained.language_model.get_input_embeddings().weight
    assert not torch.equal(embeddings, start.language_model.get_input_embeddings().weight)
    assert not torch.equal(trained.get_output_embeddings().weight, start.get_output_embeddings().weight)
