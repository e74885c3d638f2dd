"""Generating text from processed inputs: one path for the API, box output, evaluation and the server.

:func:`generate` takes a model, its processor and a batch from ``processor(...)`` (one sample or several,
text padded on the left) and returns one text per sample; :func:`stream` yields the text of one sample
as it is generated (transformers' ``TextIteratorStreamer``, generation in a worker thread).

Decoding is greedy and deterministic unless the options say otherwise (``do_sample``, ``num_beams``,
...); ``max_new_tokens`` defaults to 64. The ``<video>`` and ``<region>`` ids are slots for features,
never words to write, so they are banned from the output.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from transformers import TextIteratorStreamer

from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "MODEL_INPUTS", "generate", "generate_ids", "stream"]

DEFAULT_MAX_NEW_TOKENS = 64
MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "pixel_values",
    "frame_mask",
    "query_boxes",
    "region_pixel_values",
    "region_boxes",
    "region_visible",
    "region_times",
    "video_features",
    "video_feature_mask",
    "region_hidden_states",
)
"""The keys of a processed batch that ``ArtemisForConditionalGeneration`` reads."""


def _model_inputs(model: ArtemisForConditionalGeneration, inputs: Mapping[str, Any]) -> dict[str, Any]:
    device, dtype = model.device, model.dtype

    def moved(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
        if isinstance(value, (tuple, list)):
            return type(value)(moved(v) for v in value)
        return value

    return {name: moved(inputs[name]) for name in MODEL_INPUTS if name in inputs}


def _settings(model: ArtemisForConditionalGeneration, processor: ArtemisProcessor, options: Mapping[str, Any]) -> dict:
    tokenizer = processor.tokenizer
    config = model.config
    settings: dict[str, Any] = {
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "do_sample": False,
        "num_beams": 1,
        "bad_words_ids": [[config.video_token_id], [config.region_token_id]],
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": processor.pad_id,
    }
    settings.update(options)
    return settings


@torch.inference_mode()
def generate_ids(
    model: ArtemisForConditionalGeneration, processor: ArtemisProcessor, inputs: Mapping[str, Any], **options: Any
) -> torch.Tensor:
    """The new token ids of every sample, (B, N) (padded with the pad id after an end of sequence)."""
    if "input_ids" not in inputs:
        raise ValueError("inputs have no input_ids; build them with the model's ArtemisProcessor")
    ids = inputs["input_ids"]
    if ids.ndim != 2:
        raise ValueError(f"input_ids of shape {tuple(ids.shape)}; expected (batch, length)")
    mask = inputs.get("attention_mask")
    if ids.shape[0] > 1 and mask is not None and bool((mask[:, -1] == 0).any()):
        raise ValueError("a batch for generation must be padded on the left; build it with padding_side='left'")
    output = model.generate(**_model_inputs(model, inputs), **_settings(model, processor, options))
    return output[:, ids.shape[1] :]


def generate(
    model: ArtemisForConditionalGeneration, processor: ArtemisProcessor, inputs: Mapping[str, Any], **options: Any
) -> list[str]:
    """One generated text per sample of ``inputs`` (a batch from ``processor(...)``).

    Args:
        options: ``generate`` keyword arguments (``max_new_tokens``, ``do_sample``, ``streamer``, ...).
    """
    return processor.batch_decode(generate_ids(model, processor, inputs, **options))


def stream(
    model: ArtemisForConditionalGeneration, processor: ArtemisProcessor, inputs: Mapping[str, Any], **options: Any
) -> Iterator[str]:
    """Yield the text of one sample piece by piece as it is generated; ``"".join`` of the pieces is the
    text :func:`generate` returns (up to surrounding spaces). An error in generation is raised here."""
    if inputs["input_ids"].shape[0] != 1:
        raise ValueError(f"stream() takes one sample; got a batch of {inputs['input_ids'].shape[0]}")
    streamer = TextIteratorStreamer(
        processor.tokenizer, skip_prompt=True, skip_special_tokens=True, clean_up_tokenization_spaces=True
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            generate_ids(model, processor, inputs, streamer=streamer, **options)
        except BaseException as error:  # handed to the consumer below, never lost in the thread
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=run, name="artemis-generate", daemon=True)
    worker.start()
    try:
        first = True
        for piece in streamer:
            if first:
                piece = piece.lstrip()
                first = not piece
            if piece:
                yield piece
    finally:
        worker.join()
    if failure:
        raise failure[0]
