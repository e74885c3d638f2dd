"""Quality of a SynthRef model on a held-out split: attributes, the two controls, and k-means vs uniform.

    python benchmarks/synthref_quality.py [--model synthref-tiny] [--data DIR] [--out DIR] [--videos 100]

Generates a fresh SynthRef test split (unless ``--data`` names one), then runs ``artemis eval synthref``
twice on it — with the model's k-means selector and with the uniform selector switched in at inference,
the same weights otherwise — and prints one JSON object: both runs' metrics, the chance joint accuracy,
and the k-means / uniform ratios. Each run resumes from its ``--out`` folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from artemis.eval.synthref_run import SYNTHREF_KEYS

KEYS = SYNTHREF_KEYS[:6]  # the accuracies (the rest are counts)


def _artemis(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "artemis.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"artemis {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synthref-tiny", help="model directory or bundled name")
    parser.add_argument("--data", type=Path, help="a SynthRef split folder (default: generate a test split)")
    parser.add_argument("--out", type=Path, help="where the evaluation runs go (default: a temporary folder)")
    parser.add_argument("--videos", type=int, default=100, help="videos of the generated test split")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated test split")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="synthref-quality-"))
    data = args.data
    if data is None:
        _artemis("data", "synthref", "--out", str(out / "data"), "--num-videos", str(args.videos),
                 "--seed", str(args.seed), "--split", "test")  # fmt: skip
        data = out / "data" / "test"
    runs = {}
    for selector in ("kmeans", "uniform"):
        _artemis("eval", "synthref", "--model", args.model, "--data", str(data),
                 "--out", str(out / selector), "--selector", selector, "--json")  # fmt: skip
        runs[selector] = json.loads((out / selector / "metrics.json").read_text())
    chance = runs["kmeans"]["chance_joint_accuracy"]
    report = {
        "model": args.model,
        "data": str(data),
        "num_samples": runs["kmeans"]["num_samples"],
        "chance_joint_accuracy": chance,
        "kmeans": {key: runs["kmeans"][key] for key in KEYS},
        "uniform": {key: runs["uniform"][key] for key in KEYS},
        "kmeans_over_uniform": {
            key: (runs["kmeans"][key] / runs["uniform"][key] if runs["uniform"][key] else None) for key in KEYS
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
