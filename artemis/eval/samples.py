"""The records a model-driven evaluation runs over: ``--data FORMAT:PATH``, reading them, opening their frames.

:func:`read_samples` reads the records of a data set that have boxes; :func:`open_sample` opens one
record's frames through :mod:`artemis.video` in a ``with`` block, so whatever it opened is closed when the
block ends (also on an error).

``--data synthref:SPLIT_DIR`` (a split folder written by ``artemis data synthref``) reads the split's
SOT / RSOT records (``elysium_track.json``: exact boxes, the referring expression as description) and
starts each sequence on its target's first visible frame (:func:`from_first_visible`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from artemis.data.formats import get_format, read
from artemis.data.records import RefSample
from artemis.data.synthref_writer import TRACK_FILE
from artemis.errors import AnnotationError, VideoError
from artemis.video import ArrayVideo, ImageListVideo, VideoSource, opened

__all__ = ["SYNTHREF", "from_first_visible", "open_sample", "read_samples", "split_data_arg"]

SYNTHREF = "synthref"
"""``--data synthref:SPLIT_DIR``: a SynthRef split folder, not an annotation format."""


def split_data_arg(text: str, allowed: tuple[str, ...]) -> tuple[str, Path]:
    """``"FORMAT:PATH"`` as ``(format, path)``, checking the format is one of ``allowed`` and the path exists.

    Raises:
        AnnotationError: no ``:``, or a format that is unknown or not among ``allowed``.
        FileNotFoundError: the path does not exist.
    """
    name, sep, path = text.partition(":")
    if not sep or not path:
        raise AnnotationError(f"--data {text!r}: expected FORMAT:PATH with FORMAT one of {', '.join(allowed)}")
    if name not in allowed:
        if name != SYNTHREF:
            get_format(name)  # an unknown name: the error lists every format
        raise AnnotationError(f"--data format {name!r} cannot be used here; expected one of {', '.join(allowed)}")
    if not Path(path).exists():
        raise FileNotFoundError(f"--data {path}: no such file or directory")
    return name, Path(path)


def read_samples(text: str, allowed: tuple[str, ...], limit: int | None) -> tuple[str, Path, list[RefSample]]:
    """``(format, path, records)``: the records of ``"FORMAT:PATH"`` that have boxes, the first ``limit``.

    Raises:
        AnnotationError: a bad ``FORMAT:PATH`` (see :func:`split_data_arg`), or no record with boxes.
    """
    name, path = split_data_arg(text, allowed)
    if name == SYNTHREF:
        samples = read_synthref_split(path)
        return name, path, samples[:limit] if limit else samples
    samples = [s for s in read(name, path) if s.has_boxes]
    if not samples:
        raise AnnotationError(f"{path}: no records with boxes in format {name}")
    return name, path, samples[:limit] if limit else samples


def read_synthref_split(split_dir: Path) -> list[RefSample]:
    """The SOT / RSOT sequences of a SynthRef split: one per target, from its first visible frame on.

    Raises:
        AnnotationError: ``split_dir`` is not a split folder with ``elysium_track.json``.
    """
    records = split_dir / TRACK_FILE
    if not split_dir.is_dir() or not records.is_file():
        raise AnnotationError(
            f"--data synthref:{split_dir}: expected a SynthRef split folder holding {TRACK_FILE} (written by "
            f"artemis data synthref --out DIR --split NAME, which makes DIR/NAME); regenerate the split if it "
            "predates that file"
        )
    return [from_first_visible(s) for s in read("elysium", records) if s.has_boxes and any(s.visible)]


def from_first_visible(sample: RefSample) -> RefSample:
    """The record cut to start on the first frame where its target is visible (itself when that is frame 1).

    SOT starts from the first visible box, as a tracker is started on the first frame of an OTB or LaSOT
    sequence; the frames before it are not part of the sequence, so they are neither predicted nor scored.

    Raises:
        AnnotationError: the target is never visible.
    """
    start = next((i for i, seen in enumerate(sample.visible) if seen and sample.boxes[i] is not None), None)
    if start is None:
        raise AnnotationError(f"record {sample.sample_id}: the target is never visible; there is no box to start from")
    if start == 0:
        return sample
    key = sample.key_frame_id if sample.key_frame_id in sample.frame_ids[start:] else sample.frame_ids[start]
    paths = None if sample.frame_paths is None else sample.frame_paths[start:]
    return replace(
        sample,
        frame_ids=sample.frame_ids[start:],
        frame_paths=paths,
        boxes=sample.boxes[start:],
        visible=sample.visible[start:],
        key_frame_id=key,
        metadata={**sample.metadata, "first_visible_frame": sample.frame_ids[start]},
    )


@contextmanager
def open_sample(sample: RefSample, *, whole_video: bool) -> Iterator[tuple[VideoSource, list[int]]]:
    """A record's frames as a video source, and the source index of each annotated frame; closed on exit.

    With ``whole_video`` a video file is read whole (the model sees every frame, boxes sit at their frame
    ids). Otherwise only the annotated frames are used, in order: a video file whose annotated frames are
    not all its first ones has those frames decoded (the file is closed at once). A record given as a list
    of images (ElysiumTrack-1M) is an :class:`~artemis.video.ImageListVideo`, read one image at a time.

    >>> with open_sample(sample, whole_video=False) as (video, positions):  # doctest: +SKIP
    ...     track = track_video(video, sample.boxes[0], positions[0])

    Raises:
        VideoError: a record without video and frame paths, or a file that cannot be read.
    """
    if sample.video is not None:
        path = sample.resolve(sample.video)
        if whole_video or sample.frame_ids == list(range(len(sample.frame_ids))):
            with opened(path) as video:
                yield video, list(sample.frame_ids)
            return
        with opened(path) as video:
            frames = video.get_frames(sample.frame_ids)  # (T, H, W, 3)
        with ArrayVideo(frames) as subset:
            yield subset, list(range(len(sample.frame_ids)))
        return
    if sample.frame_paths:
        with ImageListVideo([sample.resolve(p) for p in sample.frame_paths]) as video:
            yield video, list(range(video.num_frames))
        return
    raise VideoError(f"record {sample.sample_id} has no video and no frame paths; it cannot be run")
