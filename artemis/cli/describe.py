"""``artemis describe``: track a target from one box and describe it (or answer a question about it)."""

from __future__ import annotations

import argparse
import json
import sys

from artemis.boxes import parse_box_arg
from artemis.cli.args import add_tracker_arguments, announce_model, tracker_settings
from artemis.model.loading import DEFAULT_MODEL


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "describe",
        help="describe the target in a box across a video",
        description="Track the target in BOX (pixels on frame N) through VIDEO and describe it with a model.",
    )
    parser.add_argument("video", help="video file or folder of frames")
    parser.add_argument("--box", required=True, help="X1,Y1,X2,Y2 in pixels of --frame")
    parser.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy")
    parser.add_argument("--frame", type=int, default=0, help="0-based frame the box is on (default 0)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model directory (default: {DEFAULT_MODEL})")
    parser.add_argument("--question", default=None, help="a question about the target; name it <region>")
    add_tracker_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from artemis.api import ArtemisModel

    box = parse_box_arg(args.box)  # a malformed box is one line (BoxError) before the model loads
    model = ArtemisModel.from_pretrained(
        args.model, device=args.device, tracker=args.tracker, log_card=False, **tracker_settings(args)
    )
    announce_model("describe", model.card)
    result = model.describe(
        args.video,
        box,
        args.frame,
        args.question,
        box_format=args.box_format,
        progress=sys.stderr.isatty(),
        max_new_tokens=args.max_new_tokens,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        visible = int(result.track.visible.sum())
        print(result.text)
        print(f"(target visible on {visible}/{result.track.num_frames} frames)", file=sys.stderr)
    return 0
