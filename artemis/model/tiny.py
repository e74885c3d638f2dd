"""Build a tiny, randomly initialised Artemis model with a word-level tokenizer.

Used by the tests and as the starting point of the CPU SynthRef recipe: nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from artemis.model.configuration import FRAME_LABEL_OPTIONS, ArtemisConfig, tiny_config
from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor
from artemis.model.tokenizer import build_word_tokenizer
from artemis.prompts import DESCRIBE_QUESTIONS, box_output_vocabulary, referring_prompt


def build_tiny_model(
    texts: Iterable[str] = (), seed: int = 0, **config_overrides
) -> tuple[ArtemisForConditionalGeneration, ArtemisProcessor]:
    """A tiny model whose vocabulary covers ``texts``, the describe questions and the template.

    Args:
        texts: sentences the model will read or write (captions, questions).
        seed: torch seed of the random initialisation, so two builds are identical.
        config_overrides: fields of :func:`tiny_config` to change (``selector``, ``box_embedding``, ...).
            With ``video_layout="frames"`` the vocabulary also covers the box-out (Elysium) prompts and
            answers, so the model can be trained for box output (pass ``tasks=["describe", "boxes"]``).
    """
    prompts = [referring_prompt(question) for question in DESCRIBE_QUESTIONS]
    # The prompt about several regions has words of its own ("These are the regions' ... lists", region3).
    prompts += [referring_prompt(" and ".join(["<region>"] * n), num_regions=n) for n in (2, 3, 4)]
    if config_overrides.get("video_layout") == "frames":
        prompts += box_output_vocabulary()  # box-output prompts and answers: frame labels, numbers 0..100
    tokenizer = build_word_tokenizer([*texts, *prompts])
    overrides = dict(config_overrides)
    text_config = dict(tiny_config().text_config.to_dict())
    text_config.update(overrides.pop("text_config", {}))
    text_config["vocab_size"] = len(tokenizer)
    if any(overrides.get(name) for name in FRAME_LABEL_OPTIONS) and overrides.get("frame_label_ids") is None:
        frames = overrides.get("num_frames", tiny_config().num_frames)
        words = ["Frame", *(str(k) for k in range(1, frames + 1))]
        overrides["frame_label_ids"] = [tokenizer.convert_tokens_to_ids(word) for word in words]
    config: ArtemisConfig = tiny_config(text_config=text_config, **overrides)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ArtemisForConditionalGeneration(config)
    return model.eval(), ArtemisProcessor.from_config(config, tokenizer)
