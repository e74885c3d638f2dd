"""Small word-level tokenizers for tiny models (tests, the SynthRef recipe).

A real checkpoint brings its own tokenizer; a tiny model trained from scratch on a closed vocabulary is
better served by one id per word than by a 32k sub-word vocabulary it would have to learn to spell.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from artemis.prompts import REGION_TOKEN, VICUNA_V1, VIDEO_TOKEN

# Ids 0..5, in the order tiny_config() expects: pad 0, bos 1, eos 2, <video> 3, <region> 4, unk 5.
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", VIDEO_TOKEN, REGION_TOKEN, "<unk>")


def template_words() -> list[str]:
    """Words of the conversation template, so prompts never fall back to ``<unk>``."""
    text = " ".join([VICUNA_V1.system, *VICUNA_V1.roles, ":"])
    return sorted({piece for piece, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text)})


def build_word_tokenizer(texts: Iterable[str], directory: str | Path | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the words of ``texts`` plus the template and special tokens.

    Words are split on white space and punctuation (``tokenizers``' ``Whitespace`` pre-tokenizer); the
    vocabulary is sorted so the same texts always give the same ids. Saved to ``directory`` if given.
    """
    splitter = pre_tokenizers.Whitespace()
    words = set(template_words())
    for text in texts:
        words.update(piece for piece, _ in splitter.pre_tokenize_str(text))
    words -= set(SPECIAL_TOKENS)
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(words):
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = splitter
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=[VIDEO_TOKEN, REGION_TOKEN],
    )
    if directory is not None:
        tokenizer.save_pretrained(directory)
    return tokenizer
