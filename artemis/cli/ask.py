"""``artemis ask``: a question about one or several regions, each a box or a mask on a frame of its own.

>>> artemis ask bikes.mp4 --box 280,100,360,170@10 --box 20,20,120,120@200 \\
...     --question "Is <region> left of <region>?"
"""

from __future__ import annotations

import argparse
import json
import sys

from artemis.cli.args import add_tracker_arguments, announce_model, tracker_settings
from artemis.errors import BoxError
from artemis.model.loading import DEFAULT_MODEL
from artemis.regions import Region, parse_region_arg


class _RegionAction(argparse.Action):
    """Collect ``--box`` and ``--mask`` values in the order given (the order the question names them)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        kind = "box" if option_string == "--box" else "mask"
        regions = list(getattr(namespace, self.dest, None) or [])
        regions.append((kind, values))
        setattr(namespace, self.dest, regions)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="ask about one or several regions (boxes or masks, each on its own frame)",
        description=(
            "Track each region from its own frame through VIDEO (all in one pass) and answer QUESTION, which "
            "names the regions with <region>, one per --box/--mask in the order given."
        ),
    )
    parser.add_argument("video", help="video file or folder of frames")
    parser.add_argument(
        "--box", dest="regions", action=_RegionAction, metavar="X1,Y1,X2,Y2@FRAME",
        help="a region's box in pixels on 0-based FRAME (default frame 0); repeat for several regions",
    )  # fmt: skip
    parser.add_argument(
        "--mask", dest="regions", action=_RegionAction, metavar="MASK.png@FRAME",
        help="a region's mask (a PNG whose non-zero pixels mark it, of the video's size) on FRAME",
    )  # fmt: skip
    parser.add_argument("--question", required=True, help="the question; name the regions <region>, in order")
    parser.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model directory (default: {DEFAULT_MODEL})")
    add_tracker_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run, regions=None)


def parse_regions(given: list[tuple[str, str]] | None) -> list[Region]:
    """The ``--box`` / ``--mask`` values as regions (a malformed one is one clear error)."""
    if not given:
        raise BoxError("give at least one region: --box X1,Y1,X2,Y2@FRAME or --mask MASK.png@FRAME")
    return [parse_region_arg(text, kind) for kind, text in given]


def run(args: argparse.Namespace) -> int:
    from artemis.api import ArtemisModel

    regions = parse_regions(args.regions)  # before the model loads: a bad value costs nothing
    model = ArtemisModel.from_pretrained(
        args.model, device=args.device, tracker=args.tracker, log_card=False, **tracker_settings(args)
    )
    announce_model("ask", model.card)
    result = model.ask(
        args.video,
        regions=regions,
        question=args.question,
        box_format=args.box_format,
        progress=sys.stderr.isatty(),
        max_new_tokens=args.max_new_tokens,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.text)
        seen = ", ".join(f"region{i + 1} {int(t.visible.sum())}" for i, t in enumerate(result.tracks))
        print(f"(frames visible of {result.tracks[0].num_frames}: {seen})", file=sys.stderr)
    return 0
