"""Sharded evaluation runs: every rank takes every n-th sample, rank 0 merges; resumes stay exact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from predictors import Killed, squares

from artemis.errors import ConfigError, OutputError
from artemis.eval.runner import PREDICTIONS_FILE, SHARDS_DIR, Shard, run_predictions

SAMPLES = [f"s{i}" for i in range(7)]


def _run(out: Path, rank: int, world: int, calls: list[str] | None = None, kill_after: int | None = None, **kw):
    calls = [] if calls is None else calls
    return run_predictions(
        SAMPLES,
        squares(calls, kill_after),
        out,
        sample_id=lambda s: s,
        settings={"model": "m"},
        progress=False,
        shard=Shard(rank, world),
        poll_interval=0.01,
        **kw,
    )


def _sharded(out: Path, world: int) -> list[list[str]]:
    """Run the ranks one after the other, rank 0 last (it waits for the others' markers)."""
    calls: list[list[str]] = [[] for _ in range(world)]
    for rank in [*range(1, world), 0]:
        _run(out, rank, world, calls[rank])
    return calls


def _lines(out: Path) -> list[str]:
    return (out / PREDICTIONS_FILE).read_text().splitlines()


@pytest.fixture
def single(tmp_path: Path) -> list[str]:
    out = tmp_path / "single"
    _run(out, 0, 1)
    return _lines(out)


def test_shard_from_env() -> None:
    assert Shard.from_env({}) == Shard(0, 1)
    assert Shard.from_env({"RANK": "1", "WORLD_SIZE": "3"}) == Shard(1, 3)
    with pytest.raises(ConfigError, match="RANK"):
        Shard.from_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="rank 2 of world size 2"):
        Shard(2, 2)


def test_two_ranks_merge_to_the_single_process_file(tmp_path: Path, single: list[str]) -> None:
    out = tmp_path / "sharded"
    calls = _sharded(out, 2)
    assert calls == [["s0", "s2", "s4", "s6"], ["s1", "s3", "s5"]]  # every other sample each
    assert _lines(out) == single  # the same file, line for line, in sample order
    assert not (out / SHARDS_DIR).exists()  # shards merged and removed


def test_other_ranks_return_no_records(tmp_path: Path) -> None:
    result = _run(tmp_path, 1, 2)
    assert not result.complete and result.records == [] and result.num_new == 3
    assert result.path == tmp_path / SHARDS_DIR / "rank-1-of-2.jsonl"
    merged = _run(tmp_path, 0, 2)
    assert merged.complete and [r["id"] for r in merged.records] == SAMPLES


def test_killed_sharded_run_resumes_with_another_world_size(tmp_path: Path, single: list[str]) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        _run(out, 1, 2, kill_after=1)  # rank 1 dies after s1
    with pytest.raises(OutputError, match=r"rank-1-of-2\.done"):
        _run(out, 0, 2, shard_timeout=0.05)  # rank 0 finishes its share, waits, gives up
    # Resumed on three processes: nothing finished is redone, the merged file is the single run's.
    calls = _sharded(out, 3)
    assert sorted(s for own in calls for s in own) == ["s3", "s5"]
    assert sorted(_lines(out)) == sorted(single)
    assert {json.loads(line)["id"] for line in _lines(out)} == set(SAMPLES)


def test_one_process_resumes_a_killed_sharded_run(tmp_path: Path, single: list[str]) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        _run(out, 0, 2, kill_after=2)  # rank 0 dies after s0, s2
    _run(out, 1, 2)  # rank 1 finishes s1, s3, s5
    shard_file = out / SHARDS_DIR / "rank-0-of-2.jsonl"
    with shard_file.open("a") as handle:
        handle.write('{"value": 16, "id": "s')  # a line cut short by the kill
    calls: list[str] = []
    result = _run(out, 0, 1, calls)
    assert calls == ["s4", "s6"]
    assert sorted(_lines(out)) == sorted(single)
    assert [r["id"] for r in result.records] == SAMPLES
    assert not (out / SHARDS_DIR).exists()


def test_sharded_run_refuses_other_settings(tmp_path: Path) -> None:
    _run(tmp_path, 0, 1)
    with pytest.raises(ConfigError, match="model"):
        run_predictions(
            SAMPLES, squares([]), tmp_path, sample_id=lambda s: s, settings={"model": "other"},
            progress=False, shard=Shard(1, 2),
        )  # fmt: skip


# --- a real torchrun over `artemis eval synthref` -------------------------------------------------------


@pytest.fixture(scope="module")
def synthref_split(tmp_path_factory) -> Path:
    from artemis.data.synthref import SynthRefConfig
    from artemis.data.synthref_writer import generate_split

    config = SynthRefConfig(width=64, height=64, num_frames=8, min_objects=3, max_objects=3)
    return generate_split(tmp_path_factory.mktemp("synthref"), 3, seed=4, split="test", config=config).split_dir


def _eval(split: Path, out: Path, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    argv = ["-m", "artemis.cli", "eval", "synthref", "--data", str(split), "--out", str(out)]
    argv += ["--max-new-tokens", "12", "--json", *extra]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        command = [*launcher, *argv]
    else:
        command = [sys.executable, *argv]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, _lines(out))}


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path: Path, synthref_split: Path) -> None:
    one = _eval(synthref_split, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr
    two = _eval(synthref_split, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr
    assert _lines(tmp_path / "two") == _lines(tmp_path / "one")  # same records, same order
    assert json.loads(two.stdout) == json.loads(one.stdout)  # rank 0 alone prints the scores
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics == json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert not (tmp_path / "two" / SHARDS_DIR).exists()

    # A sharded run killed half-way (here: its merged file cut back to two records and one rank's shard
    # left behind) resumes on two processes to the same predictions.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed)
    lines = _lines(resumed)
    (resumed / PREDICTIONS_FILE).write_text("\n".join(lines[:2]) + "\n")
    (resumed / SHARDS_DIR).mkdir()
    (resumed / SHARDS_DIR / "rank-1-of-3.jsonl").write_text(lines[4] + "\n" + lines[6][:20])
    again = _eval(synthref_split, resumed, 2)
    assert again.returncode == 0, again.stderr
    assert _records(resumed) == _records(tmp_path / "one")
