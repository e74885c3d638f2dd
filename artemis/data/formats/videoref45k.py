"""Artemis' VideoRef45K records (a JSON list), one per target.

Fields: ``video_name``, ``caption``, ``question`` (optional), ``track_list`` (pixel ``[x1, y1, x2, y2]``
per annotated frame, ``[]`` where the target is absent), ``frame_path`` (the video file or frame folder,
relative to the JSON file), ``frame_id`` (the frames ``track_list`` is aligned with), ``key_frame_box``
and ``key_frame_id``. artemis also writes an optional ``frame_size`` ``[w, h]``: readers of the original
ignore it, and it lets boxes be checked against the frame and normalised without opening the video.

``frame_id`` takes two shapes:

* **file names** (strings, the released data set): the original joins ``frame_path`` and each name into an
  image path (``os.path.join(video_folder, frame_path, name)``), and the key frame is the image
  ``key_frame_id`` names, which need not be one of ``frame_id``. The record's frames are then those
  images in name order, the key frame among them; ``clip_path`` (the original's precomputed video
  features, a pickle) is kept in the metadata for :mod:`artemis.data.cache`.
* **indices** (integers, what artemis writes): 0-based frames of the video file or frame folder;
  ``key_frame_id`` is one of them.

An empty ``key_frame_box`` or ``key_frame_id`` (``[]``, ``""``): the original then draws the key frame at
random among the frames with a box, each time it reads the record. Here the key frame is one such frame
chosen by a hash of the record (the same in every run); ``data.key_frame_jitter`` draws other visible
frames per epoch for every record.

A path given as a folder reads every ``*.json`` in it, in name order (the original's ``--data_path``).

**Several regions per record** (SynthRef's ``videoref45k_pairs.json``, issue 16): ``key_frame_id`` is a
list, one key frame per region, and ``track_list`` and ``key_frame_box`` hold one entry per region
(region1 first) in the single-region shapes above; ``frame_id`` is shared and must hold integer indices.
The question names the regions with one ``<region>`` each. Such a record reads into a
:class:`RefSample` whose first region is its own track and whose others are ``other_regions``; ``kind``
and ``objects`` (SynthRef's pair kind and object indices) are kept in the metadata and written back. A
record whose ``key_frame_id`` is not a list is read exactly as before.

**Conversations** (artemis' own optional field; SynthRef's ``videoref45k_chat.json``): ``conversations``,
LLaVA-style turns ``[{"from": "human", "value": ...}, {"from": "gpt", "value": ...}, ...]`` about the
record's regions, human first and each human turn answered. The first human turn names the regions with
``<region>`` and later ones name them in words (no ``<region>`` or ``<video>``); ``question`` and
``caption``, when given, must be the first turn, so a reader that knows only them trains on that turn. Read
into ``RefSample.conversations`` and written back (``docs/regions.md``, "Conversations").

**Key-frame masks** (artemis' own optional field, which SynthRef writes): ``key_frame_mask``, the target's
visible pixels on the key frame as a COCO RLE dict (``{"size": [H, W], "counts": [...]}``); kept in the
metadata (checked: the frame's size, not empty) and written back. ``data.mask_prompts`` trains with it
(``docs/regions.md``).

VideoRef45K has no visibility field: a frame is written with its box exactly when the target is visible,
so a fully hidden target (SynthRef occlusion) is written as ``[]``. Pixel values are written as they are
(integers without ``.0``), so ``internal -> videoref45k -> internal`` is exact for visible frames.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from artemis.data.formats._common import (
    clean_number,
    key_frame_mask,
    optional,
    parse_box_values,
    read_record_list,
    relative_to,
    require,
)
from artemis.data.records import RefSample, RegionTrack, record_error
from artemis.errors import is_int
from artemis.io import write_json_atomic

NAME = "videoref45k"
HAS_BOXES = True


def parse_record(record: dict[str, Any], path: Path, index: int) -> RefSample:
    """One VideoRef45K record -> :class:`RefSample` (checked)."""
    video_name = require(record, "video_name", str, path, index)
    caption = require(record, "caption", str, path, index)
    question = optional(record, "question", str, path, index)
    track = require(record, "track_list", list, path, index)
    frame_path = require(record, "frame_path", str, path, index)
    frame_ids = require(record, "frame_id", list, path, index)
    key_box = require(record, "key_frame_box", list, path, index)
    if isinstance(record.get("key_frame_id"), list):
        return _parse_regions(record, path, index)
    key_frame_id = require(record, "key_frame_id", (int, str), path, index)
    if not track:
        raise record_error(path, index, "track_list", "the track is empty; expected one box (or []) per frame_id")
    if len(track) != len(frame_ids):
        raise record_error(
            path, index, "track_list", f"{len(track)} entries for {len(frame_ids)} frame ids; expected one per frame"
        )
    names = all(isinstance(f, str) and f for f in frame_ids)
    if not names and not all(is_int(f) for f in frame_ids):
        raise record_error(
            path, index, "frame_id", "expected a list of image file names (the release) or of integer frame indices"
        )
    width, height = _frame_size(record, path, index)
    boxes = [parse_box_values(v, path, index, "track_list", i) for i, v in enumerate(track)]
    key_values = parse_box_values(key_box, path, index, "key_frame_box", 0)
    metadata: dict[str, Any] = {"video_name": video_name}
    for name in ("clip_path", "id"):
        if name in record:
            metadata[name] = record[name]
    if "key_frame_mask" in record:
        metadata["key_frame_mask"] = key_frame_mask(record["key_frame_mask"], width, height, path, index)
    if names and isinstance(key_frame_id, int):
        raise record_error(
            path, index, "key_frame_id", "expected str: frame_id holds file names, so the key frame is one"
        )
    if not names and isinstance(key_frame_id, str) and key_frame_id != "":
        raise record_error(path, index, "key_frame_id", "expected int: frame_id holds frame indices")
    frame_paths = None
    if names:
        frame_paths, frame_ids, boxes, key = _named_frames(frame_path, frame_ids, boxes, key_frame_id, key_values)
        metadata["frame_names"] = [Path(p).name for p in frame_paths]
    elif key_values is None or key_frame_id == "":
        key = _drawn_key_frame(record, frame_ids, boxes, path, index)
    else:
        key = key_frame_id
        if key not in frame_ids:
            raise record_error(
                path, index, "key_frame_id", f"frame {key} is not one of the record's frame ids (frame_id)"
            )
        # The key-frame box is the one the user gives; where the track has no box there, take it.
        if boxes[frame_ids.index(key)] is None:
            boxes[frame_ids.index(key)] = key_values
    if key is None:
        key = _drawn_key_frame(record, frame_ids, boxes, path, index)
    sample = RefSample(
        sample_id=str(record.get("id", index)),
        source=str(record.get("source", NAME)),
        video=None if names else frame_path,
        frame_paths=frame_paths,
        frame_ids=list(frame_ids),
        boxes=[tuple(b) if b is not None else None for b in boxes],
        visible=[b is not None for b in boxes],
        key_frame_id=key,
        width=width,
        height=height,
        caption=caption,
        question=question,
        base_dir=path.parent,
        metadata=metadata,
        conversations=_conversations(record, question, caption, path, index),
    )
    sample.check(path, index)
    return sample


def _parse_regions(record: dict[str, Any], path: Path, index: int) -> RefSample:
    """A record about several regions: one track, key-frame box and key frame per region, shared frames."""
    caption = require(record, "caption", str, path, index)
    tracks = require(record, "track_list", list, path, index)
    frame_ids = require(record, "frame_id", list, path, index)
    key_boxes = require(record, "key_frame_box", list, path, index)
    keys = record["key_frame_id"]
    count = len(keys)
    if count < 1 or len(tracks) != count or len(key_boxes) != count:
        raise record_error(
            path,
            index,
            "track_list",
            f"{len(tracks)} tracks, {len(key_boxes)} key-frame boxes and {count} key frames; a record about several "
            "regions has one of each per region (key_frame_id is a list, so the record is read as one)",
        )
    if not all(is_int(f) for f in frame_ids):
        raise record_error(
            path, index, "frame_id", "a record about several regions needs integer frame indices (0-based frames of "
            "frame_path); write frame_id as indices",
        )  # fmt: skip
    question = optional(record, "question", str, path, index)
    if question is not None and question.count("<region>") not in (0, count):
        raise record_error(
            path, index, "question", f"names {question.count('<region>')} <region> placeholders for {count} regions; "
            "name each region once, in the order of track_list",
        )  # fmt: skip
    regions = []
    for number, (track, key_box, key) in enumerate(zip(tracks, key_boxes, keys, strict=True), start=1):
        name = f"track_list[{number - 1}]"
        if not isinstance(track, list) or len(track) != len(frame_ids):
            size = len(track) if isinstance(track, list) else type(track).__name__
            raise record_error(
                path, index, name, f"region{number}'s track has {size} entries for {len(frame_ids)} frame ids; "
                "expected one box (or []) per frame",
            )  # fmt: skip
        boxes = [parse_box_values(v, path, index, name, i) for i, v in enumerate(track)]
        key_values = parse_box_values(key_box, path, index, f"key_frame_box[{number - 1}]", 0)
        if key_values is None or key == "":
            key = _drawn_key_frame(record, frame_ids, boxes, path, index, salt=f"region{number}")
        elif not is_int(key) or key not in frame_ids:
            raise record_error(
                path, index, f"key_frame_id[{number - 1}]", f"{key!r} is not one of the record's frame ids (frame_id)"
            )
        elif boxes[frame_ids.index(key)] is None:
            boxes[frame_ids.index(key)] = key_values
        regions.append(
            RegionTrack([tuple(b) if b is not None else None for b in boxes], [b is not None for b in boxes], key)
        )
    width, height = _frame_size(record, path, index)
    metadata: dict[str, Any] = {"video_name": require(record, "video_name", str, path, index)}
    for name in ("clip_path", "id", "kind", "objects"):
        if name in record:
            metadata[name] = record[name]
    first = regions[0]
    sample = RefSample(
        sample_id=str(record.get("id", index)),
        source=str(record.get("source", NAME)),
        video=require(record, "frame_path", str, path, index),
        frame_ids=list(frame_ids),
        boxes=first.boxes,
        visible=first.visible,
        key_frame_id=first.key_frame_id,
        width=width,
        height=height,
        caption=caption,
        question=question,
        base_dir=path.parent,
        metadata=metadata,
        other_regions=regions[1:],
        conversations=_conversations(record, question, caption, path, index),
    )
    sample.check(path, index)
    return sample


def _conversations(
    record: dict[str, Any], question: str | None, caption: str, path: Path, index: int
) -> list[dict[str, str]] | None:
    """The optional ``conversations`` of a multi-turn record, checked (see the module docstring)."""
    turns = optional(record, "conversations", list, path, index)
    if turns is None:
        return None
    if not turns or len(turns) % 2:
        raise record_error(
            path, index, "conversations", f"{len(turns)} turns; expected human and gpt turns in pairs, at least one"
        )
    for position, turn in enumerate(turns):
        role = "human" if position % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != role or not isinstance(turn.get("value"), str):
            raise record_error(
                path, index, f"conversations[{position}]", f"{turn!r}; expected {{'from': '{role}', 'value': str}}"
            )
        if position > 1 and role == "human" and ("<region>" in turn["value"] or "<video>" in turn["value"]):
            raise record_error(
                path, index, f"conversations[{position}]", "only the first human turn names the regions with "
                "<region> (and holds no <video>); later turns name them in words (it, region1, region2, ...)",
            )  # fmt: skip
    if (question is not None and question != turns[0]["value"]) or caption != turns[1]["value"]:
        raise record_error(
            path, index, "conversations", "the first turn differs from question/caption; they must be the first turn"
        )
    return [{"from": turn["from"], "value": turn["value"]} for turn in turns]


def _frame_size(record: dict[str, Any], path: Path, index: int) -> tuple[int | None, int | None]:
    """The optional ``frame_size`` ``[w, h]`` artemis writes, or ``(None, None)``."""
    size = optional(record, "frame_size", list, path, index)
    if size is None:
        return None, None
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise record_error(path, index, "frame_size", f"{size!r}; expected [width, height] in pixels")
    return size[0], size[1]


def _named_frames(
    folder: str, names: list[str], boxes: list[list[float] | None], key_name: int | str, key_box: list[float] | None
) -> tuple[list[str], list[int], list[list[float] | None], int | None]:
    """The released shape: frames are the images ``folder/name``, with the key frame's image among them.

    Returns the image paths in name order, their positions (the record's frames), their boxes and the
    key frame's position (None when the record gives no key frame: drawn later).
    """
    by_name = dict(zip(names, boxes, strict=True))
    given = isinstance(key_name, str) and key_name != "" and key_box is not None
    if given and (key_name not in by_name or by_name[key_name] is None):
        by_name[key_name] = key_box  # the key frame's box, as the user gives it
    ordered = sorted(by_name)
    paths = [f"{folder.rstrip('/')}/{name}" for name in ordered]
    key = ordered.index(key_name) if given else None
    return paths, list(range(len(ordered))), [by_name[name] for name in ordered], key


def _drawn_key_frame(
    record: dict[str, Any],
    frame_ids: list[int],
    boxes: list[list[float] | None],
    path: Path,
    index: int,
    salt: str = "",
) -> int:
    """A frame with a box, picked by a hash of the record (the original draws one at random per read)."""
    visible = [frame for frame, box in zip(frame_ids, boxes, strict=True) if box is not None]
    if not visible:
        raise record_error(
            path, index, "key_frame_box", "is empty and no frame of track_list has a box: there is no key frame"
        )
    text = f"{record.get('video_name')}|{record.get('frame_path')}|{record.get('caption')}{salt}"
    return visible[int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % len(visible)]


def read(path: str | Path) -> list[RefSample]:
    """Read a VideoRef45K JSON file, or every ``*.json`` of a folder in name order (the original's layout).

    Raises:
        AnnotationError: naming the file, the record index and the field at fault.
    """
    path = Path(path)
    if not path.is_dir():
        return read_record_list(path, NAME, parse_record)
    files = sorted(path.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{path} holds no *.json file; give the folder of VideoRef45K JSON files or one file")
    return [sample for file in files for sample in read_record_list(file, NAME, parse_record)]


def to_record(sample: RefSample, out_dir: Path) -> dict[str, Any]:
    """:class:`RefSample` -> one VideoRef45K record (paths relative to ``out_dir``)."""
    if sample.caption is None:
        raise record_error(
            out_dir, sample.sample_id, "caption", f"{NAME} needs a caption for every target; this sample has none"
        )
    video = sample.video
    if video is None and sample.frame_paths:  # the released shape: a folder of frame images
        video = str(Path(sample.frame_paths[0]).parent)
    if video is None:
        raise record_error(out_dir, sample.sample_id, "frame_path", "the sample has no video file or frame folder")
    track = [
        [clean_number(v) for v in box] if box is not None and seen else []
        for box, seen in zip(sample.boxes, sample.visible, strict=True)
    ]
    record: dict[str, Any] = {
        "video_name": sample.metadata.get("video_name", Path(video).name),
        "caption": sample.caption,
    }
    if sample.question is not None:
        record["question"] = sample.question
    if sample.conversations:
        record["conversations"] = sample.conversations
    if sample.other_regions:
        return _regions_record(sample, record, track, video, out_dir)
    key_index = sample.key_index
    names = sample.metadata.get("frame_names")
    frame_ids: list[Any] = list(names) if names and len(names) == len(sample.frame_ids) else list(sample.frame_ids)
    record.update(
        {
            "track_list": track,
            "frame_path": relative_to(sample, video, out_dir),
            "frame_id": frame_ids,
            "key_frame_box": [clean_number(v) for v in sample.key_box],
            "key_frame_id": frame_ids[key_index],
        }
    )
    if "clip_path" in sample.metadata:
        record["clip_path"] = sample.metadata["clip_path"]
    if "key_frame_mask" in sample.metadata:
        record["key_frame_mask"] = sample.metadata["key_frame_mask"]
    if sample.width is not None and sample.height is not None:
        record["frame_size"] = [sample.width, sample.height]
    return record


def _regions_record(
    sample: RefSample, record: dict[str, Any], first_track: list[list[float]], video: str, out_dir: Path
) -> dict[str, Any]:
    """The record of a sample about several regions: one track, key-frame box and key frame per region."""
    regions = [sample.region(i) for i in range(sample.num_regions)]
    tracks = [first_track] + [
        [
            [clean_number(v) for v in box] if box is not None and seen else []
            for box, seen in zip(r.boxes, r.visible, strict=True)
        ]
        for r in regions[1:]
    ]
    for name in ("kind", "objects"):
        if name in sample.metadata:
            record[name] = sample.metadata[name]
    record.update(
        {
            "track_list": tracks,
            "frame_path": relative_to(sample, video, out_dir),
            "frame_id": list(sample.frame_ids),
            "key_frame_box": [[clean_number(v) for v in r.key_box] for r in regions],
            "key_frame_id": [r.frame_ids[r.key_index] for r in regions],
        }
    )
    if sample.width is not None and sample.height is not None:
        record["frame_size"] = [sample.width, sample.height]
    return record


def write(samples: list[RefSample], path: str | Path) -> Path:
    """Write samples as a VideoRef45K JSON list, atomically."""
    path = Path(path)
    return write_json_atomic(path, [to_record(s, path.parent) for s in samples], indent=None)
