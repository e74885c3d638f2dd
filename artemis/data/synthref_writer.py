"""Write a SynthRef split: videos, manifest and annotations in every supported format.

Layout of ``OUT/<split>/``::

    videos/<split>_00000.mp4        mp4v, RGB frames written as BGR by OpenCV
    frames/<split>_00000/000000.png lossless frames (only with ``frame_folders``)
    manifest.json                   every video, every object's labels, boxes, visibility, key frame
    videoref45k.json                one Artemis record per object (caption = its description), with the
                                    object's visible pixels on its key frame (key_frame_mask, COCO RLE)
    videoref45k_attributes.json     three Artemis records per object: one short question and answer
    videoref45k_pairs.json          Artemis records about two objects (two regions per record): same
                                    colour/shape/direction? which is further left/up at the end, faster?
                                    each about its colour, shape and motion
    videoref45k_chat.json           one two-turn conversation per object: its description, then its colour,
                                    shape or motion (artemis.data.synthref_chat)
    elysium.json                    one ElysiumTrack-1M record per object, described (Video-REG)
    elysium_track.json              one ElysiumTrack-1M record per object for SOT and RSOT: the same boxes,
                                    object_description = the shortest phrase naming it alone in its video
    llava_stage1.json               one scene-caption conversation per video
    llava_stage2.json               one multi-turn question-answer conversation per video

Every file is written atomically. Annotation files are a pure function of the arguments (byte-identical
across runs); the mp4 files decode to identical frames.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from artemis import prompts as templates
from artemis.data.formats import elysium, llava, videoref45k
from artemis.data.records import RefSample
from artemis.data.synthref import (
    MOTIONS,
    PALETTE,
    SHAPES,
    SIZES,
    Scene,
    SynthRefConfig,
    box_overlap,
    compute_tracks,
    generate_scene,
    render_frames,
    seed_sequence,
    visible_mask,
)
from artemis.data.synthref_chat import CHAT_FILE, chat_records
from artemis.data.synthref_text import (
    QUALIFIERS,
    attribute_questions,
    describe_object,
    pair_questions,
    referring_expression,
    scene_caption,
    scene_questions,
)
from artemis.errors import VideoError
from artemis.io import atomic_path, write_json_atomic
from artemis.regions import mask_to_rle

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 1
TRACK_FILE = "elysium_track.json"
PAIRS_FILE = "videoref45k_pairs.json"
"""The split's SOT / RSOT records (ElysiumTrack-1M format); ``--data synthref:SPLIT_DIR`` reads them."""


@dataclass(frozen=True)
class SynthRefSummary:
    """What :func:`generate_split` wrote."""

    split_dir: Path
    num_videos: int
    num_objects: int
    seconds: float


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write ``(T, H, W, 3)`` uint8 RGB frames as an mp4 (``mp4v``), atomically."""
    _, height, width, _ = frames.shape
    # OpenCV picks the container from the suffix, so the temporary file must end in .mp4 too.
    with atomic_path(path) as tmp:
        target = tmp.with_suffix(".mp4")
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise VideoError(f"OpenCV cannot write mp4v video to {target}; is FFmpeg support built in?")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
            target.replace(tmp)
        finally:
            writer.release()
            target.unlink(missing_ok=True)


def write_frame_folder(folder: Path, frames: np.ndarray) -> None:
    """Write frames as ``000000.png``, ... (lossless, so pixel checks can read them back)."""
    for t, frame in enumerate(frames):
        with atomic_path(folder / f"{t:06d}.png") as tmp:
            ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if not ok:
                raise VideoError(f"OpenCV could not encode frame {t} of {folder}")
            tmp.write_bytes(data.tobytes())


def _box_json(box: tuple[float, ...] | None) -> list[int]:
    return [] if box is None else [int(v) for v in box]


def _video_entry(scene: Scene, video_rel: str, captions: list[str], tracks: list) -> dict[str, Any]:
    objects = []
    for k, (obj, track, caption) in enumerate(zip(scene.objects, tracks, captions, strict=True)):
        key_box = track.boxes[track.key_frame_id]
        objects.append(
            {
                "index": k,
                "colour": obj.colour,
                "shape": obj.shape,
                "size": obj.size,
                "motion": obj.motion,
                "speed": round(obj.speed, 4),
                "radius": obj.radius,
                "draw_order": k,
                "caption": caption,
                "enters": track.enters,
                "leaves": track.leaves,
                "key_frame_id": track.key_frame_id,
                "key_frame_overlap": round(box_overlap(scene, k, track.key_frame_id, key_box), 4),
                "boxes": [_box_json(b) for b in track.boxes],
                "visible": list(track.visible),
            }
        )
    return {"name": scene.name, "video": video_rel, "num_frames": scene.num_frames, "objects": objects}


def generate_split(
    out_dir: str | Path,
    num_videos: int,
    seed: int = 0,
    split: str = "train",
    config: SynthRefConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> SynthRefSummary:
    """Generate ``num_videos`` SynthRef videos of ``split`` into ``out_dir/<split>/``.

    Args:
        out_dir: Root output directory; the split goes to its ``<split>/`` sub-directory.
        num_videos: Number of videos.
        seed: Base seed; with the split and video index it determines everything.
        split: ``"train"``, ``"val"`` or ``"test"``.
        config: Frame size, length, frame rate, object counts, frame folders.
        progress: Called with 1 after each video (e.g. a tqdm bar's ``update``).

    Returns:
        A summary with the split directory, counts and the time taken.
    """
    config = config or SynthRefConfig()
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    seed_sequence(seed, split, 0)  # validates the split name before anything is written
    started = time.perf_counter()
    split_dir = Path(out_dir) / split
    refs: list[RefSample] = []
    attribute_refs: list[RefSample] = []
    track_refs: list[RefSample] = []
    stage1: list[RefSample] = []
    stage2: list[RefSample] = []
    pair_records: list[dict[str, Any]] = []
    chat_refs: list[RefSample] = []
    manifest_videos = []
    for index in range(num_videos):
        scene = generate_scene(seed, split, index, config)
        # Text has its own stream, so changing a template never changes the pixels.
        text_rng = np.random.default_rng(seed_sequence(seed, split, index).spawn(3)[2])
        tracks = compute_tracks(scene)
        frames = render_frames(scene)  # (T, H, W, 3)
        video_rel = f"videos/{scene.name}.mp4"
        write_video(split_dir / video_rel, frames, config.fps)
        source_rel = video_rel
        if config.frame_folders:
            source_rel = f"frames/{scene.name}"
            write_frame_folder(split_dir / source_rel, frames)
        captions = [describe_object(obj, text_rng) for obj in scene.objects]
        for k, (obj, track, caption) in enumerate(zip(scene.objects, tracks, captions, strict=True)):
            question = templates.DESCRIBE_QUESTIONS[int(text_rng.integers(len(templates.DESCRIBE_QUESTIONS)))]
            refs.append(
                RefSample(
                    sample_id=f"{scene.name}_obj{k}",
                    source="synthref",
                    video=source_rel,
                    frame_ids=list(range(scene.num_frames)),
                    boxes=list(track.boxes),
                    visible=list(track.visible),
                    key_frame_id=track.key_frame_id,
                    width=scene.width,
                    height=scene.height,
                    caption=caption,
                    question=question,
                    object_class=obj.shape,
                    base_dir=split_dir,
                    metadata={
                        "video_name": f"{scene.name}.mp4",
                        "vid": scene.name,
                        "key_frame_mask": mask_to_rle(visible_mask(scene, k, track.key_frame_id)),
                    },
                )
            )
        # Its own stream too, so the attribute questions leave every other file unchanged.
        attribute_rng = np.random.default_rng(seed_sequence(seed, split, index).spawn(4)[3])
        for k, obj in enumerate(scene.objects):
            target = refs[len(refs) - len(scene.objects) + k]
            for kind, question, answer in attribute_questions(obj, attribute_rng):
                sample_id = f"{scene.name}_obj{k}_{kind}"
                attribute_refs.append(replace(target, sample_id=sample_id, question=question, caption=answer))
        track_refs += _track_records(scene, refs[len(refs) - len(scene.objects) :], seed, split, index)
        pair_records += _pair_records(scene, tracks, source_rel, seed, split, index)
        chat_refs += chat_records(scene, refs[len(refs) - len(scene.objects) :], seed, split, index)
        scene_question = templates.SYNTHREF_SCENE_QUESTIONS[
            int(text_rng.integers(len(templates.SYNTHREF_SCENE_QUESTIONS)))
        ]
        stage1.append(
            _conversation(f"{scene.name}_caption", video_rel, [(scene_question, scene_caption(scene))], split_dir)
        )
        qa = [(q, a) for _kind, q, a in scene_questions(scene, text_rng)]
        stage2.append(_conversation(f"{scene.name}_qa", video_rel, qa, split_dir))
        manifest_videos.append(_video_entry(scene, video_rel, captions, tracks))
        if progress is not None:
            progress(1)

    manifest = {
        "version": MANIFEST_VERSION,
        "generator": "artemis.data.synthref",
        "split": split,
        "seed": seed,
        "config": asdict(config),
        "attributes": {
            "colour": list(PALETTE),
            "shape": list(SHAPES),
            "size": list(SIZES),
            "motion": list(MOTIONS),
        },
        "rules": {
            "box": "tight pixel xyxy of the object's own mask, x2/y2 exclusive, clipped to the frame; [] when outside",
            "visible": "at least one mask pixel not covered by an object later in draw order",
            "key_frame_id": "frame with the most unoccluded pixels, earliest on ties",
            "key_frame_overlap": "largest share of another object's visible pixels inside the key-frame box",
        },
        "videos": manifest_videos,
    }
    write_json_atomic(split_dir / "manifest.json", manifest, indent=1)
    videoref45k.write(refs, split_dir / "videoref45k.json")
    videoref45k.write(attribute_refs, split_dir / "videoref45k_attributes.json")
    elysium.write(refs, split_dir / "elysium.json")
    elysium.write(track_refs, split_dir / TRACK_FILE)
    llava.write(stage1, split_dir / "llava_stage1.json")
    llava.write(stage2, split_dir / "llava_stage2.json")
    write_json_atomic(split_dir / PAIRS_FILE, pair_records, indent=1)
    videoref45k.write(chat_refs, split_dir / CHAT_FILE)
    seconds = time.perf_counter() - started
    logger.info("wrote %d SynthRef videos (%d objects) to %s in %.1f s", num_videos, len(refs), split_dir, seconds)
    return SynthRefSummary(split_dir=split_dir, num_videos=num_videos, num_objects=len(refs), seconds=seconds)


def _track_records(scene: Scene, refs: list[RefSample], seed: int, split: str, index: int) -> list[RefSample]:
    """The scene's SOT / RSOT records: each object's track, described by its referring expression.

    Boxes and visibility are the referring records' (a box only where the object is visible). The order in
    which qualifiers are tried is a permutation of colour, size and motion drawn per object from a stream of
    its own, so every other file stays as it was and all three qualifiers occur.
    """
    rng = np.random.default_rng(seed_sequence(seed, split, index).spawn(5)[4])
    records = []
    for k, ref in enumerate(refs):
        order = tuple(QUALIFIERS[i] for i in rng.permutation(len(QUALIFIERS)))
        expression, qualifiers = referring_expression(scene.objects, k, order)
        metadata = {**ref.metadata, "elysium_metadata": {"expression_qualifiers": list(qualifiers)}}
        records.append(replace(ref, caption=expression, question=None, metadata=metadata))
    return records


def _conversation(sample_id: str, video: str, turns: list[tuple[str, str]], base_dir: Path) -> RefSample:
    messages = []
    for position, (question, answer) in enumerate(turns):
        # Only the first human turn carries the video placeholder, as in LLaVA / Video-ChatGPT data.
        prefix = templates.VIDEO_TOKEN + "\n" if position == 0 else ""
        messages.append({"from": "human", "value": prefix + question})
        messages.append({"from": "gpt", "value": answer})
    return RefSample(sample_id=sample_id, source="synthref", video=video, conversations=messages, base_dir=base_dir)


def _pair_records(
    scene: Scene, tracks: list, video_rel: str, seed: int, split: str, index: int
) -> list[dict[str, Any]]:
    """The pair questions of one scene as VideoRef45K records with two regions each.

    The record is VideoRef45K's with ``track_list``, ``key_frame_box`` and ``key_frame_id`` holding one
    entry per region (region1 first), plus ``kind`` and ``objects`` (the objects' indices). Each region
    keeps its own key frame. A pair is asked about only when some frame shows both objects (the prompt's
    key slot needs one). The order of each pair is drawn from the scene's own seed stream (the fifth),
    so these records leave every other file unchanged.
    """
    rng = np.random.default_rng(seed_sequence(seed, split, index).spawn(5)[4])
    records = []
    for i, j in itertools.combinations(range(len(scene.objects)), 2):
        if rng.random() < 0.5:
            i, j = j, i
        first, second = tracks[i], tracks[j]
        if not any(a and b for a, b in zip(first.visible, second.visible, strict=True)):
            continue
        last = (bool(first.visible[-1]), bool(second.visible[-1]))
        for kind, question, answer in pair_questions(scene.objects[i], scene.objects[j], last, scene.num_frames, rng):
            records.append(
                {
                    "id": f"{scene.name}_obj{i}_obj{j}_{kind}",
                    "source": "synthref",
                    "video_name": f"{scene.name}.mp4",
                    "frame_path": video_rel,
                    "frame_id": list(range(scene.num_frames)),
                    "frame_size": [scene.width, scene.height],
                    "question": question,
                    "caption": answer,
                    "kind": kind,
                    "objects": [i, j],
                    "track_list": [
                        [_box_json(box) if seen else [] for box, seen in zip(t.boxes, t.visible, strict=True)]
                        for t in (first, second)
                    ],
                    "key_frame_box": [_box_json(t.boxes[t.key_frame_id]) for t in (first, second)],
                    "key_frame_id": [t.key_frame_id for t in (first, second)],
                }
            )
    return records


@dataclass(frozen=True)
class PairRecord:
    """One record of ``videoref45k_pairs.json``, read for evaluation.

    Attributes:
        sample_id / kind / question / answer: as written.
        video: path of the video file (or frame folder).
        boxes: per region, ``(T, 4)`` pixel xyxy (NaN where the object is not visible).
        key_frames: per region, its key frame.
        objects: the objects' indices in the manifest.
    """

    sample_id: str
    kind: str
    question: str
    answer: str
    video: Path
    boxes: tuple[np.ndarray, ...]
    key_frames: tuple[int, ...]
    objects: tuple[int, ...]


def read_pair_records(path: str | Path) -> list[PairRecord]:
    """The records of a split's ``videoref45k_pairs.json`` (relative paths resolve against its folder).

    Raises:
        FileNotFoundError: the file is missing (a split written before pair questions existed: regenerate it).
        AnnotationError: a record lacks a field or its regions disagree.
    """
    import json

    from artemis.errors import AnnotationError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; pair questions are written by 'artemis data synthref' since issue 16: regenerate "
            "the split"
        )
    out = []
    for n, record in enumerate(json.loads(path.read_text(encoding="utf-8"))):
        try:
            tracks = record["track_list"]
            boxes = tuple(
                np.array([b if len(b) == 4 else [np.nan] * 4 for b in track], dtype=np.float64) for track in tracks
            )
            keys = tuple(int(k) for k in record["key_frame_id"])
            if len(boxes) != len(keys) or len(boxes) < 2:
                raise ValueError(f"{len(boxes)} tracks for {len(keys)} key frames; expected one per region, >= 2")
            out.append(
                PairRecord(
                    sample_id=str(record["id"]),
                    kind=str(record["kind"]),
                    question=str(record["question"]),
                    answer=str(record["caption"]),
                    video=path.parent / record["frame_path"],
                    boxes=boxes,
                    key_frames=keys,
                    objects=tuple(int(k) for k in record["objects"]),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise AnnotationError(
                f"{path}: record {n} is not a pair record ({error!r}); regenerate the split"
            ) from None
    return out
