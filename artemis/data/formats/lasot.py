"""LaSOT single-object tracking annotations.

Two layouts are read:

* the real data set: ``<seq>/groundtruth.txt`` (``x,y,w,h`` per frame, 1-based pixels),
  ``<seq>/full_occlusion.txt`` and ``<seq>/out_of_view.txt`` (0/1 per frame), ``<seq>/nlp.txt`` (one
  sentence, used as the caption) and ``<seq>/img/00000001.jpg`` ...;
* the evaluation toolkit's ``annos/``: ``<seq>.groundtruth.txt`` with ``<seq>.absent.txt``.

``path`` may be a sequence folder, one of these files, or a folder searched recursively for them.
Visibility: an ``out_of_view`` frame has no box; a ``full_occlusion`` or toolkit ``absent`` frame keeps its
box (the toolkit's absent frames carry non-zero boxes) with ``visible`` False; a zero-size row has no box.
The frame size is known only when ``img/`` exists (then boxes are clipped to it).

The writer produces the real layout (annotations only; frames are not copied).
"""

from __future__ import annotations

from pathlib import Path

from artemis.data.formats._common import read_box_rows, read_flags
from artemis.data.formats._sequence import dense_rows, sequence_name, sequence_sample
from artemis.data.records import RefSample, record_error
from artemis.io import write_text_atomic

NAME = "lasot"
HAS_BOXES = True
TOOLKIT_SUFFIX = ".groundtruth.txt"


def _read_sequence_dir(folder: Path) -> RefSample:
    annotation = folder / "groundtruth.txt"
    rows = read_box_rows(annotation)
    hidden = out_of_view = None
    if (folder / "full_occlusion.txt").is_file():
        hidden = read_flags(folder / "full_occlusion.txt", len(rows))
    if (folder / "out_of_view.txt").is_file():
        out_of_view = read_flags(folder / "out_of_view.txt", len(rows))
    caption = None
    if (folder / "nlp.txt").is_file():
        caption = (folder / "nlp.txt").read_text(encoding="utf-8").strip() or None
    return sequence_sample(
        folder.name, NAME, rows, annotation, folder, hidden=hidden, out_of_view=out_of_view, caption=caption
    )


def _read_toolkit_file(annotation: Path) -> RefSample:
    name = annotation.name[: -len(TOOLKIT_SUFFIX)]
    rows = read_box_rows(annotation)
    absent_file = annotation.with_name(name + ".absent.txt")
    hidden = read_flags(absent_file, len(rows)) if absent_file.is_file() else None
    return sequence_sample(name, NAME, rows, annotation, annotation.parent, hidden=hidden)


def read(path: str | Path) -> list[RefSample]:
    """Read LaSOT sequences from a sequence folder, an annotation file, or a folder of either.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        AnnotationError: if nothing LaSOT-like is found, or a file is malformed (naming it and the line).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LaSOT annotations not found: {path}")
    if path.is_file():
        if path.name == "groundtruth.txt":
            return [_read_sequence_dir(path.parent)]
        if path.name.endswith(TOOLKIT_SUFFIX):
            return [_read_toolkit_file(path)]
        raise record_error(path, None, None, f"expected groundtruth.txt or <seq>{TOOLKIT_SUFFIX} (LaSOT)")
    if (path / "groundtruth.txt").is_file():
        return [_read_sequence_dir(path)]
    samples = [_read_sequence_dir(p.parent) for p in sorted(path.rglob("groundtruth.txt"))]
    samples += [_read_toolkit_file(p) for p in sorted(path.rglob("*" + TOOLKIT_SUFFIX))]
    if not samples:
        raise record_error(
            path, None, None, f"no LaSOT annotations found (expected <seq>/groundtruth.txt or <seq>{TOOLKIT_SUFFIX})"
        )
    return samples


def write(samples: list[RefSample], path: str | Path) -> Path:
    """Write each sample as ``path/<seq>/{groundtruth,full_occlusion,out_of_view,nlp}.txt``, atomically."""
    path = Path(path)
    for sample in samples:
        folder = path / sequence_name(sample)
        rows, hidden, out_of_view = dense_rows(sample)
        write_text_atomic(folder / "groundtruth.txt", "\n".join(rows) + "\n")
        # The real data set writes the flags on one comma-separated line.
        write_text_atomic(folder / "full_occlusion.txt", ",".join("1" if h else "0" for h in hidden) + "\n")
        write_text_atomic(folder / "out_of_view.txt", ",".join("1" if o else "0" for o in out_of_view) + "\n")
        if sample.caption:
            write_text_atomic(folder / "nlp.txt", sample.caption.strip() + "\n")
    return path
