"""A Vicuna/Llama-style LLM directory whose only tokenizer file is ``tokenizer.model`` loads (the ``train``
extra's sentencepiece and protobuf), and takes artemis' placeholder tokens as the composed model does."""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece  # the train extra brings it; a missing one fails here

TEXT = """a man in a red shirt walks to the left of the frame
the dog runs across the grass and jumps over a small fence
a woman holds a blue umbrella while the car drives past
two children play with a ball near the trees in the park
"""


def test_llama_directory_with_only_tokenizer_model(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from artemis.prompts import REGION_TOKEN, VIDEO_TOKEN

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 20)
    llm = tmp_path / "vicuna-like"
    llm.mkdir()
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(llm / "tokenizer"), vocab_size=120, model_type="bpe",
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
    )  # fmt: skip
    (llm / "tokenizer.vocab").unlink()
    llama = {"model_type": "llama", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32, "vocab_size": 120}  # fmt: skip
    (llm / "config.json").write_text(json.dumps(llama))
    assert sorted(p.name for p in llm.iterdir()) == ["config.json", "tokenizer.model"]

    tokenizer = AutoTokenizer.from_pretrained(llm, local_files_only=True)
    ids = tokenizer("the dog runs").input_ids
    assert len(tokenizer) == 120 and tokenizer.unk_token_id == 0 and tokenizer.eos_token_id == 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the dog runs"
    tokenizer.add_special_tokens({"additional_special_tokens": [VIDEO_TOKEN, REGION_TOKEN]})
    video = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    assert video >= 120 and tokenizer(f"{VIDEO_TOKEN} the dog").input_ids.count(video) == 1
