"""Convert annotations between formats, and validate them (optionally against the files they name).

A conversion is ``read -> list[RefSample] -> write``. It is meaningful between the box formats
(``videoref45k``, ``elysium``, ``hcstvg``, ``lasot``, ``otb``) and from ``llava`` to ``llava``;
converting between a box format and ``llava`` is refused, since one side has boxes and the other none.
A target format may also need something the source lacks (a caption for ``videoref45k``/``hcstvg``, the
frame size for ``elysium``); the writer then names the sample and the missing field.
"""

from __future__ import annotations

import logging
from pathlib import Path

from artemis.data import formats
from artemis.data.records import RefSample, record_error
from artemis.errors import AnnotationError, VideoError

logger = logging.getLogger(__name__)

__all__ = ["check_files_of", "convert", "validate"]


def convert(src_format: str, dst_format: str, in_path: str | Path, out_path: str | Path) -> list[RefSample]:
    """Read ``in_path`` as ``src_format`` and write it to ``out_path`` as ``dst_format``.

    Returns:
        The samples written.

    Raises:
        AnnotationError: for unknown formats, a conversion that is not meaningful, or bad input.
    """
    src, dst = formats.get_format(src_format), formats.get_format(dst_format)
    if src.HAS_BOXES != dst.HAS_BOXES:
        boxed, plain = (src_format, dst_format) if src.HAS_BOXES else (dst_format, src_format)
        raise AnnotationError(
            f"cannot convert {src_format} to {dst_format}: {plain} records carry no boxes and {boxed} records "
            f"are boxes; box formats ({', '.join(formats.BOX_FORMATS)}) convert into one another, llava only to llava"
        )
    samples = src.read(Path(in_path))
    formats.write(dst_format, samples, out_path)  # refuses multi-region samples for one-region formats
    logger.info("converted %d samples from %s (%s) to %s (%s)", len(samples), in_path, src_format, out_path, dst_format)
    return samples


def validate(format_name: str, path: str | Path, *, check_files: bool = False) -> list[RefSample]:
    """Read and check the annotations at ``path``; with ``check_files`` also check the files they name.

    Reading already checks every record (required fields, box shape and area, boxes inside the frame,
    empty tracks, key frames among the annotated frames). ``check_files`` adds: the video file or frame
    folder exists, its frame count covers every annotated frame id, and its frame size matches the one
    the annotation states.

    Raises:
        AnnotationError: naming the file, the record and the field at fault.
    """
    samples = formats.read(format_name, path)
    if check_files:
        for index, sample in enumerate(samples):
            check_files_of(sample, Path(path), index)
    return samples


def check_files_of(sample: RefSample, annotation: Path, index: int) -> None:
    """Check that the files one sample names exist and cover its frames.

    Raises:
        AnnotationError: naming the annotation file, the record (index and id) and the field.
    """
    record = f"{index} ({sample.sample_id})"
    image = sample.resolve(sample.image)
    if image is not None and not image.exists():
        raise record_error(annotation, record, "image", f"the referenced image {image} does not exist")
    if sample.frame_paths is not None:
        for frame_id, frame_path in zip(sample.frame_ids, sample.frame_paths, strict=True):
            resolved = sample.resolve(frame_path)
            if resolved is None or not resolved.is_file():
                raise record_error(
                    annotation, record, "frames", f"the image of frame {frame_id} ({resolved}) does not exist"
                )
    resolved = sample.resolve(sample.video)
    if resolved is None:
        return
    if not resolved.exists():
        raise record_error(annotation, record, "video", f"the referenced video file {resolved} does not exist")
    if sample.frame_paths is not None or not sample.frame_ids:
        return
    from artemis.video import VideoReader  # imported here: reading annotations must not need a decoder

    try:
        with VideoReader(resolved) as reader:  # only the header is needed: frame count and size
            num_frames, width, height = reader.num_frames, reader.width, reader.height
    except VideoError as error:
        raise record_error(annotation, record, "video", str(error)) from None
    last = max(sample.frame_ids)
    if last >= num_frames:
        raise record_error(
            annotation, record, "frame_id", f"frame {last} does not exist: {resolved} has {num_frames} frames"
        )
    if sample.width is not None and (sample.width, sample.height) != (width, height):
        raise record_error(
            annotation,
            record,
            "frame_size",
            f"{sample.width}x{sample.height} does not match {resolved} ({width}x{height})",
        )
