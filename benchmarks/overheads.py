"""What artemis costs on top of its language model: generation, a training step, the region path.

    python benchmarks/overheads.py [--quick] [--repeats 5] [--new-tokens 64] [--batch-size 4]

Builds a randomly initialised model of a shape a CPU can run (a 6-layer, 512-wide Llama and a 4-layer
CLIP at 112 px; ``--quick``: tiny sizes) with a word-level tokenizer, nothing downloaded, and measures
side by side in one run, the compared things taking turns repeat by repeat (medians reported):

* generation: ``artemis.model.generation.generate_ids`` on ``processor(...)`` inputs (prefill with video
  and region tokens, then decoding with the KV cache) against ``model.language_model.generate`` on random
  ids of the same total length, both greedy and forced to write the same number of tokens; ``prefill``
  is the same with one new token, ``decode`` the tokens after it;
* a training step (forward, backward, AdamW step; vision tower frozen as in every published stage) of
  the artemis model from pixels, and from precomputed vision features (``video_features`` /
  ``region_hidden_states``, what the features cache feeds), against a plain causal-LM step of the
  language model on the same token count;
* one describe call (frames read, prompt built, generated) and the share of it spent on the region
  path: the region frames' share of the vision pass, the region encoder (RoIAlign and its convs) and
  the token selector, timed by forward hooks.

Prints one JSON object with the figures and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from artemis.model import build_tiny_model
from artemis.model.features import VisionFeatureExtractor
from artemis.model.generation import generate_ids
from artemis.tasks.referring import answer
from artemis.track import Track
from artemis.video import ArrayVideo

CAPTIONS = (
    "the red circle moves from left to right .",
    "a blue square stays still near the top .",
    "the green triangle moves up and then turns around .",
)

FULL = {
    "text": {"hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 6, "num_attention_heads": 8,
             "num_key_value_heads": 8, "max_position_embeddings": 2048},
    "vision": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4,
               "image_size": 112, "patch_size": 14, "projection_dim": 256},
    "model": {"num_frames": 8, "num_track_boxes": 8, "num_selected": 4, "region_hidden_size": 256,
              "region_num_fuse": 2, "region_norm_groups": 16, "roi_output_size": 7},
    "video": (48, 160, 120),
}  # fmt: skip
QUICK = {
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
    "vision": {},
    "model": {},
    "video": (16, 64, 48),
}


def build(sizes: dict) -> tuple:
    """The model (eval mode) and processor of ``sizes``."""
    overrides = dict(sizes["model"])
    if sizes["vision"]:
        overrides["vision_config"] = {"model_type": "clip_vision_model", **sizes["vision"]}
    return build_tiny_model(CAPTIONS, seed=0, text_config=sizes["text"], **overrides)


def moving_track(frames: int, width: int, height: int) -> Track:
    """A box gliding left to right over the whole video."""
    xs = np.linspace(0.1, 0.6, frames) * width
    boxes = [(x, 0.3 * height, x + 0.3 * width, 0.7 * height) for x in xs]
    return Track.from_boxes(boxes, key_frame=frames // 2)


def median_seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each case; one warm-up each, then the cases take turns (the order rotating)."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name].append(median_seconds(cases[name]))
    return {name: statistics.median(values) for name, values in times.items()}


class HookTimer:
    """Wall time spent inside a module's forward (pre- and post-forward hooks)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds = 0.0
        self._start = 0.0
        self._handles = [module.register_forward_pre_hook(self._before), module.register_forward_hook(self._after)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def _before(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _after(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start


def generation_figures(model, processor, source, track, new_tokens: int, repeats: int) -> dict:
    inputs = processor(source, "What is the <region> doing in this video?", regions=[track], key_frame=track.key_frame)
    length = inputs["input_ids"].shape[1]
    generator = torch.Generator().manual_seed(0)
    plain_ids = torch.randint(5, model.config.text_config.vocab_size, (1, length), generator=generator)
    plain_mask = torch.ones_like(plain_ids)
    lm = model.language_model
    eos_id = processor.tokenizer.eos_token_id

    def artemis(count: int) -> Callable[[], object]:
        return lambda: generate_ids(model, processor, inputs, max_new_tokens=count, min_new_tokens=count)

    def plain(count: int, **options: object) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return lm.generate(
                    input_ids=plain_ids, attention_mask=plain_mask, max_new_tokens=count, min_new_tokens=count,
                    do_sample=False, num_beams=1, pad_token_id=processor.pad_id, eos_token_id=eos_id, **options,
                )  # fmt: skip

        return run

    # artemis bans its placeholder ids from the output; the same logits processor on the plain LM
    # separates that cost from the rest of the artemis path.
    banned = [[model.config.video_token_id], [model.config.region_token_id]]
    cases = {
        "artemis": artemis(new_tokens),
        "plain": plain(new_tokens),
        "plain_banned": plain(new_tokens, bad_words_ids=banned),
    }
    seconds = interleaved({**cases, "artemis_prefill": artemis(1), "plain_prefill": plain(1)}, repeats)
    artemis_tps = new_tokens / seconds["artemis"]
    plain_tps = new_tokens / seconds["plain"]
    artemis_decode = (new_tokens - 1) / max(seconds["artemis"] - seconds["artemis_prefill"], 1e-9)
    plain_decode = (new_tokens - 1) / max(seconds["plain"] - seconds["plain_prefill"], 1e-9)
    banned_decode = (new_tokens - 1) / max(seconds["plain_banned"] - seconds["plain_prefill"], 1e-9)
    return {
        "prompt_tokens": length,
        "new_tokens": new_tokens,
        "artemis_tokens_per_s": artemis_tps,
        "plain_tokens_per_s": plain_tps,
        "tokens_per_s_ratio": artemis_tps / plain_tps,
        "artemis_prefill_s": seconds["artemis_prefill"],
        "plain_prefill_s": seconds["plain_prefill"],
        "artemis_decode_tokens_per_s": artemis_decode,
        "plain_decode_tokens_per_s": plain_decode,
        "decode_tokens_per_s_ratio": artemis_decode / plain_decode,
        "plain_banned_decode_tokens_per_s": banned_decode,
        "decode_ratio_same_logits_processors": artemis_decode / banned_decode,
        "artemis_prefill_s_per_plain_prefill_s": seconds["artemis_prefill"] / seconds["plain_prefill"],
    }


def training_figures(model, processor, source, track, batch_size: int, repeats: int) -> dict:
    items = []
    for row in range(batch_size):
        item, _ = processor.referring_item(
            source, "What is the <region> doing in this video?", [track], track.key_frame, answer=CAPTIONS[row % 3]
        )
        items.append(item)
    batch = processor.collate(items, side="right")
    extractor = VisionFeatureExtractor(model)
    frames = model.config.num_frames
    featured = []
    for item in items:
        pixels = torch.cat([item["pixel_values"], item["region_pixel_values"]])  # (T + K, 3, S, S)
        video, levels = extractor(pixels, range(len(item["pixel_values"])), range(frames, len(pixels)))
        rest = {k: v for k, v in item.items() if k not in ("pixel_values", "frame_mask", "region_pixel_values")}
        featured.append({**rest, "video_features": video, "region_hidden_states": levels})
    feature_batch = processor.collate(featured, side="right")

    model.vision_tower.requires_grad_(False)  # frozen, as in every published stage
    model.train()
    lm = model.language_model
    plain_ids = torch.randint(5, model.config.text_config.vocab_size, batch["input_ids"].shape)
    plain_batch = {"input_ids": plain_ids, "attention_mask": batch["attention_mask"], "labels": batch["labels"]}
    optimizers = {
        "artemis": torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6),
        "plain": torch.optim.AdamW(lm.parameters(), lr=1e-6),
    }

    def step(module: torch.nn.Module, inputs: dict, optimizer: torch.optim.Optimizer) -> Callable[[], object]:
        def run() -> object:
            optimizer.zero_grad(set_to_none=True)
            loss = module(**inputs).loss
            loss.backward()
            optimizer.step()
            return loss

        return run

    seconds = interleaved(
        {
            "artemis": step(model, dict(batch), optimizers["artemis"]),
            "artemis_features": step(model, dict(feature_batch), optimizers["artemis"]),
            "plain": step(lm, plain_batch, optimizers["plain"]),
        },
        repeats,
    )
    # Where the artemis step's forward time goes (two more steps, timed by hooks).
    timers = {name: HookTimer(getattr(model, name)) for name in ("vision_tower", "region_encoder", "language_model")}
    for _ in range(2):
        step(model, dict(batch), optimizers["artemis"])()
    forward = {f"artemis_forward_{name}_s": timer.seconds / 2 for name, timer in timers.items()}
    for timer in timers.values():
        timer.remove()
    model.eval()
    return {
        **forward,
        "batch_size": batch_size,
        "tokens_per_sample": batch["input_ids"].shape[1],
        "artemis_step_s": seconds["artemis"],
        "artemis_features_step_s": seconds["artemis_features"],
        "plain_step_s": seconds["plain"],
        "step_ratio": seconds["artemis"] / seconds["plain"],
        "step_ratio_with_features": seconds["artemis_features"] / seconds["plain"],
    }


def describe_figures(model, processor, source, track, new_tokens: int, repeats: int) -> dict:
    timers = {name: HookTimer(getattr(model, name)) for name in ("vision_tower", "region_encoder", "selector")}
    calls = []
    for _ in range(repeats + 1):
        for timer in timers.values():
            timer.seconds = 0.0
        started = time.perf_counter()
        answer(model, processor, source, [track], "What is the <region> doing in this video?", track.key_frame,
               max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # fmt: skip
        calls.append((time.perf_counter() - started, {name: t.seconds for name, t in timers.items()}))
    calls = calls[1:]  # the first call warms up
    describe = statistics.median(total for total, _ in calls)
    parts = {name: statistics.median(part[name] for _, part in calls) for name in timers}
    region_frames = model.config.num_region_frames
    region_vision = parts["vision_tower"] * region_frames / (model.config.num_frames + region_frames)
    region_path = region_vision + parts["region_encoder"] + parts["selector"]
    return {
        "describe_s": describe,
        "vision_s": parts["vision_tower"],
        "region_vision_s": region_vision,
        "region_encoder_s": parts["region_encoder"],
        "selector_s": parts["selector"],
        "region_path_s": region_path,
        "region_path_share": region_path / describe,
    }


def _fields(config: object, *names: str) -> dict:
    return {name: getattr(config, name) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (a smoke test)")
    parser.add_argument("--repeats", type=int, help="counted repeats per case (default 5; quick 2)")
    parser.add_argument("--new-tokens", type=int, help="generated tokens (default 64; quick 6)")
    parser.add_argument("--batch-size", type=int, help="training batch (default 4; quick 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (2 if args.quick else 5)
    new_tokens = args.new_tokens or (6 if args.quick else 64)
    batch_size = args.batch_size or (2 if args.quick else 4)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, processor = build(sizes)
    frames, width, height = sizes["video"]
    rng = np.random.default_rng(0)
    source = ArrayVideo(rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8))
    track = moving_track(frames, width, height)
    result = {
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "load_before": os.getloadavg()[0],
        "text_config": _fields(model.config.text_config, "hidden_size", "num_hidden_layers", "vocab_size"),
        "vision_config": _fields(model.config.vision_config, "hidden_size", "num_hidden_layers", "image_size"),
        "num_video_tokens": model.config.num_video_tokens,
        "num_region_tokens": model.config.num_region_tokens,
        "generation": generation_figures(model, processor, source, track, new_tokens, repeats),
        "training": training_figures(model, processor, source, track, batch_size, repeats),
        "describe": describe_figures(model, processor, source, track, new_tokens, repeats),
        "load_after": os.getloadavg()[0],
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
