"""Importers: LLaVA configs and the original Artemis checkpoint layout, written here from a tiny model."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from artemis.errors import CheckpointError, ConfigError
from artemis.model import build_tiny_model
from artemis.model.importers import config_from_llava, import_artemis_checkpoint, map_name, original_name
from artemis.model.importers.llava_config import region_layers
from artemis.prompts import DESCRIBE_QUESTIONS, referring_prompt

TEXTS = ("the red circle moves from left to right .", "a blue square stays still .")
# A 7-layer CLIP has 8 hidden states, enough for 3 levels of hidden_states[-2::-3]: layers -8, -5, -2.
VISION = {
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 7,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 4,
    "projection_dim": 32,
}
# Sizes the original hard-coded (so no LLaVA key carries them) that the tiny model shrinks.
TINY_OVERRIDES = {
    "num_frames": 8,
    "region_hidden_size": 32,
    "region_num_fuse": 2,
    "region_norm_groups": 8,
    "roi_output_size": 4,
    "num_track_boxes": 6,
}


def _llava_config(model) -> dict:
    """The config.json the original would have written for this model."""
    text = model.config.text_config
    return {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        **{
            key: getattr(text, key)
            for key in (
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "max_position_embeddings",
                "rms_norm_eps",
                "bos_token_id",
                "eos_token_id",
                "pad_token_id",
            )
        },
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "mm_image_tower": "openai/clip-vit-large-patch14",  # the original's name; vision_tower_dir wins
        "mm_hidden_size": VISION["hidden_size"],
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "mm_spi_model": True,
        "k_means": True,
        "kmeans_n_clusters": 3,
        "num_level_spi_features": 3,
    }


def _batch(processor, config):
    encoded = processor.encode_conversation([(referring_prompt(DESCRIBE_QUESTIONS[0]), TEXTS[0])])
    batch = processor.pad([encoded])
    k = config.num_region_frames
    generator = torch.Generator().manual_seed(0)
    batch["pixel_values"] = torch.randn(1, 5, 3, 32, 32, generator=generator)
    batch["region_pixel_values"] = torch.randn(1, k, 3, 32, 32, generator=generator)
    boxes = torch.tensor([0.2, 0.2, 0.6, 0.7]).repeat(1, 1, k, 1)
    boxes[..., 0::2] += torch.linspace(0, 0.3, k)[:, None]
    batch["region_boxes"] = boxes
    return batch


def _save_bin_shards(state: dict[str, torch.Tensor], directory: Path) -> None:
    """Two ``pytorch_model-0000X-of-00002.bin`` shards and their index, as LLaVA's trainer writes them."""
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2]}
    shards["pytorch_model-00002-of-00002.bin"] = keys[len(keys) // 2 :]
    weight_map = {}
    for name, shard_keys in shards.items():
        torch.save({key: state[key].clone() for key in shard_keys}, directory / name)
        weight_map.update(dict.fromkeys(shard_keys, name))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index))


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A tiny model written in the original release layout: base dir, CLIP dir, LoRA dir.

    Returns the reference (the tiny model with the peft adapter applied), the batch and the directories.
    """
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("original-artemis")
    base, clip, lora = root / "base", root / "clip", root / "lora"
    for directory in (base, clip, lora):
        directory.mkdir()
    model, processor = build_tiny_model(
        TEXTS, seed=0, vision_config=VISION, region_feature_layers=[-8, -5, -2], num_selected=3, **TINY_OVERRIDES
    )
    llava = _llava_config(model)
    state = {original_name(key): value for key, value in model.state_dict().items()}

    # Stage-2 base: the LLM and a stale projector (stage 3 retrains it), no region module, no tower.
    base_state = {key: value for key, value in state.items() if not key.startswith(("model.spi", "model.image"))}
    base_state = {key: value + 1.0 if "mm_projector" in key else value for key, value in base_state.items()}
    _save_bin_shards(base_state, base)
    (base / "config.json").write_text(json.dumps(llava))
    processor.tokenizer.save_pretrained(base)

    # The tower as the hub's openai/clip-vit-* holds it: a full CLIPModel, ``vision_model.*`` names.
    clip_state = {f"vision_model.{key}": value for key, value in model.vision_tower.state_dict().items()}
    clip_state["vision_model.embeddings.position_ids"] = torch.arange(65)[None]
    clip_state["text_model.embeddings.token_embedding.weight"] = torch.zeros(10, 8)
    clip_state["visual_projection.weight"] = torch.zeros(8, 32)
    clip_state["logit_scale"] = torch.tensor(2.0)
    torch.save(clip_state, clip / "pytorch_model.bin")
    (clip / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": VISION, "text_config": {}}))

    # Stage 3: a real peft adapter on q_proj/v_proj with non-zero B, and the non-LoRA trainables.
    peft_lm = get_peft_model(
        copy.deepcopy(model.language_model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_lm.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    peft_lm.save_pretrained(lora)
    trainables = {
        f"base_model.model.{key}": value
        for key, value in state.items()
        if key.startswith(("model.mm_projector", "model.spi_model"))
    }
    torch.save(trainables, lora / "non_lora_trainables.bin")
    (lora / "config.json").write_text(json.dumps(llava))

    reference = copy.deepcopy(model)
    reference.language_model = peft_lm.eval()
    batch = _batch(processor, model.config)
    with torch.no_grad():
        expected = reference(**batch).logits
    return {"base": base, "clip": clip, "lora": lora, "batch": batch, "expected": expected, "model": model}


def _logits(imported, batch) -> torch.Tensor:
    with torch.no_grad():
        return imported.model(**batch).logits


def test_imported_checkpoint_computes_the_same_logits_as_the_original(original, tmp_path):
    imported = import_artemis_checkpoint(
        original["base"], lora_dir=original["lora"], vision_tower_dir=original["clip"], config_overrides=TINY_OVERRIDES
    )
    config = imported.config
    assert config.region_feature_layers == [-8, -5, -2]  # hidden_states[-2::-3], reversed, last 3
    assert config.num_selected == 3 and config.box_embedding == "absolute"
    assert (config.video_token_id, config.region_token_id) == (3, 4)  # already in this tokenizer
    torch.testing.assert_close(_logits(imported, original["batch"]), original["expected"], rtol=0, atol=1e-5)
    # The adapter really changed the LLM, so the comparison above covers the merge.
    with torch.no_grad():
        unmerged = original["model"](**original["batch"]).logits
    assert not torch.allclose(unmerged, original["expected"], atol=1e-3)


def test_unmerged_adapter_and_saved_copy_give_the_same_logits(original, tmp_path):
    from artemis import ArtemisModel

    unmerged = import_artemis_checkpoint(
        original["base"],
        lora_dir=original["lora"],
        vision_tower_dir=original["clip"],
        merge_lora=False,
        config_overrides=TINY_OVERRIDES,
    )
    torch.testing.assert_close(_logits(unmerged, original["batch"]), original["expected"], rtol=0, atol=1e-5)
    import_artemis_checkpoint(
        original["base"],
        lora_dir=original["lora"],
        vision_tower_dir=original["clip"],
        out_dir=tmp_path / "imported",
        config_overrides=TINY_OVERRIDES,
    )
    assert (tmp_path / "imported" / "model.safetensors").is_file()
    # A tower written by transformers 5 (CLIPVisionModel.save_pretrained, unprefixed names) works too.
    original["model"].vision_tower.save_pretrained(tmp_path / "clip-v5")
    again = import_artemis_checkpoint(
        original["base"],
        lora_dir=original["lora"],
        vision_tower_dir=tmp_path / "clip-v5",
        config_overrides=TINY_OVERRIDES,
    )
    torch.testing.assert_close(_logits(again, original["batch"]), original["expected"], rtol=0, atol=1e-5)
    reloaded = ArtemisModel.from_pretrained(tmp_path / "imported")
    torch.testing.assert_close(_logits(reloaded, original["batch"]), original["expected"], rtol=0, atol=1e-5)


def _copy_base(original, tmp_path) -> Path:
    base = tmp_path / "base"
    shutil.copytree(original["base"], base)
    return base


def _edit_shard(base: Path, edit) -> None:
    shard = base / "pytorch_model-00002-of-00002.bin"
    tensors = torch.load(shard, weights_only=True)
    edit(tensors)
    torch.save(tensors, shard)
    index_path = base / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {key: name for key, name in index["weight_map"].items() if name != shard.name}
    index["weight_map"].update(dict.fromkeys(tensors, shard.name))
    index_path.write_text(json.dumps(index))


def test_a_wrong_shape_names_the_key_and_both_shapes(original, tmp_path):
    base = _copy_base(original, tmp_path)
    _edit_shard(base, lambda tensors: tensors.update({"model.norm.weight": torch.ones(65)}))
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight.*checkpoint \(65,\), model \(64,\)"):
        import_artemis_checkpoint(
            base, lora_dir=original["lora"], vision_tower_dir=original["clip"], config_overrides=TINY_OVERRIDES
        )


def test_an_unknown_key_is_listed(original, tmp_path):
    base = _copy_base(original, tmp_path)
    _edit_shard(base, lambda tensors: tensors.update({"model.spi_model.extra_head.weight": torch.ones(3)}))
    with pytest.raises(CheckpointError, match=r"no rule in the name map.*model\.spi_model\.extra_head\.weight"):
        import_artemis_checkpoint(
            base, lora_dir=original["lora"], vision_tower_dir=original["clip"], config_overrides=TINY_OVERRIDES
        )


def test_missing_weights_and_a_missing_vision_tower_are_clear_errors(original, tmp_path):
    with pytest.raises(CheckpointError, match=r"pass vision_tower_dir="):
        import_artemis_checkpoint(original["base"], lora_dir=original["lora"], config_overrides=TINY_OVERRIDES)
    with pytest.raises(CheckpointError, match=r"vision_tower_dir='.*nowhere' is not a directory"):
        import_artemis_checkpoint(original["base"], vision_tower_dir=tmp_path / "nowhere")
    # Without the stage-3 directory the region module is in no file.
    with pytest.raises(CheckpointError, match=r"model parameters are in no checkpoint file: \['region_encoder"):
        import_artemis_checkpoint(original["base"], vision_tower_dir=original["clip"], config_overrides=TINY_OVERRIDES)


def test_placeholder_tokens_are_added_when_the_tokenizer_lacks_them(original, tmp_path):
    """A Vicuna-style tokenizer without <video>/<region>: they get the next ids and mean-initialised rows."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {
        ("<vid_unused>" if t == "<video>" else "<reg_unused>" if t == "<region>" else t): i
        for t, i in json.loads((original["base"] / "tokenizer.json").read_text())["model"]["vocab"].items()
    }
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer_dir = tmp_path / "tokenizer"
    PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(tokenizer_dir)
    rows = len(vocab)
    imported = import_artemis_checkpoint(
        original["base"],
        lora_dir=original["lora"],
        vision_tower_dir=original["clip"],
        tokenizer_dir=tokenizer_dir,
        config_overrides=TINY_OVERRIDES,
    )
    config = imported.config
    assert (config.video_token_id, config.region_token_id) == (rows, rows + 1)
    assert config.text_config.vocab_size == rows + 2
    assert imported.processor.tokenizer.pad_token == "<unk>"  # the original's Vicuna-v1 choice
    embeddings = imported.model.get_input_embeddings().weight
    torch.testing.assert_close(embeddings[rows], embeddings[:rows].mean(0))


def test_name_map_round_trips_every_parameter(original):
    for key in original["model"].state_dict():
        assert map_name(original_name(key)) == key
    assert map_name("model.spi_model.mlvl_fuse.fuse_convs.3.gn.bias") == "region_encoder.fuse.fuse_convs.3.1.bias"
    assert map_name("model.spi_model.roi_align.pos_embedd.5.weight") == "region_encoder.box_embedding.mlp.5.weight"
    assert map_name("model.spi_model.roi_align.updims.weight") == "region_encoder.out_proj.weight"
    assert map_name("model.mm_projector.1.weight") is None  # GELU has no weights


# The keys the original Artemis-7B config carries (LLaVA + mm_image_tower / mm_spi_model / k_means).
ARTEMIS_7B = {
    "model_type": "llava",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "vocab_size": 32000,
    "mm_hidden_size": 1024,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch",
    "mm_image_tower": "openai/clip-vit-large-patch14",
    "mm_spi_model": True,
    "k_means": True,
}


def test_region_levels_follow_the_originals_order():
    # CLIP-L: 25 hidden states; hidden_states[-2::-3][::-1][-4:] -> layer -11 is level 0 (the largest map).
    assert region_layers(-2, 25, 4) == [-11, -8, -5, -2]
    config = config_from_llava(ARTEMIS_7B)
    assert config.num_video_tokens == 100 + 16 * 16 and config.num_region_tokens == 5
    assert config.region_feature_layers == [-11, -8, -5, -2]
    assert (config.video_token_id, config.region_token_id) == (32000, 32001)
    assert config_from_llava({**ARTEMIS_7B, "k_means": False}).selector == "all"


@pytest.mark.reference
def test_llava_13b_config(reference_dir):
    config = config_from_llava(reference_dir / "configs" / "llava-v1.5-13b.config.json")
    text = config.text_config
    assert (text.model_type, text.hidden_size, text.num_hidden_layers, text.vocab_size) == ("llama", 5120, 40, 32000)
    assert text.intermediate_size == 13824 and text.num_attention_heads == 40
    assert config.vision_config.image_size == 336 and config.vision_config.hidden_size == 1024
    assert config.num_video_tokens == 100 + 24 * 24
    assert config.vision_feature_layer == -2


def test_llava_config_errors_name_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"mm_image_tower='my/tower'.*pass vision_config="):
        config_from_llava({**ARTEMIS_7B, "mm_image_tower": "my/tower"})
    with pytest.raises(ConfigError, match=r"mm_projector_type='linear'.*mlp2x_gelu"):
        config_from_llava({**ARTEMIS_7B, "mm_projector_type": "linear"})
    with pytest.raises(ConfigError, match=r"mm_hidden_size=768 but the vision tower is 1024 wide"):
        config_from_llava({**ARTEMIS_7B, "mm_hidden_size": 768})
    with pytest.raises(ConfigError, match=r"mm_vision_select_feature='cls_patch'"):
        config_from_llava({**ARTEMIS_7B, "mm_vision_select_feature": "cls_patch"})
    with pytest.raises(ConfigError, match=r"model_type='llava_mpt'"):
        config_from_llava({**ARTEMIS_7B, "model_type": "llava_mpt"})
    # An unknown tower is fine when its config is given; overrides set the original's hard-coded sizes.
    custom = config_from_llava(
        {**ARTEMIS_7B, "mm_image_tower": "my/tower", "mm_hidden_size": 32}, vision_config=VISION, region_norm_groups=8
    )
    assert custom.vision_config.hidden_size == 32 and custom.region_norm_groups == 8


def test_plain_llava_without_region_module_keeps_the_region_encoder_init(original, tmp_path):
    """A LLaVA checkpoint (no mm_spi_model) never had region weights: they are allowed to be missing."""
    base = _copy_base(original, tmp_path)
    llava = json.loads((base / "config.json").read_text())
    llava["mm_spi_model"] = False
    (base / "config.json").write_text(json.dumps(llava))
    imported = import_artemis_checkpoint(base, vision_tower_dir=original["clip"], config_overrides=TINY_OVERRIDES)
    projector = imported.model.mm_projector.linear_1.weight
    torch.testing.assert_close(projector, original["model"].mm_projector.linear_1.weight + 1.0)  # the base's copy
