"""Batch inference and sharded evaluation: describe one by one against ``describe_batch``, and
``artemis eval synthref`` on one process against two (``torchrun``).

    python benchmarks/batch.py [--quick] [--videos 8] [--batch-size 8] [--repeats 3]

Generates a SynthRef test split and runs the bundled ``synthref-tiny`` model on it, nothing downloaded:

* describe: every object of the split described from its exact boxes (no tracker), with ``describe``
  one request at a time and with ``describe_batch`` ``--batch-size`` requests per generate call; the two
  take turns repeat by repeat (medians); the texts must be equal;
* eval: ``artemis eval synthref --no-controls`` over the split, as one process (with every core's
  threads, and with one thread) and as ``torchrun --nproc-per-node 2`` (one thread each), fresh output
  directories each time, the launches taking turns. Wall time per launch includes start-up and model
  loading; each launch is also run on one object per process (``*_startup_s``), and ``*_running_*``
  figures count only the objects past those over the time they added.

Prints one JSON object with the figures and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from artemis import ArtemisModel
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.eval.synthref import load_targets
from artemis.tasks.pipeline import DescribeRequest
from artemis.track import Track

QUESTION = "What is the <region> doing in this video?"


def describe_figures(model: ArtemisModel, split: Path, batch_size: int, new_tokens: int, repeats: int) -> dict:
    targets, _ = load_targets(split)
    requests = [
        DescribeRequest(
            t.video,
            t.boxes[t.key_frame_id],
            t.key_frame_id,
            track=Track.from_boxes(list(t.boxes), key_frame=t.key_frame_id),
        )
        for t in targets
    ]

    def one_by_one() -> list[str]:
        return [
            model.describe(r.video, r.box, r.frame_index, track=r.track, max_new_tokens=new_tokens).text
            for r in requests
        ]

    def batched() -> list[str]:
        return [d.text for d in model.describe_batch(requests, batch_size=batch_size, max_new_tokens=new_tokens)]

    texts = {"single": one_by_one(), "batch": batched()}  # warm-up; the texts must agree
    times: dict[str, list[float]] = {"single": [], "batch": []}
    for repeat in range(repeats):
        for name in ("single", "batch") if repeat % 2 == 0 else ("batch", "single"):
            started = time.perf_counter()
            (one_by_one if name == "single" else batched)()
            times[name].append(time.perf_counter() - started)
    single, batch = (statistics.median(times[name]) for name in ("single", "batch"))
    return {
        "num_requests": len(requests),
        "batch_size": batch_size,
        "max_new_tokens": new_tokens,
        "texts_equal": texts["single"] == texts["batch"],
        "num_texts_differing": sum(a != b for a, b in zip(texts["single"], texts["batch"], strict=True)),
        "single_s": single,
        "batch_s": batch,
        "single_requests_per_s": len(requests) / single,
        "batch_requests_per_s": len(requests) / batch,
        "speedup": single / batch,
    }


def _launch(split: Path, out: Path, processes: int, threads: int, new_tokens: int, limit: int | None) -> float:
    argv = ["-m", "artemis.cli", "eval", "synthref", "--data", str(split), "--out", str(out), "--no-controls"]
    argv += ["--max-new-tokens", str(new_tokens), "--json"] + (["--limit", str(limit)] if limit else [])
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        command += argv
    else:
        command = [sys.executable, *argv]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{run.stderr[-2000:]}")
    return seconds


def eval_figures(split: Path, work: Path, new_tokens: int, repeats: int) -> dict:
    count = len(load_targets(split)[0])
    cores = os.cpu_count() or 1
    launches = {"one_process": (1, cores), "one_process_one_thread": (1, 1), "two_processes": (2, 1)}
    times: dict[str, list[float]] = {name: [] for name in launches}
    startup: dict[str, list[float]] = {name: [] for name in launches}
    lines: dict[str, list[str]] = {}
    names = list(launches)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            processes, threads = launches[name]
            out = work / f"{name}-{repeat}"
            times[name].append(_launch(split, out, processes, threads, new_tokens, None))
            lines[name] = (out / "predictions.jsonl").read_text().splitlines()
            # The same launch over one object per process: start-up, model loading, merging.
            startup[name].append(
                _launch(split, work / f"{name}-start-{repeat}", processes, threads, new_tokens, processes)
            )
    seconds = {name: statistics.median(values) for name, values in times.items()}
    start = {name: statistics.median(values) for name, values in startup.items()}
    # Samples per second once running: the objects past the first per process over the time they added.
    marginal = {
        name: (count - launches[name][0]) / (seconds[name] - start[name]) if seconds[name] > start[name] else None
        for name in launches
    }
    return {
        "num_samples": count,
        "cores": cores,
        "max_new_tokens": new_tokens,
        # Same threads per process: the sharded run must write the one-process file. Across thread counts
        # float rounding may differ, which k-means' tie-breaking can turn into another word.
        "predictions_equal": lines["two_processes"] == lines["one_process_one_thread"],
        "predictions_equal_all_launches": len({tuple(v) for v in lines.values()}) == 1,
        **{f"{name}_s": value for name, value in seconds.items()},
        **{f"{name}_startup_s": value for name, value in start.items()},
        **{f"{name}_samples_per_s": count / value for name, value in seconds.items()},
        **{f"{name}_running_samples_per_s": value for name, value in marginal.items()},
        "two_processes_speedup": seconds["one_process"] / seconds["two_processes"],
        "two_processes_running_speedup": marginal["two_processes"] / marginal["one_process"]
        if marginal["two_processes"] and marginal["one_process"]
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny split, one repeat (a smoke test)")
    parser.add_argument("--videos", type=int, help="SynthRef videos (default 8; quick 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per describe_batch generate call")
    parser.add_argument("--new-tokens", type=int, default=24, help="max new tokens per description")
    parser.add_argument("--repeats", type=int, help="counted repeats (default 3; quick 1)")
    args = parser.parse_args()
    videos = args.videos or (2 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 3)
    config = SynthRefConfig(num_frames=8 if args.quick else 24, min_objects=2, max_objects=2 if args.quick else 4)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split = generate_split(work / "synthref", videos, seed=11, split="test", config=config).split_dir
        model = ArtemisModel.from_pretrained("synthref-tiny")
        result = {
            "quick": args.quick,
            "threads": torch.get_num_threads(),
            "load_before": load_before,
            "model": model.card.name,
            "describe": describe_figures(model, split, args.batch_size, args.new_tokens, repeats),
            "eval": eval_figures(split, work, args.new_tokens, repeats),
            "load_after": os.getloadavg()[0],
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
