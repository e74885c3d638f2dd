"""``artemis demo``: the whole path on a fresh machine, on data artemis makes itself.

Generates a SynthRef test video with distractors, picks a target that shares its colour or shape with
another object, tracks it from its box on the key frame, scores the track against the exact boxes,
describes the target with the model (the bundled default model unless ``--model`` names another), and
writes a video and a GIF with the track and the text drawn on them. When a model that writes boxes is at
hand (``--model`` itself, ``--box-model``, or the bundled box model), it also tracks the target from the same
box (Elysium SOT) and its boxes are drawn beside the tracker's, in another colour, with a legend.
"""

from __future__ import annotations

import argparse
import json
import sys
from inspect import signature
from pathlib import Path

import numpy as np

from artemis.cli.args import add_tracker_arguments, announce_model, tracker_settings
from artemis.cli.describe import DEFAULT_MODEL
from artemis.cli.track import box_model_dir
from artemis.model.loading import DEFAULT_BOX_MODEL, bundled_models


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate a SynthRef video, track a target from one box and describe it",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--out", type=Path, default=Path("artemis-demo"), help="output folder (default artemis-demo)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model directory or bundled name ({DEFAULT_MODEL})")
    parser.add_argument("--seed", type=int, default=0, help="SynthRef seed of the demo video")
    add_tracker_arguments(parser)
    parser.add_argument(
        "--box-model",
        default=None,
        help=f"model whose boxes are drawn beside the tracker's (default: --model if it can, or {DEFAULT_BOX_MODEL})",
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, help="generation length (default: each task's)")
    parser.set_defaults(func=run)


def pick_target(video: dict) -> dict:
    """The object with a distractor (shared colour or shape) that is visible on the most frames."""

    def visible_frames(obj: dict) -> int:
        return sum(1 for box in obj["boxes"] if box)

    def has_distractor(obj: dict) -> bool:
        return any(
            other is not obj and (other["colour"] == obj["colour"] or other["shape"] == obj["shape"])
            for other in video["objects"]
        )

    return max(video["objects"], key=lambda obj: (has_distractor(obj), visible_frames(obj), -obj["index"]))


def run(args: argparse.Namespace) -> int:
    from artemis.api import ArtemisModel, resolve_model_dir
    from artemis.data.synthref_writer import generate_split
    from artemis.errors import CheckpointError
    from artemis.video import VideoReader

    out: Path = args.out
    summary = generate_split(out / "synthref", 1, seed=args.seed, split="test")
    manifest = json.loads((summary.split_dir / "manifest.json").read_text())
    video_entry = manifest["videos"][0]
    target = pick_target(video_entry)
    video_path = summary.split_dir / video_entry["video"]
    try:
        model = ArtemisModel.from_pretrained(
            resolve_model_dir(args.model), tracker=args.tracker, log_card=False, **tracker_settings(args)
        )
        announce_model("demo", model.card)
    except CheckpointError as error:
        if args.model != DEFAULT_MODEL:
            raise
        model = None
        print(f"note: {error}; tracking only", file=sys.stderr)
    box_model = _box_writer(args, model)
    with VideoReader(video_path) as reader:
        return _run_demo(args, out, manifest, target, video_path, reader, model, box_model)


def _box_writer(args: argparse.Namespace, model):
    """The model that writes boxes beside the tracker: ``--model`` when it was trained to, else ``--box-model``
    or the bundled box model; ``None``, said in one line, when there is none."""
    from artemis.api import ArtemisModel

    if args.box_model is None and model is not None and "boxes" in model.config.tasks:
        return model
    if args.box_model is None and DEFAULT_BOX_MODEL not in bundled_models():
        print(
            f"note: no bundled model writes boxes yet ({DEFAULT_BOX_MODEL}); the tracker's boxes only "
            "(--box-model DIR draws a model's beside them)",
            file=sys.stderr,
        )
        return None
    box_model = ArtemisModel.from_pretrained(box_model_dir(args.box_model), log_card=False)
    announce_model("demo", box_model.card)
    return box_model


def _score(track, truth: np.ndarray, key: int):
    """Success of ``track`` against the exact boxes, from the key frame on (the protocol sets it to the truth)."""
    from artemis.eval.tracking import score_sequence

    gt_xywh = np.concatenate([truth[:, :2], truth[:, 2:] - truth[:, :2]], axis=1)
    pred = np.where(np.isfinite(track.boxes), track.boxes, 0.0)
    pred_xywh = np.concatenate([pred[:, :2], pred[:, 2:] - pred[:, :2]], axis=1)
    return score_sequence(pred_xywh[key:], gt_xywh[key:], absent=~np.isfinite(truth[key:]).all(1))


def _run_demo(args, out, manifest, target, video_path, reader, model, box_model) -> int:
    from artemis.io import write_json_atomic
    from artemis.tasks.pipeline import VideoPipeline
    from artemis.track import track_video
    from artemis.video.draw import draw_track, write_video

    key = target["key_frame_id"]
    box = target["boxes"][key]

    settings = {name: signature(VideoPipeline).parameters[name].default for name in ("track_stride", "track_max_side")}
    settings |= tracker_settings(args)
    stride, max_side = settings["track_stride"], settings["track_max_side"]
    track = track_video(reader, box, key, tracker=args.tracker, stride=stride, max_side=max_side)
    truth = np.array([b if b else [np.nan] * 4 for b in target["boxes"]], dtype=float)
    scores = _score(track, truth, key)
    generation = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    llm_track = llm = None
    if box_model is not None:  # the model writes the target's box on every frame, from the same box
        llm_track = box_model.track_with_llm(reader, box, key, **generation)
        llm = {
            "model": box_model.card.name,
            "success_auc": _score(llm_track, truth, key).success_auc,
            "num_unparsed": llm_track.num_unparsed,
            "num_invalid": llm_track.num_invalid,
            "track": llm_track.to_json(),
        }

    text = None
    matches = None
    if model is not None:
        from artemis.eval.synthref import Vocabulary, parse_description

        text = model.describe(reader, box, key, track=track, **generation).text
        labels = {name: target[name] for name in ("colour", "shape", "motion")}
        matches = parse_description(text, Vocabulary.from_manifest(manifest)).matches(labels)
    caption = f"artemis: {text}" if text else "(no model: tracking only)"
    if llm_track is None:
        frames = list(draw_track(reader, track, labels="target", captions=caption))
    else:
        legend = [f"tracker ({args.tracker})", f"model boxes ({box_model.card.name})"]
        frames = list(
            draw_track(reader, [track, llm_track], labels=["tracker", "model"], captions=caption, legend=legend)
        )
    video_out = write_video(out / "demo.mp4", frames, reader.fps)
    gif_out = write_video(out / "demo.gif", frames, reader.fps)
    result = {
        "video": str(video_path),
        "target": {k: target[k] for k in ("colour", "shape", "size", "motion", "caption")},
        "key_frame": key,
        "box": box,
        "track_success_auc": scores.success_auc,
        "model": None if model is None else args.model,
        "description": text,
        "description_matches": matches,
        "box_output": llm,
        "files": {"video": str(video_out), "gif": str(gif_out)},
    }
    write_json_atomic(out / "result.json", result)

    print(f"video:       {video_path} ({reader.num_frames} frames, {reader.width}x{reader.height})")
    print(f"target:      {target['caption']} (box {box} on frame {key})")
    print(
        f"tracking:    visible on {int(track.visible.sum())}/{track.num_frames} frames, "
        f"success AUC {scores.success_auc:.3f} against the exact boxes"
    )
    if llm is not None:
        print(
            f"box output:  {llm['model']} read a box on {llm_track.num_predicted}/{llm_track.num_frames} frames "
            f"({llm['num_unparsed']} unparsed, the box before carried; {llm['num_invalid']} invalid), "
            f"success AUC {llm['success_auc']:.3f}"
        )
    print(f"description: {text if text is not None else '(no model available)'}")
    if matches is not None:
        verdicts = ", ".join(f"{name} {'right' if ok else 'wrong'}" for name, ok in matches.items())
        print(f"checked:     {verdicts} (against the generator's labels)")
    print(f"wrote:       {video_out}, {gif_out}, {out / 'result.json'}")
    return 0
