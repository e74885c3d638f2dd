"""Peak memory of ``describe()`` and ``track()``: short vs long video, key frame first vs last.

    python benchmarks/memory.py [--quick] [--model synthref-tiny]

Builds a 250-frame and a 3,000-frame video from ``bikes.mp4`` (forward, then reversed, repeated), then
measures every case in a fresh subprocess that loads the model and makes one call with the default
tracker settings. The peak RSS of the call is Linux's ``VmHWM``, reset (``/proc/self/clear_refs``) once the
model is loaded, since loading peaks higher than a call does and would hide it in ``ru_maxrss``, which is
reported too. Prints one JSON object with each peak in MB and the differences that must stay small: long
minus short, key frame last minus first. ``--quick`` uses 40
and 300 frames (for the test).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from describe_speed import BIKES_BOX, REFERENCE, make_long_video


def measure(call: str, video: str, key: str, model: str) -> None:
    """In this (fresh) process: load the model, make one call, print the call's and the process's peak RSS (MB)."""
    from artemis.api import ArtemisModel
    from artemis.video import VideoReader

    pipeline = ArtemisModel.from_pretrained(model)
    with VideoReader(video) as reader:
        frame = 0 if key == "first" else reader.num_frames - 1
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    if call == "describe":
        pipeline.describe(video, BIKES_BOX, frame, max_new_tokens=16)
    else:
        pipeline.track(video, BIKES_BOX, frame)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    call_peak = int(status["VmHWM"].split()[0]) / 1024  # kB
    print(json.dumps({"call": call_peak, "process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs: checks the script, measures little")
    parser.add_argument("--model", default="synthref-tiny")
    parser.add_argument("--case", nargs=3, metavar=("CALL", "VIDEO", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        measure(*args.case, args.model)
        return

    bikes = REFERENCE / "videos" / "bikes.mp4"
    lengths = {"short": 40, "long": 300} if args.quick else {"short": 250, "long": 3000}
    result: dict = {"quick": args.quick, "frames": lengths}
    with tempfile.TemporaryDirectory() as tmp:
        videos = {name: make_long_video(bikes, Path(tmp) / f"{name}.mp4", n) for name, n in lengths.items()}
        peaks: dict[str, float] = {}
        process_peaks: dict[str, float] = {}
        for call in ("describe", "track"):
            for name, video in videos.items():
                for key in ("first", "last"):
                    command = [sys.executable, __file__, "--model", args.model, "--case", call, str(video), key]
                    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                    measured = json.loads(output.strip().splitlines()[-1])
                    peaks[f"{call}_{name}_key_{key}"] = round(measured["call"], 1)
                    process_peaks[f"{call}_{name}_key_{key}"] = round(measured["process"], 1)
        result["peak_rss_mb"] = peaks
        result["process_peak_rss_mb"] = process_peaks
        result["long_minus_short_mb"] = {
            f"{call}_key_{key}": round(peaks[f"{call}_long_key_{key}"] - peaks[f"{call}_short_key_{key}"], 1)
            for call in ("describe", "track")
            for key in ("first", "last")
        }
        result["key_last_minus_first_mb"] = {
            f"{call}_{name}": round(peaks[f"{call}_{name}_key_last"] - peaks[f"{call}_{name}_key_first"], 1)
            for call in ("describe", "track")
            for name in lengths
        }
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
