"""Speed of ``describe()`` in source frames per second, and what the tracker settings cost in accuracy.

    python benchmarks/describe_speed.py [--quick] [--table] [--model synthref-tiny]

Measures, side by side in one process, ``describe()`` with the default tracker settings (the median of
``--repeats`` calls) and with the old full-rate ones (OpenCV's CSRT on every frame at full resolution,
passes one after the other, one call) on ``bikes.mp4`` and on a
>= 3,000-frame video built from it (bikes forward then reversed, repeated, written to a temp folder); the
success AUC of both settings on OTB Crossing and on a generated SynthRef test split (each target tracked
from its key frame, scored forward and backward from it). ``--table`` adds the stride x max_side x
parallel sweep of docs/tracking.md. ``--quick`` uses tiny inputs (for the test). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from artemis.boxes import otb_to_xyxy, xyxy_to_otb
from artemis.eval.tracking import read_boxes_file, score_dataset, score_sequence
from artemis.track import track_video
from artemis.video import VideoReader

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
BIKES_BOX = (300, 100, 360, 200)  # a cyclist on frame 0 of bikes.mp4, pixel xyxy
FULL_RATE = {"tracker": "opencv-csrt", "stride": 1, "max_side": None, "parallel": False}  # OpenCV's own CSRT


def make_long_video(source: Path, out: Path, min_frames: int) -> Path:
    """``source`` forward, then reversed, repeated until ``min_frames``, written as mp4v ``out``."""
    with VideoReader(source) as reader:
        frames = reader.get_frames(range(reader.num_frames))  # (T, H, W, 3)
        fps = reader.fps
    cycle = np.concatenate([frames, frames[::-1]])  # (2T, H, W, 3)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    written = 0
    while written < min_frames:
        for frame in cycle[: min_frames - written]:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            written += 1
    writer.release()
    return out


def otb_auc(settings: dict[str, Any], num_frames: int | None = None) -> float:
    """Success AUC (LaSOT protocol) on OTB Crossing, tracked from the first ground-truth box."""
    folder = REFERENCE / "otb_crossing"
    gt = read_boxes_file(folder / "groundtruth_rect.txt")[:num_frames]  # (N, 4) 1-based xywh
    with VideoReader(folder / "img") as reader:
        frames = reader.get_frames(range(len(gt)))
    track = track_video(frames, otb_to_xyxy(gt[0]), 0, **settings)
    return float(score_sequence(xyxy_to_otb(track.boxes), gt).success_auc)


def synthref_split(out: Path, num_videos: int, seed: int) -> Path:
    from artemis.data import generate_split

    return generate_split(out, num_videos, seed=seed, split="test").split_dir


def synthref_auc(split_dir: Path, settings: dict[str, Any]) -> tuple[float, int]:
    """Mean over targets of the success AUC from each target's key frame (forward and reversed backward)."""
    manifest = json.loads((split_dir / "manifest.json").read_text())
    aucs = []
    for video in manifest["videos"]:
        with VideoReader(split_dir / video["video"]) as reader:
            frames = reader.get_frames(range(reader.num_frames))
        for target in video["objects"]:
            key, boxes = target["key_frame_id"], target["boxes"]
            track = track_video(frames, boxes[key], key, **settings)
            truth = np.array([b if b else [np.nan] * 4 for b in boxes], dtype=np.float64)  # (T, 4)
            absent = ~np.isfinite(truth).all(axis=1)
            gt = xyxy_to_otb(np.nan_to_num(truth))
            pred = xyxy_to_otb(track.boxes)
            runs = [
                (pred[key:], gt[key:], absent[key:]),
                (pred[: key + 1][::-1], gt[: key + 1][::-1], absent[: key + 1][::-1]),
            ]
            aucs.append(score_dataset([r for r in runs if len(r[0]) > 1]).success_auc)
    return float(np.mean(aucs)), len(aucs)


def describe_fps(model: Any, video: Path, settings: dict[str, Any], frame_index: int = 0) -> float:
    """Source frames per second of one ``describe()`` with ``settings`` as the model's tracker settings."""
    original = model.track

    def track(source: Any, box: Any, key: int, **_: Any) -> Any:  # passes `parallel`, for the full-rate baseline
        return track_video(source, box, key, **settings)

    model.track = track
    try:
        with VideoReader(video) as reader:
            num_frames = reader.num_frames
        started = time.perf_counter()
        model.describe(str(video), BIKES_BOX, frame_index, max_new_tokens=16)
        return num_frames / (time.perf_counter() - started)
    finally:
        model.track = original


def tracking_fps(video: Path, settings: dict[str, Any], frame_index: int) -> float:
    with VideoReader(video) as reader:
        started = time.perf_counter()
        track_video(reader, BIKES_BOX, frame_index, **settings)
        return reader.num_frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs: checks the script, measures nothing")
    parser.add_argument("--table", action="store_true", help="also sweep stride x max_side x parallel")
    parser.add_argument("--model", default="synthref-tiny")
    parser.add_argument("--seed", type=int, default=2024, help="SynthRef test split seed")
    parser.add_argument("--repeats", type=int, default=3, help="describe() calls per video at the defaults (median)")
    args = parser.parse_args()

    from artemis.api import ArtemisModel
    from artemis.tasks.pipeline import VideoPipeline

    defaults = VideoPipeline.__init__.__kwdefaults__
    default = {
        "tracker": defaults["tracker"],
        "stride": defaults["track_stride"],
        "max_side": defaults["track_max_side"],
        "parallel": True,
    }
    bikes = REFERENCE / "videos" / "bikes.mp4"
    result: dict[str, Any] = {"quick": args.quick, "default_settings": default, "full_rate_settings": FULL_RATE}
    with tempfile.TemporaryDirectory() as tmp:
        long_video = make_long_video(bikes, Path(tmp) / "long.mp4", 300 if args.quick else 3000)
        split = synthref_split(Path(tmp) / "synthref", 2 if args.quick else 40, args.seed)
        model = ArtemisModel.from_pretrained(args.model)
        model.describe(str(bikes), BIKES_BOX, 0, max_new_tokens=16)  # warm up torch and the decoders
        videos = {"bikes": bikes, "long": long_video}
        for name, video in videos.items():
            with VideoReader(video) as reader:
                result[f"{name}_frames"] = reader.num_frames
            fast = float(np.median([describe_fps(model, video, default) for _ in range(args.repeats)]))
            full = describe_fps(model, video, FULL_RATE)
            result[f"{name}_describe_fps_default"] = round(fast, 1)
            result[f"{name}_describe_fps_full_rate"] = round(full, 1)
            result[f"{name}_speedup"] = round(fast / full, 2)
        otb_frames = 30 if args.quick else None
        result["otb_auc_default"] = round(otb_auc(default, otb_frames), 4)
        result["otb_auc_full_rate"] = round(otb_auc(FULL_RATE, otb_frames), 4)
        auc_default, targets = synthref_auc(split, default)
        auc_full, _ = synthref_auc(split, FULL_RATE)
        result.update(
            synthref_seed=args.seed,
            synthref_targets=targets,
            synthref_auc_default=round(auc_default, 4),
            synthref_auc_full_rate=round(auc_full, 4),
            synthref_auc_drop=round(auc_full - auc_default, 4),
        )
        if args.table:
            result["table"] = sweep(bikes, split, otb_frames)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    json.dump(result, sys.stdout)
    print()


def sweep(video: Path, split: Path, otb_frames: int | None) -> list[dict[str, Any]]:
    """Tracking speed on ``video`` (key frame in the middle, so both passes run) and AUCs, per setting.

    Boxes do not depend on ``parallel``, and a ``max_side`` above a video's longer side changes nothing, so
    each AUC is computed once per setting that can change it.
    """
    with VideoReader(video) as reader:
        middle = reader.num_frames // 2
    otb_cache: dict[tuple[str, int, int | None], float] = {}
    synth_cache: dict[tuple[str, int], float] = {}
    rows = []
    for tracker in ("opencv-csrt", "opencv-csrt-fast"):
        for stride in (1, 2, 4, 8):
            for max_side in (None, 480, 320, 240):
                # Crossing is 360x240: a max_side of 360 or more leaves it as it is.
                otb_key = (tracker, stride, max_side if max_side is not None and max_side < 360 else None)
                if otb_key not in otb_cache:
                    otb_settings = {"tracker": tracker, "stride": stride, "max_side": otb_key[2]}
                    otb_cache[otb_key] = otb_auc(otb_settings, otb_frames)
                if (tracker, stride) not in synth_cache:  # SynthRef frames (128x128) are below every max_side
                    synth_cache[tracker, stride] = synthref_auc(split, {"tracker": tracker, "stride": stride})[0]
                row: dict[str, Any] = {"tracker": tracker, "stride": stride, "max_side": max_side}
                for parallel in (False, True):
                    settings = {"tracker": tracker, "stride": stride, "max_side": max_side, "parallel": parallel}
                    row["track_fps_parallel" if parallel else "track_fps_sequential"] = round(
                        tracking_fps(video, settings, middle), 1
                    )
                row.update(otb_auc=round(otb_cache[otb_key], 4), synthref_auc=round(synth_cache[tracker, stride], 4))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    main()
