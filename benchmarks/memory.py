"""Peak memory of ``describe()``, ``track()`` and ``track_with_llm()``: short vs long video, key frame first vs last.

    python benchmarks/memory.py [--quick] [--model synthref-tiny] [--box-model DIR]

Builds a 250-frame and a 3,000-frame video from ``bikes.mp4`` (forward, then reversed, repeated), then
measures every case in a fresh subprocess that loads the model and makes one call with the default
tracker settings. The peak RSS of the call is Linux's ``VmHWM``, reset (``/proc/self/clear_refs``) once the
model is loaded, since loading peaks higher than a call does and would hide it in ``ru_maxrss``, which is
reported too. Prints one JSON object with each peak in MB and the differences that must stay small: long
minus short, key frame last minus first. ``--quick`` uses 40
and 300 frames (for the test).

``track_with_llm`` (the LLM writes the box on every frame, clip by clip, generating between reads) runs a
box-output model: ``--box-model DIR``, or by default a tiny random one built from config (its memory does
not depend on its training; an untrained model writes whatever it writes, up to the same token limit).
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

CALLS = ("describe", "track", "track_with_llm")


def tiny_box_model(directory: Path) -> Path:
    """Save a tiny random box-output model (per-frame tokens, ``tasks=["boxes"]``) in ``directory``."""
    from artemis.model import build_tiny_model

    model, processor = build_tiny_model(seed=0, video_layout="frames", frame_pool_size=2, tasks=["boxes"])
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


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
    elif call == "track":
        pipeline.track(video, BIKES_BOX, frame)
    else:
        pipeline.track_with_llm(video, box=BIKES_BOX, frame_index=frame)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    call_peak = int(status["VmHWM"].split()[0]) / 1024  # kB
    print(json.dumps({"call": call_peak, "process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs: checks the script, measures little")
    parser.add_argument("--model", default="synthref-tiny")
    parser.add_argument("--box-model", help="a box-output model for track_with_llm (default: a tiny random one)")
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
        box_model = args.box_model or str(tiny_box_model(Path(tmp) / "box-model"))
        result["box_model"] = args.box_model or "tiny random (built from config)"
        peaks: dict[str, float] = {}
        process_peaks: dict[str, float] = {}
        for call in CALLS:
            model = box_model if call == "track_with_llm" else args.model
            for name, video in videos.items():
                for key in ("first", "last"):
                    command = [sys.executable, __file__, "--model", model, "--case", call, str(video), key]
                    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                    measured = json.loads(output.strip().splitlines()[-1])
                    peaks[f"{call}_{name}_key_{key}"] = round(measured["call"], 1)
                    process_peaks[f"{call}_{name}_key_{key}"] = round(measured["process"], 1)
        result["peak_rss_mb"] = peaks
        result["process_peak_rss_mb"] = process_peaks
        result["long_minus_short_mb"] = {
            f"{call}_key_{key}": round(peaks[f"{call}_long_key_{key}"] - peaks[f"{call}_short_key_{key}"], 1)
            for call in CALLS
            for key in ("first", "last")
        }
        result["key_last_minus_first_mb"] = {
            f"{call}_{name}": round(peaks[f"{call}_{name}_key_last"] - peaks[f"{call}_{name}_key_first"], 1)
            for call in CALLS
            for name in lengths
        }
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
