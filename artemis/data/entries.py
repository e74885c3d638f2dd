"""Read annotation files into checked records: :func:`load_entries`.

Each record of each file becomes a :class:`~artemis.data.records.RecordEntry` classified into one of
:data:`~artemis.data.records.KINDS` and checked cheaply (texts, key box, files exist), so a bad record fails,
or is skipped, before training starts. :class:`~artemis.data.referring_dataset.ReferringDataset` and the cache
(:mod:`artemis.data.cache`) take the entries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from artemis.data import formats
from artemis.data.formats._common import load_record_list
from artemis.data.records import Kind, RecordEntry, RefSample
from artemis.errors import AnnotationError, ConfigError
from artemis.prompts import IMAGE_TOKEN, VIDEO_TOKEN, referring_prompt

logger = logging.getLogger(__name__)

# Formats whose files are JSON lists parsed record by record, so one bad record can be skipped alone.
_PER_RECORD_FORMATS = ("videoref45k", "elysium", "llava")

__all__ = ["conversation_turns", "load_entries", "read_track_records"]


def _read_file(fmt: str, path: Path, skip: bool, skipped: list[AnnotationError]) -> list[tuple[int, RefSample]]:
    """``(index, sample)`` of every readable record; bad ones raise, or are skipped and collected."""
    module = formats.get_format(fmt)
    if fmt not in _PER_RECORD_FORMATS:
        # HC-STVG (a JSON object), LaSOT and OTB (folders) are read whole; a bad record fails the file.
        return list(enumerate(module.read(path)))
    out = []
    for index, record in enumerate(load_record_list(path, fmt)):
        try:
            out.append((index, module.parse_record(record, path, index)))
        except AnnotationError as error:
            if not skip:
                raise
            skipped.append(error)
    return out


def _read_files(fmt: str, path: Path, skip: bool, skipped: list[AnnotationError]) -> list[tuple[Path, int, RefSample]]:
    """``(file, index, sample)``: a folder of a JSON-list format is every ``*.json`` in it, in name order
    (the original Artemis reads VideoRef45K so); each record keeps its own file and index."""
    if fmt in _PER_RECORD_FORMATS and path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise FileNotFoundError(f"{path} holds no *.json file; give a {fmt} JSON file or a folder of them")
    else:
        files = [path]
    return [(file, index, sample) for file in files for index, sample in _read_file(fmt, file, skip, skipped)]


def conversation_turns(entry: RecordEntry) -> list[tuple[str, str]]:
    """The conversation as ``[(user, answer), ...]`` with exactly one ``<video>`` when there is media."""
    turns = entry.sample.conversations or []
    if len(turns) % 2:
        raise entry.error("conversations", f"{len(turns)} turns; the last human turn has no gpt answer to train on")
    pairs = [
        (turns[i]["value"].replace(IMAGE_TOKEN, VIDEO_TOKEN), turns[i + 1]["value"]) for i in range(0, len(turns), 2)
    ]
    count = sum(user.count(VIDEO_TOKEN) + answer.count(VIDEO_TOKEN) for user, answer in pairs)
    if entry.kind == "text":
        if count:
            raise entry.error(
                "conversations", f"mentions {VIDEO_TOKEN}/{IMAGE_TOKEN} but the record has no video or image"
            )
        return pairs
    if count > 1:
        raise entry.error("conversations", f"has {count} {VIDEO_TOKEN}/{IMAGE_TOKEN} placeholders; expected one")
    if count == 0:  # LLaVA data sometimes omits it; the media then goes before the first question
        pairs[0] = (f"{VIDEO_TOKEN}\n{pairs[0][0]}", pairs[0][1])
    return pairs


def _check_entry(entry: RecordEntry) -> None:
    """Cheap checks done once at construction, so a bad record fails (or is skipped) before training."""
    sample = entry.sample
    if entry.kind == "referring":
        if (sample.answer or sample.caption) is None:
            raise entry.error("caption", "a referring record needs a caption or an answer to train on")
        if sample.question is not None:
            try:
                referring_prompt(sample.question, num_regions=sample.num_regions)
            except ValueError as error:
                raise entry.error("question", str(error)) from None
        for region in range(sample.num_regions):
            try:
                sample.region(region).key_box  # noqa: B018 - raises when the key frame has no box
            except AnnotationError as error:
                where = f" (region{region + 1})" if sample.num_regions > 1 else ""
                raise entry.error("key_frame_id", str(error).rsplit(": ", 1)[-1] + where) from None
        if sample.video is None and sample.frame_paths is None:
            raise entry.error("video", "the record names no video file, frame folder or frame images")
    else:
        conversation_turns(entry)
    # Only existence is checked here (a stat); decoding problems surface when the item is read.
    if sample.frame_paths is not None:
        paths = [sample.resolve(p) for p in sample.frame_paths]
    elif "video_clip" in sample.metadata:  # the original's precomputed features stand for the video
        paths = [sample.resolve(sample.metadata["video_clip"])]
    else:
        paths = [sample.resolve(sample.video if sample.video is not None else sample.image)]
    for path in paths:
        if path is not None and not path.exists():
            field_name = {"image": "image", "referring": "frame_path"}.get(entry.kind, "video")
            raise entry.error(field_name, f"the referenced file {path} does not exist")


def _kind(sample: RefSample) -> Kind:
    if sample.has_boxes:
        return "referring"
    if sample.video is not None:
        return "video"
    return "image" if sample.image is not None else "text"


def load_entries(
    files: Sequence[tuple[str, str | Path]], bad_records: Literal["raise", "skip"] = "raise"
) -> tuple[list[RecordEntry], list[AnnotationError]]:
    """Read and check every record of ``files``.

    Args:
        files: ``[(format, path), ...]``.
        bad_records: ``"raise"`` the first malformed record's :class:`AnnotationError`, or ``"skip"`` it.

    Returns:
        ``(entries, skipped)``: the good records and the errors of the skipped ones.
    """
    if bad_records not in ("raise", "skip"):
        raise ConfigError(f"bad_records={bad_records!r}; expected 'raise' or 'skip'")
    skip = bad_records == "skip"
    entries: list[RecordEntry] = []
    skipped: list[AnnotationError] = []
    for source, (fmt, path) in enumerate(files):
        for file, index, sample in _read_files(fmt, Path(path), skip, skipped):
            entry = RecordEntry(sample, file, index, fmt, _kind(sample), source)
            try:
                _check_entry(entry)
            except AnnotationError as error:
                if not skip:
                    raise
                skipped.append(error)
                continue
            entries.append(entry)
    for error in skipped:
        logger.warning("skipped a bad record: %s", error)
    if skipped:
        logger.warning("skipped %d bad records of %d", len(skipped), len(skipped) + len(entries))
    return entries, skipped


def read_track_records(
    fmt: str, path: str | Path, bad_records: Literal["raise", "skip"] = "raise"
) -> tuple[list[RefSample], list[AnnotationError]]:
    """The records of one file that carry a track, for box output (SOT / RSOT clips).

    A record must have boxes and its media must exist (a stat); no caption is needed (SOT needs none).

    Returns:
        ``(samples, skipped)``: the good records and the errors of the skipped ones (``bad_records="skip"``).
    """
    if bad_records not in ("raise", "skip"):
        raise ConfigError(f"bad_records={bad_records!r}; expected 'raise' or 'skip'")
    skipped: list[AnnotationError] = []
    samples: list[RefSample] = []
    for index, sample in _read_file(fmt, Path(path), bad_records == "skip", skipped):
        entry = RecordEntry(sample, Path(path), index, fmt, _kind(sample))
        media = sample.frame_paths if sample.frame_paths is not None else [sample.video]
        try:
            if entry.kind != "referring":
                raise entry.error("box", "the record has no track (per-frame boxes) to train box output on")
            if sample.num_regions > 1:
                raise entry.error(
                    "track_list",
                    f"the record is about {sample.num_regions} regions and box output follows one target; give "
                    "box output a file of one-region records (videoref45k.json or elysium_track.json)",
                )
            missing = [m for m in media if m is None or not sample.resolve(m).exists()]
            if missing:
                raise entry.error("frames", f"the referenced file {sample.resolve(missing[0])} does not exist")
        except AnnotationError as error:
            if bad_records == "raise":
                raise
            skipped.append(error)
            continue
        samples.append(sample)
    for error in skipped:
        logger.warning("skipped a bad record: %s", error)
    return samples, skipped
