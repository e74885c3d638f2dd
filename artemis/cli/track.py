"""``artemis track``: propagate one box through a video and write the per-frame boxes as JSON.

artemis track clip.mp4 --box 10,20,110,220 --frame 12 --out track.json --viz track.mp4
artemis track clip.mp4 --box 10,20,110,220 --frame 12 --by-model --model DIR   # the LLM writes the boxes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from artemis.boxes import parse_box_arg
from artemis.cli.args import announce_model, stride_arg
from artemis.errors import ConfigError
from artemis.io import check_writable, write_json_atomic
from artemis.model.loading import DEFAULT_BOX_MODEL, DEFAULT_MODEL, bundled_models, load_config, resolve_model_dir
from artemis.tasks.box_output import BoxOutTrack, require_task
from artemis.track import DEFAULT_TRACKER, TRACKER_NAMES, Track, track_video
from artemis.video import VideoSource, opened


def register(subparsers: Any) -> None:
    """Add the ``track`` sub-command to the ``artemis`` parser."""
    parser = subparsers.add_parser(
        "track",
        help="track a target from one box through a whole video",
        description=(
            "Track the target inside --box on frame --frame forward to the end and backward to frame 0. "
            "Writes JSON {num_frames, fps, width, height, key_frame, boxes: [[x1,y1,x2,y2] | null], visible, "
            "scores} with one entry per frame. With --by-model the model writes the boxes (Elysium SOT) and "
            "the JSON adds status, num_unparsed, num_invalid, texts, clips and asked (no scores)."
        ),
    )
    parser.add_argument("video", type=Path, help="video file or folder of frames")
    parser.add_argument("--box", required=True, help="target box in pixels of --frame: X1,Y1,X2,Y2 (or X,Y,W,H)")
    parser.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy", help="how --box is given")
    parser.add_argument("--frame", type=int, default=0, help="0-based index of the frame --box is on (default 0)")
    # 'given' needs annotations, which this command does not take.
    choices = [name for name in TRACKER_NAMES if name != "given"]
    parser.add_argument("--tracker", default=DEFAULT_TRACKER, help=f"one of {', '.join(choices)}")
    parser.add_argument(
        "--stride", type=stride_arg, default=1, help="track every K-th frame, interpolate between; or 'auto'"
    )
    parser.add_argument("--max-side", type=int, default=None, help="downscale frames to at most PX on the longer side")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: stdout)")
    parser.add_argument("--viz", type=Path, default=None, help="also write the video with the box drawn (.mp4/.gif)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    box_output = parser.add_argument_group("box output (the model writes the boxes)")
    box_output.add_argument("--by-model", action="store_true", help="the model writes the box on every frame")
    add_box_model_arguments(box_output)
    parser.set_defaults(func=run)


VIEWS_HELP = (
    "ask each clip in N views (the frames, their mirror, then slightly larger canvases), keep the box most "
    "views agree on (default 1: once; docs/box_output.md)"
)


def add_box_model_arguments(parser: Any) -> None:
    """``--model``, ``--max-new-tokens`` and ``--device``: the options of a command whose model writes boxes."""
    parser.add_argument(
        "--model", default=None, help=f"model trained to write boxes (default: the bundled {DEFAULT_BOX_MODEL})"
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="tokens per clip (default 24 per frame)")
    parser.add_argument(
        "--views",
        type=int,
        default=None,
        help=VIEWS_HELP,
    )
    parser.add_argument("--device", default="cpu", help="where the model runs (default cpu)")


def box_model_dir(name: str | None) -> Path:
    """The checkpoint that writes the boxes: ``name``, else the bundled :data:`DEFAULT_BOX_MODEL`.

    Checked from its ``config.json`` alone, before any weights are read.

    Raises:
        ConfigError: no model named and no bundled box model, or a model not trained to write boxes.
        CheckpointError: ``name`` is neither a directory nor a bundled model.
    """
    if name is None:
        if DEFAULT_BOX_MODEL not in bundled_models():
            raise ConfigError(
                f"no bundled model writes boxes yet ({DEFAULT_BOX_MODEL!r} is not installed; {DEFAULT_MODEL!r} only "
                "describes); pass --model DIR, a checkpoint trained with tasks: [describe, boxes]"
            )
        name = DEFAULT_BOX_MODEL
    directory = resolve_model_dir(name)
    require_task(load_config(directory), "boxes", f"model {name!r}")
    return directory


def load_box_model(args: argparse.Namespace, command: str) -> Any:
    """The :class:`~artemis.api.ArtemisModel` of ``--model`` (or the bundled box model), said once on stderr."""
    from artemis.api import ArtemisModel

    model = ArtemisModel.from_pretrained(box_model_dir(args.model), device=args.device, log_card=False)
    announce_model(command, model.card)
    return model


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--max-new-tokens`` and ``--views`` as box-output options; not given keeps their defaults."""
    options = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    if args.views is not None:
        options["views"] = args.views
    return options


def check_outputs(args: argparse.Namespace) -> None:
    """``--out`` and ``--viz`` must be writable before the work starts."""
    for path, flag in ((args.out, "--out"), (args.viz, "--viz")):
        if path is not None:
            check_writable(path, flag)


def write_outputs(
    args: argparse.Namespace, reader: VideoSource, track: Track, label: str, caption: str | None = None
) -> None:
    """The track's JSON to ``--out`` (stdout without it); with ``--viz``, the video with the box drawn."""
    from artemis.video.draw import draw_track, write_video  # only needed with --viz

    data = track.to_json()
    if args.out is None:
        json.dump(data, sys.stdout)
        sys.stdout.write("\n")
    else:
        write_json_atomic(args.out, data)
    if args.viz is not None:
        frames = tqdm(
            draw_track(reader, track, labels=label, captions=caption),
            total=track.num_frames,
            desc="drawing",
            unit="frame",
            disable=args.no_progress,
        )
        write_video(args.viz, frames, track.fps)


def report_box_output(command: str, track: BoxOutTrack) -> None:
    """One line on stderr: where the model found the target and how many frames it left unread."""
    print(
        f"artemis {command}: the model's box read on {track.num_predicted}/{track.num_frames} frames from "
        f"{len(track.texts)} clips; {track.num_unparsed} unparsed (the latest box before carried), "
        f"{track.num_invalid} invalid",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``artemis track`` with parsed ``args``; returns the exit code."""
    box = parse_box_arg(args.box)
    check_outputs(args)  # before the whole video is tracked
    model = load_box_model(args, "track") if args.by_model else None
    if model is None and (args.model is not None or args.max_new_tokens is not None or args.views is not None):
        raise ConfigError("--model, --max-new-tokens and --views set the model that writes boxes; add --by-model")
    with opened(args.video) as reader:
        if model is not None:
            track = model.track_with_llm(
                reader,
                box,
                args.frame,
                box_format=args.box_format,
                progress=not args.no_progress,
                **generation_options(args),
            )
            report_box_output("track", track)
        else:
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
        write_outputs(args, reader, track, "model" if model is not None else "target")
    return 0
