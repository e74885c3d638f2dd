"""``artemis serve --workers 2``: two model processes behind one port, both stopped with the server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from conftest import launch, stop

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 90  # two models load at once on a shared machine


def health(url: str) -> dict:
    with httpx.Client(timeout=10) as client:  # a new connection each time, so either worker may take it
        return client.get(f"{url}/healthz").json()


def test_two_workers_answer_and_stop_with_the_server(tmp_path):
    server = launch(tmp_path, "--workers", "2", "--no-demo")
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        with ThreadPoolExecutor(8) as pool:
            while len(workers) < 2 and time.monotonic() < deadline:  # each worker answers once its model loaded
                assert server.process.poll() is None, server.log.read_text()[-3000:]
                try:
                    answers = list(pool.map(health, [server.url] * 8))
                except httpx.TransportError:
                    time.sleep(0.5)
                    continue
                assert all(answer["status"] == "ok" for answer in answers)
                workers |= {answer["worker"] for answer in answers}
        log = server.log.read_text()[-3000:]
        assert len(workers) == 2, f"answers came from workers {workers} in {STARTUP_SECONDS} s:\n{log}"
        children = {child.pid for child in psutil.Process(server.process.pid).children(recursive=True)}
        assert workers <= children and server.process.pid not in workers  # worker processes under the server
    finally:
        stop(server)
    assert server.process.returncode is not None
    deadline = time.monotonic() + 10
    while (leftover := [pid for pid in workers if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftover, f"worker processes {leftover} outlived the server"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
