"""The web demo in a real browser: a real ``artemis serve`` process, driven by Playwright and Debian's Chromium.

The browser test uploads a real video, scrubs to frame 5, draws the target's box with the mouse, and checks
that Describe shows a description and a playable track video. It leaves a screenshot in
``test-artifacts/serve-demo.png``. It skips where Chromium or the ``playwright`` package is absent
(``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SERVER_START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"artemis serve exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"artemis serve was not healthy after {SERVER_START_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (Playwright's own browser download is not used)."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e .[dev])")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    return path


@pytest.fixture(scope="module")
def server_url(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``artemis serve`` process with the default model, on a free loopback port."""
    pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e .[serve])")
    workdir = tmp_path_factory.mktemp("serve")
    log = workdir / "serve.log"
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "artemis.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.timeout(150)
def test_describe_a_drawn_box_in_the_browser(
    chromium: str, server_url: str, reference_dir: Path, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    video = reference_dir / "videos" / "realshort.mp4"
    mask = np.zeros((240, 320), dtype=np.uint8)  # realshort.mp4 is 320x240
    mask[10:90, 10:90] = 255
    mask_png = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_png)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(server_url + "/")
            expect(page.locator("#artemis-model-card")).to_contain_text("synthref-tiny")

            page.locator("#artemis-video input[type=file]").set_input_files(video)
            expect(page.locator("#artemis-canvas img.artemis-frame")).to_be_visible()

            # Scrub to frame 5 with the slider's number field; the canvas shows that frame.
            frame_number = page.locator("#artemis-slider input[type=number]")
            frame_number.fill("5")
            frame_number.press("Enter")
            expect(page.locator("#artemis-canvas .artemis-hint")).to_contain_text("frame 5 of 0..")

            # A wrong typed box is one line in an error toast, no traceback.
            box_field = page.locator("#artemis-box textarea")
            box_field.fill("10,10,5,40")
            page.locator("#artemis-track").click()
            toast = page.get_by_test_id("toast-text").first
            expect(toast).to_contain_text("x2 < x1")
            assert "Traceback" not in toast.inner_text()
            page.get_by_test_id("toast-close").first.click()

            # Draw the box with the mouse: from 30% to 55% of the shown frame's width and height.
            stage = page.locator("#artemis-canvas .artemis-stage").bounding_box()
            assert stage is not None
            page.mouse.move(stage["x"] + 0.30 * stage["width"], stage["y"] + 0.30 * stage["height"])
            page.mouse.down()
            page.mouse.move(stage["x"] + 0.55 * stage["width"], stage["y"] + 0.55 * stage["height"], steps=8)
            page.mouse.up()
            expect(box_field).not_to_have_value("10,10,5,40")
            x1, y1, x2, y2 = (float(v) for v in box_field.input_value().split(","))
            # realshort.mp4 is 320x240: the box is in the video's pixels, whatever size the frame is shown at.
            assert (x1, y1, x2, y2) == pytest.approx((96, 72, 176, 132), abs=3)

            page.locator("#artemis-describe").click()
            track_video = page.locator("#artemis-track-video video")
            expect(track_video).to_have_attribute("src", re.compile(r".+"), timeout=60_000)
            answer = page.locator("#artemis-answer textarea")
            expect(answer).not_to_have_value("")
            page.wait_for_function(
                "document.querySelector('#artemis-track-video video').readyState >= 2", timeout=15_000
            )
            assert track_video.evaluate("video => video.videoWidth") > 0, "the browser could not decode the track"
            download = page.locator("#artemis-track-json a[href*='track.json']").first
            result = page.request.get(download.get_attribute("href")).json()
            assert result["text"] == answer.input_value()
            assert result["tracks"][0]["key_frame"] == 5

            # Several regions: the drawn box on frame 5, then a mask PNG on frame 20; a question about both.
            page.locator("#artemis-add-box").click()
            regions = page.locator("#artemis-regions")
            drawn = ",".join(str(round(v)) for v in (x1, y1, x2, y2))
            expect(regions).to_contain_text(f"region1: box {drawn} on frame 5")
            frame_number.fill("20")
            frame_number.press("Enter")
            expect(page.locator("#artemis-canvas .artemis-hint")).to_contain_text("frame 20 of 0..")
            page.locator("#artemis-mask input[type=file]").set_input_files(mask_png)
            page.locator("#artemis-add-mask").click()
            expect(regions).to_contain_text("region2: mask (its box 10,10,90,90) on frame 20")
            page.locator("#artemis-question textarea").fill("Is <region> left of <region>?")
            page.locator("#artemis-ask-regions").click()
            page.wait_for_function(
                "href => { const a = document.querySelector(\"#artemis-track-json a[href*='track.json']\");"
                " return a && a.getAttribute('href') !== href; }",
                arg=download.get_attribute("href"),
                timeout=60_000,
            )
            href = page.locator("#artemis-track-json a[href*='track.json']").first.get_attribute("href")
            result = page.request.get(href).json()
            assert [track["key_frame"] for track in result["tracks"]] == [5, 20]
            assert result["question"] == "Is <region> left of <region>?"
            expect(answer).to_have_value(result["text"])

            ARTIFACTS.mkdir(exist_ok=True)
            screenshot = ARTIFACTS / "serve-demo.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot: {screenshot}")
        finally:
            browser.close()


def _buttons(demo) -> set[str]:
    return {block.value for block in demo.blocks.values() if type(block).__name__ == "Button"}


def test_box_writing_buttons_only_for_models_that_write_boxes() -> None:
    pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e .[serve])")
    from artemis.model.loading import ModelCard
    from artemis.serve.demo import build_demo

    for can_write_boxes in (False, True):
        service = SimpleNamespace(card=ModelCard(name="stub"), can_write_boxes=can_write_boxes)
        buttons = _buttons(build_demo(service))
        assert {"Track", "Describe", "Ask"} <= buttons
        assert bool({"Track by model", "Ground"} & buttons) is can_write_boxes
