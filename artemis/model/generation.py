"""Generating text from processed inputs: one path for the API, box output, evaluation and the server.

:func:`generate` takes a model, its processor and a batch from ``processor(...)`` (one sample or several,
text padded on the left) and returns one text per sample; :func:`stream` yields the text of one sample
as it is generated (transformers' ``TextIteratorStreamer``, generation in a worker thread).

Decoding is greedy and deterministic unless the options say otherwise (``do_sample``, ``num_beams``,
...); ``max_new_tokens`` defaults to 64. The ``<video>`` and ``<region>`` ids are slots for features,
never words to write, so they are banned from the output.

A :class:`ConversationCache` given to :func:`generate_ids` (``conversation=``) keeps the KV cache of the
last prompt and answer: when the next prompt of a one-sample batch continues it (the same visual inputs
and model, and its token ids start with the earlier prompt and answer), generation starts from that cache
and the language model prefills only the new tokens; otherwise it encodes the prompt from scratch.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import GenerationMixin, TextIteratorStreamer
from transformers.cache_utils import Cache

from artemis.model.modeling import ArtemisForConditionalGeneration
from artemis.model.processing import ArtemisProcessor

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "MODEL_INPUTS", "ConversationCache", "generate", "generate_ids", "stream"]

DEFAULT_MAX_NEW_TOKENS = 64
MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "pixel_values",
    "frame_mask",
    "query_boxes",
    "select_query",
    "region_pixel_values",
    "region_boxes",
    "region_visible",
    "region_times",
    "region_masks",
    "video_features",
    "video_feature_mask",
    "region_hidden_states",
)
"""The keys of a processed batch that ``ArtemisForConditionalGeneration`` reads."""
# transformers 5.24 renamed generate's ``past_key_values`` to ``cache`` (the old name warns until 6.0).
_CACHE_NAME = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)


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


@dataclass
class _Conversation:
    """One cached conversation: the ids its KV cache was built from, and the cache."""

    key: str
    ids: np.ndarray  # (L,) the prompt and the generated answer
    cache: Cache


class ConversationCache:
    """The KV caches of the last ``capacity`` conversations generated through it, for the next turn.

    Given to :func:`generate_ids` (``conversation=``): after generating, it keeps the language model's KV
    cache of the prompt and the answer; a later one-sample prompt that continues one of them (same visual
    inputs, same model and config, and token ids that start with that prompt and answer) starts from its
    cache, cropped to the ids they share, so the language model prefills only the new tokens and the vision
    tower does not run. Anything else is encoded from scratch. Greedy answers are those of a prompt encoded
    from scratch (up to floating-point ties: the earlier tokens' keys and values were computed in other
    matrix shapes).

    Memory: each entry holds one cache on the model's device (layers x 2 x tokens x hidden size); the least
    recently used entry is dropped beyond ``capacity`` (1 keeps one conversation; 0 keeps none). Reusing an
    entry takes it out, so a failed generation never leaves a half-written cache behind.

    Falls back to encoding from scratch (and says so in the debug log) when the batch has several samples,
    beams or several return sequences, a ``cache_implementation`` is asked for, or the cache would need
    cropping but cannot be cropped (a quantized cache, a sliding window already past its size) or is a
    linear-attention (recurrent) state.

    Attributes:
        capacity: how many conversations are kept.
        reused_tokens: how many prompt tokens the last generation took from a cache (0: from scratch).
    """

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 0:
            raise ValueError(f"capacity={capacity}; expected 0 (keep nothing) or more conversations to keep")
        self.capacity = capacity
        self.reused_tokens = 0
        self._entries: list[_Conversation] = []  # most recent first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every cached conversation (call it after changing the model's weights in place)."""
        with self._lock:
            self._entries.clear()

    def take(self, key: str, ids: np.ndarray, slots: set[int]) -> tuple[Cache, int] | None:
        """The cache of the entry ``ids`` continues furthest, cropped to the shared ids, and their count.

        The entry leaves the cache (the caller puts back what generation makes of it). None when no entry
        of ``key`` shares a usable prefix: at least one id must be left to prefill, and every placeholder
        id of the new prompt must lie in the shared part (the model fills slots only in a prefill from
        scratch).
        """
        with self._lock:
            best, best_length = None, 0
            for entry in self._entries:
                if entry.key == key:
                    length = _shared_length(entry, ids, slots)
                    if length > best_length:
                        best, best_length = entry, length
            if best is None:
                return None
            self._entries.remove(best)
        cache = best.cache
        surplus = cache.get_seq_length() - best_length
        if surplus > 0:
            if not getattr(cache, "is_croppable", False):
                logger.debug("the cached conversation cannot be cropped (%s); encoding from scratch", type(cache))
                return None
            try:
                cache.crop(-surplus)
            except (RuntimeError, ValueError) as error:  # e.g. a sliding window that has dropped the states
                logger.debug("the cached conversation cannot be cropped (%s); encoding from scratch", error)
                return None
            if cache.get_seq_length() != best_length:
                return None
        return cache, best_length

    def put(self, key: str, ids: np.ndarray, cache: Cache) -> None:
        """Keep ``cache`` (built from ``ids``) as the most recent conversation."""
        if self.capacity == 0:
            return
        with self._lock:
            self._entries.insert(0, _Conversation(key, ids, cache))
            del self._entries[self.capacity :]


def _shared_length(entry: _Conversation, ids: np.ndarray, slots: set[int]) -> int:
    """How many leading ids of a new prompt ``ids`` the entry's cache can stand for (0: none)."""
    if any(getattr(entry.cache, "is_linear", [])):
        return 0  # a recurrent state cannot be rolled back to a prefix
    limit = min(entry.cache.get_seq_length(), len(entry.ids), len(ids) - 1)
    differs = np.flatnonzero(entry.ids[:limit] != ids[:limit])
    length = int(differs[0]) if len(differs) else limit
    if length == 0 or np.isin(ids[length:], list(slots)).any():
        return 0
    return length


def _visual_key(model: ArtemisForConditionalGeneration, inputs: Mapping[str, Any]) -> str:
    """A digest of the model and every visual input of a batch: equal digests, equal video and region tokens."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{id(model)}|{model.config.to_json_string()}".encode())

    def add(name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, (tuple, list)):
            for position, part in enumerate(value):
                add(f"{name}.{position}", part)
        elif value is not None:
            digest.update(f"{name}|{value!r}".encode())

    for name in MODEL_INPUTS:
        if name not in ("input_ids", "attention_mask") and name in inputs:
            add(name, inputs[name])
    return digest.hexdigest()


def _prompt_dependent_regions(model: ArtemisForConditionalGeneration, inputs: Mapping[str, Any]) -> bool:
    """Whether the region tokens depend on the prompt's words: a relation embedding reads the question when a
    sample has several regions, so a cache from an earlier turn holds tokens of another text."""
    boxes = inputs.get("region_boxes")
    if model.config.region_track_token != "relation" or boxes is None:
        return False
    present = torch.isfinite(boxes).all(-1).any(-1)  # (B, R)
    return bool((present.sum(-1) > 1).any())


def _reusable(model: ArtemisForConditionalGeneration, inputs: Mapping[str, Any], options: Mapping[str, Any]) -> bool:
    """Whether a generation can start from (and leave) one conversation's cache."""
    mask = inputs.get("attention_mask")
    return (
        not _prompt_dependent_regions(model, inputs)
        and inputs["input_ids"].shape[0] == 1
        and (mask is None or bool(mask.all()))
        and options.get("num_beams", 1) == 1
        and options.get("num_return_sequences", 1) == 1
        and options.get("cache_implementation") is None
        and options.get("use_cache", True)
    )


@torch.inference_mode()
def generate_ids(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    inputs: Mapping[str, Any],
    *,
    conversation: ConversationCache | None = None,
    **options: Any,
) -> torch.Tensor:
    """The new token ids of every sample, (B, N) (padded with the pad id after an end of sequence).

    Args:
        conversation: start from the KV cache of an earlier prompt this one continues, and keep this
            one's (see :class:`ConversationCache`); one-sample batches only, others ignore it.
    """
    if "input_ids" not in inputs:
        raise ValueError("inputs have no input_ids; build them with the model's ArtemisProcessor")
    ids = inputs["input_ids"]
    if ids.ndim != 2:
        raise ValueError(f"input_ids of shape {tuple(ids.shape)}; expected (batch, length)")
    mask = inputs.get("attention_mask")
    if ids.shape[0] > 1 and mask is not None and bool((mask[:, -1] == 0).any()):
        raise ValueError("a batch for generation must be padded on the left; build it with padding_side='left'")
    settings = _settings(model, processor, options)
    if conversation is None or not _reusable(model, inputs, settings):
        if conversation is not None:
            conversation.reused_tokens = 0
            logger.debug("generation options, batch or model rule out a conversation cache; encoding from scratch")
        return model.generate(**_model_inputs(model, inputs), **settings)[:, ids.shape[1] :]
    key = _visual_key(model, inputs)
    prompt = ids[0].cpu().numpy()
    slots = {model.config.video_token_id, model.config.region_token_id}
    found = conversation.take(key, prompt, slots)
    if found is not None:
        settings[_CACHE_NAME], conversation.reused_tokens = found
    else:
        conversation.reused_tokens = 0
    output = model.generate(**_model_inputs(model, inputs), **settings, return_dict_in_generate=True)
    cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
    if isinstance(cache, Cache):
        conversation.put(key, output.sequences[0].cpu().numpy(), cache)
    logger.debug("prefilled %d of %d prompt tokens", len(prompt) - conversation.reused_tokens, len(prompt))
    return output.sequences[:, ids.shape[1] :]


def generate(
    model: ArtemisForConditionalGeneration,
    processor: ArtemisProcessor,
    inputs: Mapping[str, Any],
    *,
    conversation: ConversationCache | None = None,
    **options: Any,
) -> list[str]:
    """One generated text per sample of ``inputs`` (a batch from ``processor(...)``).

    Args:
        conversation: continue from, and keep, a conversation's KV cache (:class:`ConversationCache`).
        options: ``generate`` keyword arguments (``max_new_tokens``, ``do_sample``, ``streamer``, ...).
    """
    return processor.batch_decode(generate_ids(model, processor, inputs, conversation=conversation, **options))


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
