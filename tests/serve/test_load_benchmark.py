"""benchmarks/serve_load.py on a tiny setting against the running test server: its report, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.reference]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"
KEYS = {
    "url", "clients", "requests_per_client", "sent", "ok_200", "busy_429", "other_statuses", "dropped",
    "unfinished", "lost", "latency_p50_s", "latency_p95_s", "throughput_rps", "wall_s",
    "warm_up_status", "server_rss_mb_start", "server_rss_mb_before", "server_rss_mb_rounds", "server_rss_mb_after",
    "server_rss_mb_growth", "memory_budget_mb", "memory_ok", "cpus",
}  # fmt: skip


def test_load_benchmark_loses_nothing(server, video):
    command = [sys.executable, str(SCRIPT), "--url", server.url, "--pid", str(server.process.pid)]
    command += ["--clients", "2", "--requests", "2", "--video", str(video), "--deadline", "120"]
    # The test server is shared with the other tests; the 100 MB budget is the full benchmark's to check.
    command += ["--memory-budget-mb", "1000"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) == KEYS
    assert report["warm_up_status"] == 200
    assert report["sent"] == 4 and report["ok_200"] + report["busy_429"] == 4
    assert report["lost"] == report["dropped"] == report["unfinished"] == 0 and report["other_statuses"] == {}
    assert report["server_rss_mb_start"] > 0 and report["server_rss_mb_before"] > 0
    assert len(report["server_rss_mb_rounds"]) == 2 and report["server_rss_mb_after"] > 0
    assert report["memory_ok"] is True
