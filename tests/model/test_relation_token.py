"""The relation embedding (``region_track_token="relation"``): for each region after the first, how it
relates to the first region given the question, in place of its track token, with its own answer head and loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from artemis import ArtemisModel
from artemis.data import read
from artemis.data.collator import ArtemisCollator
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import ConfigError
from artemis.model import build_tiny_model
from artemis.model.configuration import tiny_config
from artemis.model.region import RelationEmbedding
from artemis.regions import Region

CONFIG = SynthRefConfig(width=64, height=48, num_frames=12)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_split(tmp_path_factory.mktemp("relation"), 3, seed=6, split="train", config=CONFIG).split_dir


@pytest.fixture(scope="module")
def tiny(split: Path):
    texts = [
        s.caption for name in ("videoref45k.json", "videoref45k_pairs.json") for s in read("videoref45k", split / name)
    ]
    return build_tiny_model(texts, seed=0, region_track_token="relation")


def _inputs(model, regions: int = 2, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(1, regions, 4, 2, generator=generator) * 0.5
    boxes = torch.cat([corner, corner + 0.3], -1)  # (1, R, K=4, 4)
    times = torch.linspace(0, 1, 4)[None]
    content = torch.randn(1, regions, model.config.region_hidden_size, generator=generator)
    question = torch.randn(1, model.config.text_config.hidden_size, generator=generator)
    return boxes, times, content, question


def test_only_regions_after_the_first_get_a_relation_token(tiny) -> None:
    model, _ = tiny
    model.eval()
    relation = model.region_encoder.relation_embedding
    assert isinstance(relation, RelationEmbedding)
    boxes, times, content, question = _inputs(model, regions=3)
    with torch.no_grad():
        tokens, related = relation(boxes, None, times, content, torch.tensor([[True, True, False]]), question)
        alone, alone_related = relation(boxes[:, :1], None, times, content[:, :1], None, question)
    assert related.tolist() == [[False, True, False]]  # the first region and a padding region: none
    assert float(tokens[0, 0].abs().sum()) == 0.0 and float(tokens[0, 2].abs().sum()) == 0.0
    assert float(tokens[0, 1].abs().sum()) > 0.0
    assert not bool(alone_related.any()) and float(alone.abs().sum()) == 0.0  # a lone region: nothing to relate


def test_the_relation_token_reads_the_question_and_both_tracks(tiny) -> None:
    model, _ = tiny
    model.eval()
    relation = model.region_encoder.relation_embedding
    boxes, times, content, question = _inputs(model)
    with torch.no_grad():
        base, _ = relation(boxes, None, times, content, None, question)
        asked, _ = relation(boxes, None, times, content, None, -question)
        moved = boxes.clone()
        moved[0, 0] += 0.1  # only the first region moves
        other, _ = relation(moved, None, times, content, None, question)
    assert not torch.allclose(base[0, 1], asked[0, 1])  # another question, another token
    assert not torch.allclose(base[0, 1], other[0, 1])  # region 2's token sees where region 1 goes


def _pair_batch(model, processor, split: Path, count: int = 4) -> dict:
    files = [("videoref45k", split / "videoref45k_pairs.json")]
    dataset = ReferringDataset.from_files(files, processor, model.config, seed=0)
    return ArtemisCollator(processor, model.config)([dataset[i] for i in range(count)])


def test_the_training_loss_adds_the_relation_loss_and_trains_the_answer_head(tiny, split: Path) -> None:
    model, processor = tiny
    model.train()
    batch = _pair_batch(model, processor, split)
    torch.manual_seed(0)
    total = model(**batch).loss
    relation_loss = model.relation_loss
    assert relation_loss is not None and float(relation_loss.detach()) > 0
    # the same batch without the relation loss: the LM loss alone
    model.config.region_relation_loss = 0.0
    try:
        plain = model(**batch).loss
    finally:
        model.config.region_relation_loss = 1.0
    torch.testing.assert_close(total, plain + relation_loss, rtol=1e-5, atol=1e-5)
    # the head learns the first answer token ("region1"/"region2"/"Yes"/"No") of each pair question
    labels = batch["labels"]
    first = labels[torch.arange(len(labels)), (labels != -100).float().argmax(1)]
    words = {processor.tokenizer.decode([int(t)]).strip() for t in first}
    assert words <= {"region1", "region2", "Yes", "No", "Yes.", "No."}, words
    model.zero_grad()
    model(**batch).loss.backward()
    head = model.region_encoder.relation_embedding.answer_head
    assert head.weight.grad is not None and float(head.weight.grad.abs().sum()) > 0
    model.zero_grad()
    model.eval()


def test_a_description_has_no_relation_loss(tiny, split: Path) -> None:
    model, processor = tiny
    files = [("videoref45k", split / "videoref45k.json")]
    dataset = ReferringDataset.from_files(files, processor, model.config, seed=0)
    batch = ArtemisCollator(processor, model.config)([dataset[0], dataset[1]])
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss) and model.relation_loss is None


def test_two_regions_ask_with_the_relation_token(tiny, split: Path, tmp_path: Path) -> None:
    model, processor = tiny
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    artemis = ArtemisModel.from_pretrained(tmp_path / "m", tracker="opencv-kcf")
    assert artemis.model.config.region_track_token == "relation"
    record = json.loads((split / "videoref45k_pairs.json").read_text())[0]
    captured: list[tuple] = []
    geometry: list[torch.Tensor] = []
    encoder = artemis.model.region_encoder.relation_embedding
    handle = encoder.register_forward_hook(lambda module, args, out: captured.append((args[-1], out[0].detach())))
    track = artemis.model.region_encoder.track_embedding.register_forward_hook(
        lambda module, args, out: geometry.append(out.detach())
    )
    region_tokens = artemis.model.region_tokens
    returned: list[torch.Tensor] = []
    artemis.model.region_tokens = lambda *args: returned.append(region_tokens(*args)) or returned[-1]
    regions = [
        Region(box=tuple(b), frame=int(f)) for b, f in zip(record["key_frame_box"], record["key_frame_id"], strict=True)
    ]
    try:
        first = artemis.ask(
            str(split / record["frame_path"]), regions=regions, question="Is <region> faster than <region>?"
        )
        second = artemis.ask(
            str(split / record["frame_path"]), regions=regions, question="Are <region> and <region> the same colour?"
        )
    finally:
        handle.remove()
        track.remove()
        del artemis.model.region_tokens
    assert isinstance(first.text, str) and isinstance(second.text, str) and len(first.tracks) == 2
    # the last token of each region: zero for the first, the second region's relation to it
    last = returned[0][0, :, -1]  # (R, D)
    assert float(last[0].abs().sum()) == 0.0 and float(geometry[0][0, 0].abs().sum()) > 0.0
    torch.testing.assert_close(last[1], captured[0][1][0, 1])
    (question_1, tokens_1), (question_2, tokens_2) = captured[0], captured[-1]
    assert question_1 is not None and not torch.allclose(question_1, question_2)  # the prompt's words reach it
    assert not torch.allclose(tokens_1[0, 1], tokens_2[0, 1])


def test_relation_settings_are_checked() -> None:
    assert tiny_config(region_track_token="relation").num_region_tokens == tiny_config().num_selected + 2
    with pytest.raises(ConfigError, match="region_relation_loss"):
        tiny_config(region_track_token="relation", region_relation_loss=-1)
    with pytest.raises(ConfigError, match="region_track_token"):
        tiny_config(region_track_token="relations")


def test_a_conversation_about_two_regions_is_encoded_afresh_each_turn(tiny, split: Path) -> None:
    # The relation embedding reads the prompt's words, so a cached turn's region tokens belong to another text:
    # with two regions every turn is encoded from scratch; with one region the cache is reused as usual.
    model, processor = tiny
    artemis = ArtemisModel(model, processor, tracker="opencv-kcf")
    record = json.loads((split / "videoref45k_pairs.json").read_text())[0]
    video = str(split / record["frame_path"])
    regions = [
        Region(box=tuple(b), frame=int(f)) for b, f in zip(record["key_frame_box"], record["key_frame_id"], strict=True)
    ]
    reused = {}
    for count in (2, 1):
        messages = [{"role": "user", "content": "Are <region> and <region> the same colour?" if count == 2 else
                     "What is the <region> doing?"}]  # fmt: skip
        for _ in range(2):
            reply = artemis.chat(video, regions[:count], messages, max_new_tokens=4)
            messages = [*reply.messages, {"role": "user", "content": "Is it moving?"}]
        reused[count] = artemis.chat_cache.reused_tokens
    assert reused[2] == 0
    assert reused[1] > 0


def test_a_lone_region_gets_its_geometry_or_a_zero_track_token(split: Path) -> None:
    texts = [s.caption for s in read("videoref45k", split / "videoref45k.json")]
    tokens = {}
    for lone in ("geometry", "zero"):
        model, _ = build_tiny_model(texts, seed=0, region_track_token="relation", region_lone_track=lone)
        model.eval()
        config = model.config
        generator = torch.Generator().manual_seed(0)
        frames, size = config.num_track_boxes + 1, config.vision_config.image_size
        pixels = torch.randn(2 * frames, 3, size, size, generator=generator)
        states = model._vision_hidden_states(pixels, config.region_feature_layers)
        levels = [states[layer] for layer in config.region_feature_layers]
        corner = torch.rand(2, 2, frames, 2, generator=generator) * 0.4
        boxes = torch.cat([corner, corner + 0.3], -1)  # (B=2, R=2, K, 4)
        present = torch.tensor([[True, False], [True, True]])  # sample 0: one region; sample 1: two
        times = torch.linspace(0, 1, frames).expand(2, frames)
        with torch.no_grad():
            tokens[lone] = model.region_tokens(levels, boxes, None, times, present=present)  # (B, R, 1 + k + 1, D)
    geometry, zero = tokens["geometry"], tokens["zero"]
    assert float(geometry[0, 0, -1].abs().sum()) > 0 and float(zero[0, 0, -1].abs().sum()) == 0.0
    torch.testing.assert_close(zero[0, 0, :-1], geometry[0, 0, :-1])  # the RoI tokens are the same
    torch.testing.assert_close(zero[1], geometry[1])  # two regions: zero first, then the relation, either way
    assert float(zero[1, 0, -1].abs().sum()) == 0.0 and float(zero[1, 1, -1].abs().sum()) > 0
    with pytest.raises(ConfigError, match="region_lone_track='none' is not valid"):
        tiny_config(region_track_token="relation", region_lone_track="none")
