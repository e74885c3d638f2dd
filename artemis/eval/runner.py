"""Run a predictor over a data set, resumably: one JSON line per finished sample.

``predictions.jsonl`` is the run's state. Each finished sample is appended as one line and flushed to
disk (``fsync``) before the next starts, so a killed run loses at most the sample in progress. On
restart, ids already in the file are skipped; a last line cut short by the kill is dropped (the file
is truncated back to its last complete line) and that sample is redone. ``run.json`` records the
settings of the run, and a restart with different settings is refused instead of mixing two runs in
one file. At the end :func:`finish_run` writes ``metrics.json`` (atomically) and ``report.md``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from artemis.errors import AnnotationError, ConfigError
from artemis.io import write_json_atomic

logger = logging.getLogger(__name__)

__all__ = ["PREDICTIONS_FILE", "RunResult", "finish_run", "read_predictions", "run_predictions"]

PREDICTIONS_FILE = "predictions.jsonl"
RUN_FILE = "run.json"

S = TypeVar("S")


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_predictions` did.

    Attributes:
        records: one record per requested sample, in sample order (resumed and new alike).
        num_resumed: samples found finished in an earlier run.
        num_new: samples predicted by this run.
        path: the predictions file.
    """

    records: list[dict[str, Any]]
    num_resumed: int
    num_new: int
    path: Path


def read_predictions(path: str | Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """The finished records of a predictions file, by id.

    A last line without its newline, or that is not valid JSON, is what a kill leaves behind: it is
    ignored (and with ``repair`` cut off the file, so appending starts on a fresh line). A bad line
    anywhere else means the file was damaged some other way and is an error.

    Raises:
        AnnotationError: a malformed line before the last, a record without ``id``, or an id twice.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    # Everything up to the last newline was written whole (a line and its newline go out in one write);
    # what follows it, if anything, is a line a kill cut short.
    finished, newline, tail = data.rpartition(b"\n")
    good_end = len(finished) + len(newline)
    if tail.strip():
        logger.warning("%s: ignoring an unfinished last line (a killed run); that sample is redone", path)
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(finished.split(b"\n") if newline else [], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AnnotationError(f"{path}, line {number}: not valid JSON; the predictions file is damaged") from None
        if not isinstance(record, dict) or "id" not in record:
            raise AnnotationError(f"{path}, line {number}: expected a JSON object with an 'id'")
        key = str(record["id"])
        if key in records:
            raise AnnotationError(f"{path}, line {number}: id {key!r} appears twice")
        records[key] = record
    if repair and good_end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
            handle.flush()
            os.fsync(handle.fileno())
    return records


def _check_run_settings(out_dir: Path, settings: Mapping[str, Any]) -> None:
    """Refuse to resume a run made with other settings; record them for a fresh run."""
    run_file = out_dir / RUN_FILE
    wanted = json.loads(json.dumps(dict(settings)))  # as it reads back from JSON (tuples -> lists)
    if run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        if previous != wanted:
            changed = sorted(k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k))
            raise ConfigError(
                f"{out_dir} holds a run with other settings ({', '.join(changed)} differ); "
                f"use another --out or delete {out_dir / PREDICTIONS_FILE} and {run_file}"
            )
    elif (out_dir / PREDICTIONS_FILE).is_file():
        logger.warning("%s has predictions but no %s; resuming without a settings check", out_dir, RUN_FILE)
    write_json_atomic(run_file, wanted)


def run_predictions(
    samples: Sequence[S],
    predict: Callable[[S], Mapping[str, Any]],
    out_dir: str | Path,
    *,
    sample_id: Callable[[S], str],
    settings: Mapping[str, Any] | None = None,
    description: str = "predicting",
    progress: bool = True,
) -> RunResult:
    """Predict every sample not already in ``out_dir/predictions.jsonl`` and append it there.

    Args:
        samples: the samples, in the order to run and report them.
        predict: returns a JSON-ready record for one sample; its ``id`` is set to ``sample_id(sample)``.
            An exception stops the run; finished lines stay and a rerun resumes after them.
        out_dir: output directory (created).
        sample_id: the unique id of a sample.
        settings: what defines the run (model, data, seed...); a rerun with different settings is refused.
        description: label of the progress bar.
        progress: show a tqdm bar on stderr.

    Returns:
        The records of all ``samples`` (earlier and new) and the counts.

    Raises:
        ConfigError: ``out_dir`` holds a run with other settings, or two samples share an id.
        AnnotationError: the predictions file is damaged before its last line.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [str(sample_id(s)) for s in samples]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"sample id {duplicate!r} appears twice in the data; ids must be unique to resume")
    if settings is not None:
        _check_run_settings(out_dir, settings)
    path = out_dir / PREDICTIONS_FILE
    done = read_predictions(path, repair=True)
    todo = [(i, s) for i, s in zip(ids, samples, strict=True) if i not in done]
    resumed = len(ids) - len(todo)
    if resumed:
        logger.info("%s: %d of %d samples already done; resuming", path, resumed, len(ids))
    with (
        path.open("a", encoding="utf-8") as handle,
        tqdm(total=len(ids), initial=resumed, desc=description, unit="sample", disable=not progress) as bar,
    ):
        for key, sample in todo:
            record = {**predict(sample), "id": key}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            # Flushed and synced per line: a kill at any moment leaves every finished sample on disk.
            handle.flush()
            os.fsync(handle.fileno())
            done[key] = record
            bar.update(1)
    return RunResult(records=[done[i] for i in ids], num_resumed=resumed, num_new=len(todo), path=path)


def finish_run(
    out_dir: str | Path,
    title: str,
    metrics: Mapping[str, Any],
    notes: str | Sequence[str] = (),
    *,
    extra: Mapping[str, Any] | None = None,
    images: Sequence[str | Path] = (),
) -> Path:
    """Write ``metrics.json`` (``metrics`` plus ``extra``, atomically) and ``report.md``.

    ``extra`` holds what belongs in the JSON but not in the report's table (curves, per-sequence
    scores). Returns the metrics path.
    """
    from artemis.eval.report import write_report

    out_dir = Path(out_dir)
    metrics_path = write_json_atomic(out_dir / "metrics.json", {**metrics, **(extra or {})})
    write_report(out_dir / "report.md", title, metrics, notes, images=images)
    return metrics_path
