"""Limits of real ``artemis serve`` processes: --max-upload-mb 1 --max-frames 40 --queue 1, and --timeout 0.01."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import BOX, FRAME
from test_serve_api import assert_error, post_form

pytestmark = [pytest.mark.slow, pytest.mark.reference]

BOUNDARY = "artemisboundary"


def wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def start_slow_upload(server) -> socket.socket:
    """A multipart upload whose headers and first bytes arrive, and the rest never (until the socket closes)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="box"\r\n\r\n{BOX}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="slow.mp4"\r\n\r\n'
    ).encode() + b"\x00" * 1000
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    connection.sendall(
        (
            f"POST /v1/describe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(head) + 100_000}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
        ).encode()
        + head
    )
    return connection


def test_too_large_upload(limited_server):
    body = os.urandom(2 * 1024 * 1024)
    files = {"video": ("big.mp4", body, "video/mp4")}
    response = httpx.post(f"{limited_server.url}/v1/describe", files=files, data={"box": BOX}, timeout=60)
    assert_error(response, 413, "1 MB", "--max-upload-mb")

    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'.encode()
    form = head + body + f"\r\n--{BOUNDARY}--\r\n".encode()

    def chunked():  # no Content-Length: the server counts bytes as they arrive
        for start in range(0, len(form), 64 * 1024):
            yield form[start : start + 64 * 1024]

    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    response = httpx.post(f"{limited_server.url}/v1/track", content=chunked(), headers=headers, timeout=60)
    assert_error(response, 413, "--max-upload-mb")
    wait_for(lambda: limited_server.upload_files() == [])


def test_too_many_frames(limited_server, video, tmp_path):
    from artemis.video import opened
    from artemis.video.draw import write_video

    with opened(video) as source:
        frames = [source.get_frame(i % source.num_frames) for i in range(48)]
        long_video = write_video(tmp_path / "long.mp4", frames, source.fps)
    response = post_form(limited_server, "/v1/describe", Path(long_video), box=BOX, frame=FRAME)
    assert_error(response, 413, "48 frames", "at most 40", "--max-frames")


def test_timeout(strict_server, video):
    response = post_form(strict_server, "/v1/describe", video, box=BOX, frame=FRAME)
    assert_error(response, 504, "0.01 s", "--timeout")
    # The model finishes the abandoned work unseen, then frees its place in the queue.
    wait_for(lambda: strict_server.queue()["in_flight"] == 0)
    wait_for(lambda: strict_server.upload_files() == [])


def test_full_queue_gets_429_and_uploads_are_removed_on_disconnect(limited_server, video):
    wait_for(lambda: limited_server.queue()["in_flight"] == 0)
    # Two requests hold the only places (one for the model, --queue 1 waiting) while their uploads trickle in.
    slow = [start_slow_upload(limited_server) for _ in range(2)]
    try:
        wait_for(lambda: limited_server.queue()["in_flight"] == 2)
        wait_for(lambda: len([p for p in limited_server.upload_files() if p.is_file()]) == 2)
        response = post_form(limited_server, "/v1/describe", video, box=BOX, frame=FRAME)
        assert_error(response, 429, "--queue 1")
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        for connection in slow:
            connection.close()  # the clients go away mid-upload
    wait_for(lambda: limited_server.queue()["in_flight"] == 0)
    wait_for(lambda: limited_server.upload_files() == [])
    assert httpx.get(f"{limited_server.url}/healthz").status_code == 200
