"""``artemis data ...``: generate SynthRef, convert and validate annotations.

artemis data synthref --out DIR --num-videos N --seed S [--split train|val|test] [--size W,H]
                      [--frames T] [--frame-folders]
artemis data convert --from FORMAT --to FORMAT IN OUT
artemis data validate --format FORMAT PATH [--check-files]
artemis data cache --data FORMAT:PATH [--data ...] --model DIR_OR_CONFIG --out DIR
                   [--shard-index I --num-shards N] [--tracker NAME|none] [--max-region-candidates M]
                   [--bad-records raise|skip] [--features [--feature-dtype float32|float16|bfloat16]
                   [--device DEVICE] [--feature-batch-size N]]
"""

from __future__ import annotations

import argparse
import sys

from artemis.data import formats
from artemis.errors import ConfigError


def _size(text: str) -> tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not W,H; expected two integers such as 128,128") from None
    return width, height


def _data_source(text: str) -> tuple[str, str]:
    name, sep, path = text.partition(":")
    if not sep or not path or name not in formats.FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not FORMAT:PATH; expected e.g. videoref45k:data/train/videoref45k.json with FORMAT one of "
            f"{', '.join(formats.FORMATS)}"
        )
    return name, path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` and its sub-commands to the ``artemis`` parser."""
    parser = subparsers.add_parser("data", help="generate SynthRef, convert and validate annotations")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    synth = commands.add_parser("synthref", help="generate a split of the SynthRef referential video data")
    synth.add_argument("--out", required=True, help="output root; the split goes to OUT/<split>/")
    synth.add_argument("--num-videos", type=int, required=True, help="number of videos")
    synth.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    synth.add_argument("--split", choices=("train", "val", "test"), default="train")
    synth.add_argument("--size", type=_size, default=(128, 128), metavar="W,H", help="frame size (default 128,128)")
    synth.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    synth.add_argument("--frame-folders", action="store_true", help="also write every frame as a PNG")
    synth.set_defaults(func=run_synthref)

    conv = commands.add_parser("convert", help="convert annotations from one format to another")
    conv.add_argument("--from", dest="src", required=True, metavar="FORMAT", help=", ".join(formats.FORMATS))
    conv.add_argument("--to", dest="dst", required=True, metavar="FORMAT", help=", ".join(formats.FORMATS))
    conv.add_argument("input", metavar="IN", help="annotation file or folder")
    conv.add_argument("output", metavar="OUT", help="annotation file (JSON formats) or folder (lasot, otb)")
    conv.set_defaults(func=run_convert)

    check = commands.add_parser("validate", help="check annotations (and, optionally, the files they name)")
    check.add_argument("--format", required=True, metavar="FORMAT", help=", ".join(formats.FORMATS))
    check.add_argument("path", metavar="PATH", help="annotation file or folder")
    check.add_argument("--check-files", action="store_true", help="also check videos and frames exist")
    check.set_defaults(func=run_validate)

    cache = commands.add_parser("cache", help="precompute frames and tracks for training (resumable, shardable)")
    cache.add_argument(
        "--data", dest="data", action="append", type=_data_source, required=True, metavar="FORMAT:PATH",
        help="annotations to cache; repeat for several files",
    )  # fmt: skip
    cache.add_argument("--model", required=True, help="model directory or its config.json (frame size, num_frames)")
    cache.add_argument("--out", required=True, help="cache directory (a rerun resumes where a killed run stopped)")
    cache.add_argument("--shard-index", type=int, default=None, help="this process's shard (default: $RANK or 0)")
    cache.add_argument("--num-shards", type=int, default=None, help="number of shards (default: $WORLD_SIZE or 1)")
    cache.add_argument(
        "--tracker", default="opencv-csrt",
        help="tracker filling frames a record does not annotate (default opencv-csrt; 'none' leaves them unknown)",
    )  # fmt: skip
    cache.add_argument(
        "--max-region-candidates", type=int, default=None, metavar="M",
        help="cache at most M visible frames per target for the tracked-frame jitter (default: all)",
    )  # fmt: skip
    cache.add_argument("--bad-records", choices=("raise", "skip"), default="raise", help="on a malformed record")
    cache.add_argument(
        "--features", action="store_true",
        help="also run the (frozen) vision tower once and cache its features instead of frames; --model must then "
        "be the model directory with its weights",
    )  # fmt: skip
    cache.add_argument(
        "--feature-dtype", choices=("float32", "float16", "bfloat16"), default="float32",
        help="dtype the features are stored in (default float32; float16 halves the size)",
    )  # fmt: skip
    cache.add_argument(
        "--device", default=None,
        help="device of the vision tower with --features (default: cuda:$LOCAL_RANK when CUDA is available, else cpu)",
    )  # fmt: skip
    cache.add_argument("--feature-batch-size", type=int, default=32, help="frames per vision-tower pass (default 32)")
    cache.set_defaults(func=run_cache)


def run_synthref(args: argparse.Namespace) -> int:
    """Generate one SynthRef split with a progress bar."""
    from tqdm import tqdm

    from artemis.data.synthref import SynthRefConfig
    from artemis.data.synthref_writer import generate_split

    try:
        config = SynthRefConfig(
            width=args.size[0], height=args.size[1], num_frames=args.frames, frame_folders=args.frame_folders
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if args.num_videos < 1:
        raise ConfigError(f"--num-videos must be >= 1, got {args.num_videos}")
    with tqdm(total=args.num_videos, desc=f"SynthRef {args.split}", unit="video", file=sys.stderr) as bar:
        summary = generate_split(args.out, args.num_videos, args.seed, args.split, config, progress=bar.update)
    print(
        f"wrote {summary.num_videos} videos ({summary.num_objects} targets) to {summary.split_dir} "
        f"in {summary.seconds:.1f} s"
    )
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Convert annotations between formats."""
    from artemis.data.convert import convert

    samples = convert(args.src, args.dst, args.input, args.output)
    print(f"converted {len(samples)} samples from {args.src} to {args.dst}: {args.output}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Validate annotations; errors become one line and exit code 2."""
    from artemis.data.convert import validate

    samples = validate(args.format, args.path, check_files=args.check_files)
    print(f"{args.path}: {len(samples)} valid {args.format} samples")
    return 0


def _feature_device(device: str | None) -> str:
    import os

    import torch

    if device is not None:
        return device
    return f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"


def run_cache(args: argparse.Namespace) -> int:
    """Cache this shard's videos (frames and tracks, or vision features and tracks) with a progress bar."""
    from tqdm import tqdm

    from artemis.data.cache import build_cache, settings_from_model
    from artemis.data.entries import load_entries

    tracker = None if args.tracker.lower() == "none" else args.tracker
    settings = settings_from_model(args.model, tracker=tracker, max_region_candidates=args.max_region_candidates)
    extractor = None
    if args.features:
        from artemis.model.features import VisionFeatureExtractor

        if args.feature_batch_size < 1:
            raise ConfigError(f"--feature-batch-size must be >= 1, got {args.feature_batch_size}")
        extractor = VisionFeatureExtractor.from_pretrained(
            args.model, device=_feature_device(args.device), batch_size=args.feature_batch_size
        )
        settings = settings.with_features(extractor.config, extractor.fingerprint, args.feature_dtype)
    entries, skipped = load_entries(args.data, args.bad_records)
    with tqdm(total=len(entries), desc="caching", unit="record", file=sys.stderr) as bar:
        summary = build_cache(
            entries, args.out, settings, shard_index=args.shard_index, num_shards=args.num_shards,
            on_video_done=bar.update, extractor=extractor,
        )  # fmt: skip
    print(
        f"shard {summary.shard_index}/{summary.num_shards}: cached {summary.videos_written} videos "
        f"({summary.videos_already_done} already done, {summary.records} records, {len(skipped)} bad records "
        f"skipped) in {args.out} in {summary.seconds:.1f} s"
    )
    return 0
