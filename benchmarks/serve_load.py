"""Load on ``artemis serve`` over loopback: N concurrent clients, each sending R describe requests.

python benchmarks/serve_load.py [--url http://127.0.0.1:8000 --pid PID] [--clients 32] [--requests 5]
                                [--video PATH] [--queue 16] [--workers 1] [--deadline 900]
                                [--memory-budget-mb 100]

Without --url it starts ``artemis serve`` on a free loopback port and stops it at the end. One warm-up
request goes first (the server allocates lazily on its first request), then the server's memory is taken
as the baseline. The load runs in R rounds: in each, the N clients send one request at once; the server's
memory is taken after every round. Every request must end in a 200 or a 429 (the queue is full); anything
else is counted, and "lost" is what ended in neither. ``memory_ok`` says whether the memory after the run is
within --memory-budget-mb of the baseline. Prints one JSON object; exits 1 when something was lost or the
memory is over budget. Rounds wait for their slowest request, so the wall time is a little longer than
for clients that each send their requests back to back. The run stops by itself, bounded by --deadline seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "reference" / "videos" / "realshort.mp4"
BOX, FRAME = "100,60,220,200", "5"


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of the server and its worker processes, in MB."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss + sum(child.memory_info().rss for child in process.children(recursive=True))
    except psutil.Error:
        return None
    return round(total / 2**20, 1)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def describe(url: str, video: bytes, http: httpx.AsyncClient, results: list) -> None:
    began = time.monotonic()
    try:
        files = {"video": ("realshort.mp4", video, "video/mp4")}
        response = await http.post(f"{url}/v1/describe", files=files, data={"box": BOX, "frame": FRAME})
        results.append((response.status_code, time.monotonic() - began))
    except httpx.TransportError as error:
        results.append((type(error).__name__, time.monotonic() - began))


async def load(
    url: str, video: bytes, clients: int, rounds: int, deadline: float, pid: int | None
) -> tuple[list, float, list]:
    """``rounds`` rounds of ``clients`` concurrent requests; the results, the wall time and the server's
    memory after every round."""
    results: list = []
    rss_rounds: list = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(deadline), limits=limits) as http:
        began = time.monotonic()
        stop_at = began + deadline
        for _ in range(rounds):
            tasks = [asyncio.create_task(describe(url, video, http, results)) for _ in range(clients)]
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, stop_at - time.monotonic()))
            for task in pending:
                task.cancel()
            rss_rounds.append(rss_mb(pid))
            if pending:
                break
        return results, time.monotonic() - began, rss_rounds


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "artemis.cli", "serve", "--no-demo", "--port", str(port)]
    command += ["--queue", str(args.queue), "--workers", str(args.workers)]
    log = tempfile.NamedTemporaryFile(prefix="serve-load-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    stop_at = time.monotonic() + 300
    while time.monotonic() < stop_at:
        if process.poll() is not None:
            raise SystemExit(f"artemis serve exited; see {log.name}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"artemis serve did not start in 300 s; see {log.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument("--pid", type=int, default=None, help="the running server's pid, for its memory")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=5, help="describe requests per client")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--queue", type=int, default=16, help="--queue of the server this starts")
    parser.add_argument("--workers", type=int, default=1, help="--workers of the server this starts")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds the whole run may take")
    parser.add_argument(
        "--memory-budget-mb", type=float, default=100.0, help="growth of the server's memory over the run allowed"
    )
    args = parser.parse_args(argv)

    process, url, pid = None, args.url, args.pid
    if url is None:
        process, url = start_server(args)
        pid = process.pid
    assert url.startswith(("http://127.0.0.1", "http://localhost")), "load tests run on loopback only"
    video = args.video.read_bytes()
    try:
        rss_start = rss_mb(pid)
        warm_up, _, _ = asyncio.run(load(url, video, 1, 1, args.deadline, pid))
        rss_before = rss_mb(pid)
        results, wall, rss_rounds = asyncio.run(load(url, video, args.clients, args.requests, args.deadline, pid))
        rss_after = rss_mb(pid)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)

    sent = args.clients * args.requests
    growth = None if rss_before is None or rss_after is None else rss_after - rss_before
    ok = [seconds for status, seconds in results if status == 200]
    busy = sum(1 for status, _ in results if status == 429)
    other: dict[str, int] = {}
    for status, _ in results:
        if isinstance(status, int) and status not in (200, 429):
            other[str(status)] = other.get(str(status), 0) + 1
    dropped = sum(1 for status, _ in results if not isinstance(status, int))
    report = {
        "url": url,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "sent": sent,
        "ok_200": len(ok),
        "busy_429": busy,
        "other_statuses": other,
        "dropped": dropped,
        "unfinished": sent - len(results),
        "lost": sent - len(ok) - busy,
        "latency_p50_s": percentile(ok, 0.50),
        "latency_p95_s": percentile(ok, 0.95),
        "throughput_rps": round(len(ok) / wall, 3) if wall else None,
        "wall_s": round(wall, 2),
        "warm_up_status": warm_up[0][0] if warm_up else None,
        "server_rss_mb_start": rss_start,
        "server_rss_mb_before": rss_before,  # after the warm-up request
        "server_rss_mb_rounds": rss_rounds,
        "server_rss_mb_after": rss_after,
        "server_rss_mb_growth": None if growth is None else round(growth, 1),
        "memory_budget_mb": args.memory_budget_mb,
        "memory_ok": None if growth is None else growth <= args.memory_budget_mb,  # None: no --pid to measure
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report))
    return 0 if report["lost"] == 0 and report["memory_ok"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
