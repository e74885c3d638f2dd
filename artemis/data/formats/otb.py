"""OTB single-object tracking annotations: ``<seq>/groundtruth_rect.txt`` and ``<seq>/img/0001.jpg`` ...

Rows are ``x y w h`` in 1-based pixels, separated by tabs, commas or spaces (OTB mixes all three). A
sequence with several targets has ``groundtruth_rect.1.txt``, ``groundtruth_rect.2.txt``: each becomes a
sample named ``<seq>.1``, ``<seq>.2``. Rows of zeros or NaN are absent frames (OTB has no visibility
flags). ``path`` may be a sequence folder, a ground-truth file, or a folder searched recursively.
The writer writes tab-separated ``groundtruth_rect.txt`` (annotations only; frames are not copied).
"""

from __future__ import annotations

from pathlib import Path

from artemis.data.formats._common import read_box_rows
from artemis.data.formats._sequence import dense_rows, sequence_name, sequence_sample
from artemis.data.records import RefSample, record_error
from artemis.io import write_text_atomic

NAME = "otb"
HAS_BOXES = True
PATTERN = "groundtruth_rect*.txt"


def _read_file(annotation: Path) -> RefSample:
    folder = annotation.parent
    middle = annotation.name[len("groundtruth_rect") : -len(".txt")]  # "" or ".2"
    return sequence_sample(folder.name + middle, NAME, read_box_rows(annotation), annotation, folder)


def read(path: str | Path) -> list[RefSample]:
    """Read OTB sequences from a sequence folder, a ``groundtruth_rect*.txt`` file, or a folder of them.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        AnnotationError: if no ground truth is found or a line is not 4 numbers (naming file and line).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"OTB annotations not found: {path}")
    if path.is_file():
        if not path.match(PATTERN):
            raise record_error(path, None, None, "expected a groundtruth_rect.txt file (OTB)")
        return [_read_file(path)]
    files = sorted(path.glob(PATTERN)) or sorted(path.rglob(PATTERN))
    if not files:
        raise record_error(path, None, None, "no OTB annotations found (expected <seq>/groundtruth_rect.txt)")
    return [_read_file(f) for f in files]


def write(samples: list[RefSample], path: str | Path) -> Path:
    """Write each sample as ``path/<seq>/groundtruth_rect.txt`` (tab-separated), atomically."""
    path = Path(path)
    for sample in samples:
        rows, _hidden, _out = dense_rows(sample)
        text = "\n".join(row.replace(",", "\t") for row in rows) + "\n"
        write_text_atomic(path / sequence_name(sample) / "groundtruth_rect.txt", text)
    return path
