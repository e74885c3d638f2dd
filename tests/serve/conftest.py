"""Real ``artemis serve`` processes for the serve tests, started once per session on free loopback ports.

The servers start together (they load their models in parallel): ``server`` with the defaults and the
web demo, ``limited_server`` with small limits (1 MB uploads, 40 frames, a queue of 1, a 0.5 s timeout),
and ``strict_server`` with a 0.01 s timeout, which no describe meets.
Each runs with its own TMPDIR, so a test can check that its upload folder is empty.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BOX = "100,60,220,200"
FRAME = 5
STARTUP_SECONDS = 240


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    tmpdir: Path
    log: Path

    def upload_files(self) -> list[Path]:
        """Everything left in the server's private upload folder (should be nothing between requests)."""
        roots = list(self.tmpdir.glob("artemis-serve-*"))
        assert roots, f"the server made no upload folder in {self.tmpdir}"
        return [path for root in roots for path in root.rglob("*")]

    def queue(self) -> dict:
        return httpx.get(f"{self.url}/v1/queue", timeout=10).json()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(tmp: Path, *args: str) -> Server:
    port = free_port()
    tmpdir = tmp / "tmp"
    tmpdir.mkdir()
    log = tmp / "server.log"
    env = {**os.environ, "TMPDIR": str(tmpdir), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, "-m", "artemis.cli", "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Server(f"http://127.0.0.1:{port}", port, process, tmpdir, log)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"artemis serve exited ({server.process.returncode}):\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"artemis serve not ready in {STARTUP_SECONDS} s:\n{server.log.read_text()[-3000:]}")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def servers(tmp_path_factory, reference_dir) -> dict[str, Server]:
    started = {
        "default": launch(tmp_path_factory.mktemp("serve-default")),
        "limited": launch(
            tmp_path_factory.mktemp("serve-limited"),
            *("--no-demo", "--max-upload-mb", "1", "--max-frames", "40", "--queue", "1", "--timeout", "0.5"),
        ),
        # No describe (decoding, tracking, the vision tower, generation) finishes in 10 ms on a CPU, so
        # the timeout is met whatever the machine's speed; the limited server's 0.5 s no longer was.
        "strict": launch(tmp_path_factory.mktemp("serve-strict"), "--no-demo", "--timeout", "0.01"),
    }
    try:
        for server in started.values():
            wait_ready(server)
        yield started
    finally:
        for server in started.values():
            stop(server)


@pytest.fixture(scope="session")
def server(servers) -> Server:
    return servers["default"]


@pytest.fixture(scope="session")
def limited_server(servers) -> Server:
    return servers["limited"]


@pytest.fixture(scope="session")
def strict_server(servers) -> Server:
    return servers["strict"]


@pytest.fixture(scope="session")
def video(reference_dir) -> Path:
    return reference_dir / "videos" / "realshort.mp4"
