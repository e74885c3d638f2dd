"""``artemis track``: propagate one box through a video and write the per-frame boxes as JSON.

artemis track clip.mp4 --box 10,20,110,220 --frame 12 --out track.json --viz track.mp4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from artemis.boxes import parse_box_arg
from artemis.io import check_writable, write_json_atomic
from artemis.track import DEFAULT_TRACKER, TRACKER_NAMES, track_video
from artemis.video import opened


def register(subparsers: Any) -> None:
    """Add the ``track`` sub-command to the ``artemis`` parser."""
    parser = subparsers.add_parser(
        "track",
        help="track a target from one box through a whole video",
        description=(
            "Track the target inside --box on frame --frame forward to the end and backward to frame 0. "
            "Writes JSON {num_frames, fps, width, height, key_frame, boxes: [[x1,y1,x2,y2] | null], visible, "
            "scores} with one entry per frame."
        ),
    )
    parser.add_argument("video", type=Path, help="video file or folder of frames")
    parser.add_argument("--box", required=True, help="target box in pixels of --frame: X1,Y1,X2,Y2 (or X,Y,W,H)")
    parser.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy", help="how --box is given")
    parser.add_argument("--frame", type=int, default=0, help="0-based index of the frame --box is on (default 0)")
    # 'given' needs annotations, which this command does not take.
    choices = [name for name in TRACKER_NAMES if name != "given"]
    parser.add_argument("--tracker", default=DEFAULT_TRACKER, help=f"one of {', '.join(choices)}")
    parser.add_argument("--stride", type=int, default=1, help="track every K-th frame, interpolate between")
    parser.add_argument("--max-side", type=int, default=None, help="downscale frames to at most PX on the longer side")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: stdout)")
    parser.add_argument("--viz", type=Path, default=None, help="also write the video with the box drawn (.mp4/.gif)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``artemis track`` with parsed ``args``; returns the exit code."""
    from artemis.video.draw import draw_track, write_video  # only needed with --viz

    box = parse_box_arg(args.box)
    for path, flag in ((args.out, "--out"), (args.viz, "--viz")):
        if path is not None:
            check_writable(path, flag)  # before the whole video is tracked
    with opened(args.video) as reader:
        track = track_video(
            reader,
            box,
            args.frame,
            tracker=args.tracker,
            box_format=args.box_format,
            stride=args.stride,
            max_side=args.max_side,
            progress=not args.no_progress,
        )
        data = track.to_json()
        if args.out is None:
            json.dump(data, sys.stdout)
            sys.stdout.write("\n")
        else:
            write_json_atomic(args.out, data)
        if args.viz is not None:
            frames = tqdm(
                draw_track(reader, track, labels="target"),
                total=track.num_frames,
                desc="drawing",
                unit="frame",
                disable=args.no_progress,
            )
            write_video(args.viz, frames, track.fps)
    return 0
