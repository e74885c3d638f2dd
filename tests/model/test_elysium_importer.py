"""The Elysium importer: a tiny release written here in the original's layout, imported, and checked against
the original's forward math, re-implemented below from its code (Hon-Wong/Elysium), not from artemis'."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from artemis.errors import CheckpointError, ConfigError
from artemis.model.importers import (
    ELYSIUM_RULES,
    IMPORTERS,
    config_from_elysium,
    elysium_prompt_ids,
    import_elysium_checkpoint,
    map_name,
)
from artemis.prompts import box_output_vocabulary

# A 3-layer CLIP at 32 px with 4 px patches: an 8x8 grid, N = 64 tokens per frame; the T-Selector keeps 12.
VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 4,
    "projection_dim": 32,
}
CELLS, KEEP, FRAMES = 64, 12, 8
# The region encoder has no weights in the release; these only shrink it to fit the tiny tower.
TINY_OVERRIDES = {
    "region_feature_layers": [-3, -2, -1],
    "region_hidden_size": 32,
    "region_num_fuse": 2,
    "region_norm_groups": 8,
    "roi_output_size": 4,
}
# Facts of the release, written out here on purpose rather than taken from artemis.prompts.
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions. "
)
SOT_QUESTION = (
    "This is a video showing an object with coordinates [20,30,60,70] in Frame 1. "
    "Please provide the detailed coordinates of the object in each frame."
)


def _vicuna_like_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """Word-level, Vicuna's special ids (unk 0, <s> 1, </s> 2), BOS added by ``encode`` as Llama's does,
    and no <video>/<region>: the importer must add them."""
    splitter = pre_tokenizers.Whitespace()
    words = set()
    for text in [SYSTEM, SOT_QUESTION, "USER: ASSISTANT:", *box_output_vocabulary()]:
        words.update(piece for piece, _ in splitter.pre_tokenize_str(text))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for word in sorted(words - set(vocab)):
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = splitter
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(directory)
    return tokenizer


def _release_bias() -> torch.Tensor:
    """RanTSelecor._init_bias: 0.02 on the first KEEP cells of a stride max(4, N // KEEP) raster walk."""
    bias = torch.zeros(CELLS)
    interval = max(4, CELLS // KEEP)
    order = [i for j in range(interval) for i in range(j, CELLS, interval)][:KEEP]
    bias[order] = 0.02
    return bias


def _save_sharded(state: dict[str, torch.Tensor], directory: Path) -> None:
    """Two safetensors shards and their index, as ``save_pretrained`` writes a sharded checkpoint."""
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, shard_keys in shards.items():
        save_file({key: state[key].contiguous() for key in shard_keys}, directory / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard_keys, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_release(root: Path, seed: int = 0) -> dict:
    """A tiny ``elysium_7b``: what ``ElysiumForCausalLM.save_pretrained`` (transformers 4.37) writes, plus a
    local ``vicuna`` directory with the tokenizer and the LLM's config.json (the release ships neither)."""
    release, llm_dir = root / "elysium_7b", root / "vicuna"
    release.mkdir()
    llm_dir.mkdir()
    tokenizer = _vicuna_like_tokenizer(llm_dir)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-5,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )  # fmt: skip
    text.save_pretrained(llm_dir)
    torch.manual_seed(seed)
    clip, llm = CLIPVisionModel(CLIPVisionConfig(**VISION)), LlamaForCausalLM(text)
    projector = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 64))
    state = {f"visual_encoder.vision_model.{k}": v for k, v in clip.state_dict().items()}  # 4.37's names
    state.update({f"llm.{k}": v for k, v in llm.state_dict().items()})
    state.update({f"llm_proj.{k}": v for k, v in projector.state_dict().items()})
    pre_proj, score_proj = nn.Linear(32, 1), nn.Linear(CELLS, KEEP)
    state.update({f"adapter.pre_proj.{k}": v for k, v in pre_proj.state_dict().items()})
    state.update({f"adapter.score_proj.{k}": v for k, v in score_proj.state_dict().items()})
    # A trained-looking selector: a non-zero mixing matrix, so the choice depends on each frame's content.
    state["adapter.trans_weight"] = torch.randn(CELLS, CELLS) * 0.5
    state["adapter.trans_bias"] = _release_bias()
    state = {key: value.detach().to(torch.bfloat16) for key, value in state.items()}  # torch_dtype bf16
    _save_sharded(state, release)
    config = {
        "adapter_config": {"fix_random": False, "freeze_adapter": False, "in_token_num": CELLS,
                           "max_video_tokens": 2048, "min_out_token_num": 1, "num_features": 32,
                           "out_token_num": KEEP},
        "architectures": ["ElysiumForCausalLM"],
        "auto_map": {"AutoConfig": "modeling_elysium.ElysiumConfig",
                     "AutoModelForCausalLM": "modeling_elysium.ElysiumForCausalLM"},
        "gradient_checkpointing_enable": False,
        "hidden_size": 64,
        "llm_config": {"freeze_llm": True, "pretrained_model_name_or_path": "lmsys/vicuna-7b-v1.5"},
        "model_type": "elysium",
        "projector_config": {"type": "mlp2x_gelu"},
        "torch_dtype": "bfloat16",
        "transformers_version": "4.37.2",
        "use_flash_attention": False,
        "visual_config": {"freeze_vit": True, "pretrained_model_name_or_path": "openai/clip-vit-large-patch14-336"},
    }  # fmt: skip
    (release / "config.json").write_text(json.dumps(config, indent=2))
    (release / "generation_config.json").write_text(json.dumps({"_from_model_config": True}))
    return {"release": release, "llm_dir": llm_dir, "tokenizer": tokenizer, "text": text}


class ReleaseForward:
    """The release's forward, from its code: ``ClipVisionTransformer`` -> ``RanTSelecor`` -> ``llm_proj``
    -> ``_concat_embedding`` -> ``llm``, on the bf16 weights read back as float32."""

    def __init__(self, release: Path, text: LlamaConfig) -> None:
        files = sorted(release.glob("model-*.safetensors"))
        weights = {k: v.float() for f in files for k, v in load_file(f).items()}

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}

        self.clip = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
        self.clip.load_state_dict(part("visual_encoder.vision_model."))  # transformers 5 names: unprefixed
        self.llm = LlamaForCausalLM(text).eval()
        self.llm.load_state_dict(part("llm."))
        self.adapter, self.proj = part("adapter."), part("llm_proj.")

    @torch.no_grad()
    def selected(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (T, 3, S, S) -> (kept cells (T, k), kept features (T, k, C))."""
        features = self.clip(frames, output_hidden_states=True).hidden_states[-2][:, 1:]  # (T, N, C)
        saliency = features @ self.adapter["pre_proj.weight"].T + self.adapter["pre_proj.bias"]  # (T, N, 1)
        logits = saliency.mT @ self.adapter["trans_weight"] + self.adapter["trans_bias"]  # (T, 1, N)
        scores = torch.softmax(logits.squeeze(1), dim=1)  # F.softmax without dim on 2-D: dim 1
        cells = torch.argsort(scores, descending=True)[:, :KEEP].sort().values  # (T, k)
        return cells, features[torch.arange(len(features))[:, None], cells]  # (T, k, C)

    @torch.no_grad()
    def video_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, k, D): ``llm_proj`` = Linear, GELU (exact), Linear on the kept features."""
        _, kept = self.selected(frames)
        hidden = nn.functional.gelu(kept @ self.proj["0.weight"].T + self.proj["0.bias"])
        return hidden @ self.proj["2.weight"].T + self.proj["2.bias"]

    @torch.no_grad()
    def logits(self, frames: torch.Tensor, tokenizer, question: str) -> torch.Tensor:
        """The release's prompt: system + "USER: " + frames + question + "ASSISTANT:", split at each <image>,
        every chunk encoded with its own BOS; frame i's tokens spliced in at the i-th split."""
        prompt = SYSTEM + "USER: " + ", ".join(f"Frame {i + 1}: <image>" for i in range(len(frames)))
        prompt += "\n" + question + "ASSISTANT:"
        chunks = [torch.tensor(tokenizer.encode(chunk)) for chunk in prompt.split("<image>")]
        embed = self.llm.get_input_embeddings()
        vision = self.video_tokens(frames)
        pieces = [embed(chunks[0])]
        for index, chunk in enumerate(chunks[1:]):
            pieces += [vision[index], embed(chunk)]
        return self.llm(inputs_embeds=torch.cat(pieces)[None]).logits[0]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    written = _write_release(tmp_path_factory.mktemp("elysium"))
    generator = torch.Generator().manual_seed(3)
    written["frames"] = torch.randn(FRAMES, 3, 32, 32, generator=generator)  # already preprocessed pixels
    written["reference"] = ReleaseForward(written["release"], written["text"])
    written["imported"] = import_elysium_checkpoint(
        written["release"], llm_dir=written["llm_dir"], vision_config=VISION, config_overrides=TINY_OVERRIDES
    )
    return written


def test_config_is_the_releases_selector_layout(release):
    config = release["imported"].config
    assert (config.video_layout, config.frame_tokens, config.frame_select_gradient) == ("frames", "select", "none")
    assert (config.frame_select_grid, config.frame_select_tokens, config.tokens_per_frame) == (8, KEEP, KEEP)
    assert config.num_frames == FRAMES and config.vision_feature_layer == -2
    assert config.tasks == ["describe", "boxes"]
    vocab = len(release["tokenizer"])
    assert (config.video_token_id, config.region_token_id) == (vocab, vocab + 1)  # added after Vicuna's words
    assert config.text_config.vocab_size == vocab + 2
    # The release's real config: CLIP-L/14-336 -> a 24x24 grid scored whole, 108 kept, vicuna-7b's width.
    real = json.loads((release["release"] / "config.json").read_text())
    real["adapter_config"].update(in_token_num=576, num_features=1024, out_token_num=108)
    real["hidden_size"] = 4096
    full = config_from_elysium(real)
    assert (full.vision_config.image_size, full.frame_select_grid, full.frame_select_tokens) == (336, 24, 108)
    assert full.num_video_tokens == 8 * 108 and full.text_config.hidden_size == 4096


def test_selected_cells_and_projected_tokens_match_the_release(release):
    model, reference, frames = release["imported"].model, release["reference"], release["frames"]
    cells, _ = reference.selected(frames)
    with torch.no_grad():
        features = model.vision_tower(frames, output_hidden_states=True).hidden_states[-2][:, 1:]  # (T, N, C)
        _, ours = model.frame_selector(features)
        video, region = model.get_multimodal_features(pixel_values=frames[None])  # (T * k, D)
    assert torch.equal(ours, cells)
    torch.testing.assert_close(video, reference.video_tokens(frames).flatten(0, 1), rtol=0, atol=1e-5)
    assert region is None
    # The choice follows each frame's content: not one fixed set of cells, nor the bias alone.
    assert len({tuple(row.tolist()) for row in cells}) > 1
    assert not torch.equal(cells[0], _release_bias().topk(KEEP).indices.sort().values)


def test_release_prompt_ids_give_the_releases_logits(release):
    imported, reference = release["imported"], release["reference"]
    config = imported.config
    ids = elysium_prompt_ids(
        imported.processor.tokenizer, SOT_QUESTION, FRAMES, config.tokens_per_frame, config.video_token_id
    )
    assert ids.count(1) == FRAMES + 1  # one BOS per text chunk, as the release encodes them
    with torch.no_grad():
        ours = imported.model(input_ids=torch.tensor([ids]), pixel_values=release["frames"][None]).logits[0]
    expected = reference.logits(release["frames"], release["tokenizer"], SOT_QUESTION)
    # The two added rows (<video>, <region>) are never predicted by the release: compare its vocabulary.
    torch.testing.assert_close(ours[:, : expected.shape[1]], expected, rtol=0, atol=1e-4)
    # The same ids generate (the release's way of asking, e.g. Video-REG with the box as text).
    written = imported.model.generate(
        input_ids=torch.tensor([ids]), pixel_values=release["frames"][None], max_new_tokens=3, do_sample=False
    )
    assert len(ids) < written.shape[1] <= len(ids) + 3


def test_generation_runs_and_the_saved_copy_reloads(release, tmp_path):
    from artemis import ArtemisModel
    from artemis.video.source import ArrayVideo

    imported = release["imported"]
    frames = np.random.default_rng(0).integers(0, 256, (10, 40, 48, 3), dtype=np.uint8)
    pipeline = ArtemisModel(imported.model, imported.processor)
    track = pipeline.track_with_llm(ArrayVideo(frames), box=(8, 8, 24, 30), max_new_tokens=6)
    assert len(track.boxes) == len(frames) and len(track.texts) >= 1
    IMPORTERS["elysium"](
        release["release"], llm_dir=release["llm_dir"], vision_config=VISION, config_overrides=TINY_OVERRIDES,
        out_dir=tmp_path / "imported",
    )  # fmt: skip
    reloaded = ArtemisModel.from_pretrained(tmp_path / "imported", log_card=False)
    with torch.no_grad():
        again, _ = reloaded.model.get_multimodal_features(pixel_values=release["frames"][None])
        first, _ = imported.model.get_multimodal_features(pixel_values=release["frames"][None])
    torch.testing.assert_close(again, first, rtol=0, atol=0)


def test_name_map_covers_every_release_tensor(release):
    files = sorted(release["release"].glob("model-*.safetensors"))
    names = [name for f in files for name in load_file(f)]
    mapped = {name: map_name(name, ELYSIUM_RULES) for name in names}
    assert {n for n, ours in mapped.items() if ours is None} == {"adapter.score_proj.weight", "adapter.score_proj.bias"}
    assert set(release["imported"].model.state_dict()) - set(mapped.values()) == {
        key for key in release["imported"].model.state_dict() if key.startswith("region_encoder.")
    }
    assert mapped["adapter.trans_weight"] == "frame_selector.trans_weight"
    assert mapped["llm_proj.2.bias"] == "mm_projector.linear_2.bias"
    assert mapped["visual_encoder.vision_model.encoder.layers.2.mlp.fc1.weight"] == (
        "vision_tower.encoder.layers.2.mlp.fc1.weight"
    )


def _edited_copy(release, tmp_path, edit) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(release["release"], copy)
    shard = copy / "model-00002-of-00002.safetensors"
    tensors = load_file(shard)
    edit(tensors)
    save_file(tensors, shard, metadata={"format": "pt"})
    index_path = copy / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {key: name for key, name in index["weight_map"].items() if name != shard.name}
    index["weight_map"].update(dict.fromkeys(tensors, shard.name))
    index_path.write_text(json.dumps(index))
    return copy


def _import(path, release):
    return import_elysium_checkpoint(
        path, llm_dir=release["llm_dir"], vision_config=VISION, config_overrides=TINY_OVERRIDES
    )


def test_bad_checkpoints_are_clear_errors(release, tmp_path):
    unknown = _edited_copy(release, tmp_path / "a", lambda t: t.update({"adapter.gate.weight": torch.ones(2)}))
    with pytest.raises(CheckpointError, match=r"no rule in the Elysium name map: \['adapter\.gate\.weight'\]"):
        _import(unknown, release)
    wrong = _edited_copy(release, tmp_path / "b", lambda t: t.update({"adapter.trans_bias": torch.zeros(65)}))
    with pytest.raises(CheckpointError, match=r"adapter\.trans_bias -> frame_selector\.trans_bias: checkpoint \(65,\)"):
        _import(wrong, release)

    def drop_layer(tensors):
        for key in [k for k in tensors if k.startswith("llm.model.layers.1.")]:
            del tensors[key]

    with pytest.raises(CheckpointError, match=r"in no tensor of .*language_model\.model\.layers\.1\."):
        _import(_edited_copy(release, tmp_path / "c", drop_layer), release)
    with pytest.raises(CheckpointError, match=r"llm_dir='.*nowhere' is not a directory"):
        import_elysium_checkpoint(release["release"], llm_dir=tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"model_type='llava', not 'elysium'"):
        config_from_elysium({"model_type": "llava"})


def test_config_errors_name_the_key(release):
    config = json.loads((release["release"] / "config.json").read_text())
    with pytest.raises(ConfigError, match=r"projector_config.type='linear' is not supported"):
        config_from_elysium({**config, "projector_config": {"type": "linear"}}, vision_config=VISION)
    with pytest.raises(ConfigError, match=r"in_token_num=576 but the vision tower gives 8x8=64 patches"):
        config_from_elysium({**config, "adapter_config": {"in_token_num": 576, "num_features": 32}},
                            vision_config=VISION, llm_dir=release["llm_dir"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"hidden_size=64 but the LLM config is 4096 wide"):
        config_from_elysium(config, vision_config=VISION)  # vicuna-7b's shape, not this tiny LLM's
    with pytest.raises(ConfigError, match=r"'my/llm' is not a known LLM .* pass llm_dir="):
        config_from_elysium({**config, "llm_config": {"pretrained_model_name_or_path": "my/llm"}})


def test_a_selector_that_never_trained_keeps_the_bias_cells_on_every_frame(release, tmp_path, caplog):
    """With the released code the adapter gets no gradient, so trans_weight stays zero: the kept cells are
    then the initial bias' stride-5 raster walk on every frame, whatever the frame shows."""
    untrained = _edited_copy(
        release, tmp_path, lambda t: t.update({"adapter.trans_weight": torch.zeros(CELLS, CELLS, dtype=torch.bfloat16)})
    )
    with caplog.at_level("INFO", logger="artemis.model.importers.elysium"):
        model = _import(untrained, release).model
    assert "trans_weight is all zeros" in caplog.text
    with torch.no_grad():
        features = model.vision_tower(release["frames"], output_hidden_states=True).hidden_states[-2][:, 1:]
        _, cells = model.frame_selector(features)
    assert cells.tolist() == [list(range(0, 5 * KEEP, 5))] * FRAMES
