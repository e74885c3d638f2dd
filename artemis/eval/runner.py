"""Run a predictor over a data set, resumably: one JSON line per finished sample.

``predictions.jsonl`` is the run's state. Each finished sample is appended as one line and flushed to
disk (``fsync``) before the next starts, so a killed run loses at most the sample in progress. On
restart, ids already in the file are skipped; a last line cut short by the kill is dropped (the file
is truncated back to its last complete line) and that sample is redone. ``run.json`` records the
settings of the run, and a restart with different settings is refused instead of mixing two runs in
one file. At the end :func:`finish_run` writes ``metrics.json`` (atomically) and ``report.md``.

Sharded runs (several processes, e.g. ``torchrun --nproc-per-node N -m artemis.cli eval ...``): a
:class:`Shard` (rank ``r`` of ``n``, from ``RANK`` / ``WORLD_SIZE``) takes every n-th sample not yet done
and appends it to its own file, ``shards/rank-<r>-of-<n>.jsonl``, with the same per-line flush and sync.
No process group is used: when a rank is done it writes a marker file (``rank-<r>-of-<n>.done``), and
rank 0 polls (bounded by ``shard_timeout``) until every rank's marker is there and the shard files hold
every requested id, then merges them into ``predictions.jsonl`` (atomically, in sample order after the
lines it already had) and removes the shard files. Finished samples are read from ``predictions.jsonl``
and from every shard file left in ``shards/`` (of any world size), so a killed sharded run resumes, and a
run resumed with another number of processes, or in one process, gives the same predictions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from artemis.errors import AnnotationError, ConfigError, OutputError
from artemis.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

__all__ = ["PREDICTIONS_FILE", "RunResult", "Shard", "finish_run", "read_predictions", "run_predictions"]

PREDICTIONS_FILE = "predictions.jsonl"
RUN_FILE = "run.json"
SHARDS_DIR = "shards"
DEFAULT_SHARD_TIMEOUT = 24 * 3600.0
"""Seconds rank 0 waits for the other ranks' shards before giving up (an eval of a large set is slow)."""

S = TypeVar("S")


@dataclass(frozen=True)
class Shard:
    """One process of a sharded run: it predicts the samples whose position ``i`` has ``i % world_size == rank``.

    Attributes:
        rank: this process, ``0 <= rank < world_size``; rank 0 merges the shards.
        world_size: the number of processes.
    """

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(
                f"shard rank {self.rank} of world size {self.world_size}; expected 0 <= rank < world size "
                "(torchrun sets RANK and WORLD_SIZE)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Shard:
        """The shard ``torchrun`` (or any launcher) describes with ``RANK`` and ``WORLD_SIZE``; 0 of 1 without."""
        environ = os.environ if environ is None else environ
        try:
            return cls(int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1")))
        except ValueError:
            raise ConfigError(
                f"RANK={environ.get('RANK')!r} / WORLD_SIZE={environ.get('WORLD_SIZE')!r} are not integers; "
                "unset them or launch with torchrun"
            ) from None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that merges the shards and writes the scores."""
        return self.rank == 0

    @property
    def name(self) -> str:
        return f"rank-{self.rank}-of-{self.world_size}"


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_predictions` did.

    Attributes:
        records: one record per requested sample, in sample order (resumed and new alike); on a rank
            other than 0 of a sharded run, empty (rank 0 merges and scores).
        num_resumed: samples found finished in an earlier run.
        num_new: samples predicted by this process.
        path: the predictions file (this rank's shard file on ranks other than 0).

        complete: ``records`` hold every requested sample (False on ranks other than 0 of a sharded run).
    """

    records: list[dict[str, Any]]
    num_resumed: int
    num_new: int
    path: Path
    complete: bool = True


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


def _check_run_settings(out_dir: Path, settings: Mapping[str, Any], *, write: bool = True) -> None:
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
    if write:  # one writer: in a sharded run, rank 0
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
    shard: Shard | None = None,
    shard_timeout: float = DEFAULT_SHARD_TIMEOUT,
    poll_interval: float = 0.5,
) -> RunResult:
    """Predict every sample not already in ``out_dir/predictions.jsonl`` and append it there.

    Args:
        samples: the samples, in the order to run and report them.
        predict: returns a JSON-ready record for one sample; its ``id`` is set to ``sample_id(sample)``.
            An exception stops the run; finished lines stay and a rerun resumes after them.
        out_dir: output directory (created).
        sample_id: the unique id of a sample.
        settings: what defines the run (model, data, seed...); a rerun with different settings is refused.
            The number of processes is not a setting: a sharded run may resume with another.
        description: label of the progress bar.
        progress: show a tqdm bar on stderr.
        shard: this process of a sharded run (:meth:`Shard.from_env`); None runs everything here.
        shard_timeout / poll_interval: how long (seconds) rank 0 waits for the other ranks, and how often
            it looks.

    Returns:
        The records of all ``samples`` (earlier and new) and the counts; on ranks other than 0, no records
        (``complete`` False).

    Raises:
        ConfigError: ``out_dir`` holds a run with other settings, or two samples share an id.
        AnnotationError: the predictions file is damaged before its last line.
        OutputError: rank 0 waited ``shard_timeout`` seconds for ranks that did not finish.
    """
    from tqdm import tqdm

    shard = shard or Shard()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [str(sample_id(s)) for s in samples]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"sample id {duplicate!r} appears twice in the data; ids must be unique to resume")
    if settings is not None:
        _check_run_settings(out_dir, settings, write=shard.is_main)
    path = out_dir / PREDICTIONS_FILE
    shard_dir = out_dir / SHARDS_DIR
    if shard.world_size == 1:
        _merge_shards(out_dir, ids)  # what a killed sharded run left; no other process runs now
        target = path
        done = read_predictions(path, repair=True)
    else:
        shard_dir.mkdir(exist_ok=True)
        target = shard_dir / f"{shard.name}.jsonl"
        (shard_dir / f"{shard.name}.done").unlink(missing_ok=True)
        # Done anywhere counts: the merged file and every shard file, of this world size or an earlier one.
        done = {**_finished_records(out_dir, skip=target), **read_predictions(target, repair=True)}
    mine = [i for i in range(len(ids)) if i % shard.world_size == shard.rank]
    todo = [(ids[i], samples[i]) for i in mine if ids[i] not in done]
    resumed = len(mine) - len(todo)
    if resumed:
        logger.info("%s: %d of %d samples already done; resuming", target, resumed, len(mine))
    label = description if shard.world_size == 1 else f"{description} [{shard.rank}/{shard.world_size}]"
    with (
        target.open("a", encoding="utf-8") as handle,
        tqdm(total=len(mine), initial=resumed, desc=label, unit="sample", disable=not progress) as bar,
    ):
        for key, sample in todo:
            record = {**predict(sample), "id": key}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            # Flushed and synced per line: a kill at any moment leaves every finished sample on disk.
            handle.flush()
            os.fsync(handle.fileno())
            done[key] = record
            bar.update(1)
    if shard.world_size == 1:
        return RunResult(records=[done[i] for i in ids], num_resumed=resumed, num_new=len(todo), path=path)
    shard_dir.mkdir(exist_ok=True)  # rank 0 may have merged and removed it already (nothing was left to do)
    write_json_atomic(shard_dir / f"{shard.name}.done", {"ids": [ids[i] for i in mine]})
    if not shard.is_main:
        return RunResult(records=[], num_resumed=resumed, num_new=len(todo), path=target, complete=False)
    _wait_for_shards(out_dir, ids, shard.world_size, shard_timeout, poll_interval)
    records = _merge_shards(out_dir, ids)
    return RunResult(records=[records[i] for i in ids], num_resumed=resumed, num_new=len(todo), path=path)


def _shard_files(out_dir: Path) -> list[Path]:
    shard_dir = out_dir / SHARDS_DIR
    return sorted(shard_dir.glob("rank-*.jsonl")) if shard_dir.is_dir() else []


def _finished_records(out_dir: Path, skip: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every finished record of ``out_dir``: ``predictions.jsonl`` first, then each shard file (read only)."""
    records = read_predictions(out_dir / PREDICTIONS_FILE)
    for path in _shard_files(out_dir):
        if path != skip:
            for key, record in read_predictions(path).items():
                records.setdefault(key, record)
    return records


def _wait_for_shards(out_dir: Path, ids: Sequence[str], world_size: int, timeout: float, interval: float) -> None:
    """Poll until every rank's marker is written and the shard files hold every id (rank 0 only).

    A marker alone could be left by an earlier killed run, so the records themselves are checked too.
    """
    shard_dir = out_dir / SHARDS_DIR
    markers = [shard_dir / f"{Shard(rank, world_size).name}.done" for rank in range(world_size)]
    deadline = time.monotonic() + timeout
    while True:
        waiting = [m.name for m in markers if not m.is_file()]
        missing = [] if waiting else [i for i in ids if i not in _finished_records(out_dir)]
        if not waiting and not missing:
            return
        if time.monotonic() > deadline:
            what = f"markers {', '.join(waiting)}" if waiting else f"{len(missing)} samples (first {missing[0]!r})"
            raise OutputError(
                f"rank 0 waited {timeout:.0f} s for the other ranks and is still missing {what} in {shard_dir}; "
                "a rank failed or is still running: run the command again to resume"
            )
        time.sleep(interval)


def _merge_shards(out_dir: Path, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Move the shard files' records into ``predictions.jsonl`` and remove the shard files.

    The file keeps its lines; records it lacks follow in sample order (ids not among ``ids``, from an
    earlier run over more samples, last). It is rewritten atomically before any shard file goes, so a kill
    at any point loses nothing; a record found twice is the same sample, kept once.

    Returns:
        Every record of the merged file, by id.
    """
    path = out_dir / PREDICTIONS_FILE
    records = read_predictions(path, repair=True)
    files = _shard_files(out_dir)
    if not files:
        return records
    added = {key: record for key, record in _finished_records(out_dir).items() if key not in records}
    if added:
        order = {key: position for position, key in enumerate(ids)}
        keys = sorted(added, key=lambda key: order.get(key, len(order)))
        lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records.values()]
        lines += [json.dumps(added[key], ensure_ascii=False) + "\n" for key in keys]
        write_text_atomic(path, "".join(lines))
        records.update((key, added[key]) for key in keys)
        logger.info("%s: merged %d records from %d shard files", path, len(added), len(files))
    shard_dir = out_dir / SHARDS_DIR
    for leftover in (*files, *shard_dir.glob("rank-*.done")):
        leftover.unlink(missing_ok=True)
    # A file that is not ours, or a rank that wrote its marker just now: then the folder stays.
    with contextlib.suppress(OSError):
        shard_dir.rmdir()
    return records


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
