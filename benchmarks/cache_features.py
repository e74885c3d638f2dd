"""Training step time from raw videos, a frames cache and a features cache, measured side by side.

    python benchmarks/cache_features.py [--videos 8] [--steps 12] [--batch-size 2] [--frames 24]

Builds a SynthRef split and a tiny model, caches the split twice (frames; vision features), then runs the
same training steps (read the items, collate, forward, backward with the vision tower frozen as in every
published stage) from each source; the sources take turns step by step on the same rows. Prints one JSON
object: per-source median seconds per step (total, and its data part: reading and collating the items),
the ratios to the raw path, and the cache sizes and build times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from artemis.data import read
from artemis.data.cache import build_cache
from artemis.data.collator import ArtemisCollator
from artemis.data.entries import load_entries
from artemis.data.referring_dataset import ReferringDataset
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.model import build_tiny_model
from artemis.model.features import VisionFeatureExtractor


def _size(root: Path) -> int:
    return sum(path.stat().st_size for path in (root / "data").glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="steps per source per round")
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds (after one warm-up round)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames", type=int, default=24, help="frames per SynthRef video")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        split = generate_split(root / "synthref", args.videos, seed=0, config=SynthRefConfig(num_frames=args.frames))
        files = [("videoref45k", split.split_dir / "videoref45k.json")]
        texts = [s.caption for s in read(*files[0])]
        model, processor = build_tiny_model(texts, seed=0)
        model.vision_tower.requires_grad_(False)  # frozen, as in every published stage
        model.train()
        entries, _ = load_entries(files)
        raw = ReferringDataset(entries, processor, model.config, seed=0)

        started = time.perf_counter()
        build_cache(entries, root / "frames", raw.cache_settings())
        frames_seconds = time.perf_counter() - started
        extractor = VisionFeatureExtractor(model)
        started = time.perf_counter()
        settings = raw.cache_settings().with_features(model.config, extractor.fingerprint, "float32")
        build_cache(entries, root / "features", settings, extractor=extractor)
        features_seconds = time.perf_counter() - started

        sources = {
            "raw": raw,
            "frames_cache": ReferringDataset(entries, processor, model.config, seed=0, cache_dir=root / "frames"),
            "features_cache": ReferringDataset(
                entries, processor, model.config, seed=0, cache_dir=root / "features", model=model
            ),
        }
        collate = ArtemisCollator(processor, model.config)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
        totals: dict[str, list[float]] = {name: [] for name in sources}
        data: dict[str, list[float]] = {name: [] for name in sources}
        names = list(sources)
        # Interleaved step by step (same rows for every source, the order rotating), so the sources share
        # the machine's load; the first round warms up and is not counted.
        for step in range(args.steps * (args.rounds + 1)):
            rows = [(step * args.batch_size + i) % len(raw) for i in range(args.batch_size)]
            for name in names[step % 3 :] + names[: step % 3]:
                started = time.perf_counter()
                batch = collate([sources[name][row] for row in rows])
                loaded = time.perf_counter()
                optimizer.zero_grad()
                model(**batch).loss.backward()
                optimizer.step()
                done = time.perf_counter()
                if step >= args.steps:
                    totals[name].append(done - started)
                    data[name].append(loaded - started)
        result = {
            "setup": {
                "videos": args.videos,
                "frames_per_video": args.frames,
                "batch_size": args.batch_size,
                "steps_per_source": args.steps * args.rounds,
                "model": "tiny (CLIP 3 layers at 32 px, Llama 2 layers of width 64)",
                "threads": torch.get_num_threads(),
            },
            "seconds_per_step": {name: statistics.median(values) for name, values in totals.items()},
            "data_seconds_per_step": {name: statistics.median(values) for name, values in data.items()},
            "model_seconds_per_step": {  # forward + backward + optimizer step
                name: statistics.median(t - d for t, d in zip(totals[name], data[name], strict=True)) for name in totals
            },
            "cache": {
                "frames_mb": _size(root / "frames") / 1e6,
                "features_mb": _size(root / "features") / 1e6,
                "frames_build_seconds": frames_seconds,
                "features_build_seconds": features_seconds,
            },
        }
        raw_step = result["seconds_per_step"]["raw"]
        result["speedup_vs_raw"] = {name: raw_step / value for name, value in result["seconds_per_step"].items()}
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
