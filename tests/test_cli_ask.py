"""``artemis ask``: several regions on frames of their own from the command line."""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys

import pytest

import artemis.tasks.pipeline as pipeline
from artemis.cli import main
from artemis.video import open_video


@pytest.fixture
def bikes(reference_dir):
    path = reference_dir / "videos" / "bikes.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the two-region CLI test needs the reference video bikes.mp4")
    return str(path)


def test_ask_two_boxes_on_their_own_frames(tiny_model_dir, bikes, monkeypatch, capsys):
    reads: collections.Counter[int] = collections.Counter()

    @contextlib.contextmanager
    def counting_opened(video, backend="auto", fps=None):
        source = open_video(video, backend=backend)
        real = source.get_frames

        def get_frames(indices):
            reads.update(int(i) for i in indices)
            return real(indices)

        source.get_frames = get_frames
        source.get_frame = lambda index: get_frames([index])[0]
        try:
            yield source
        finally:
            source.close()

    monkeypatch.setattr(pipeline, "opened", counting_opened)
    code = main(
        ["ask", bikes, "--box", "280,100,360,170@10", "--box", "20,20,120,120@200", "--question",
         "Is <region> left of <region>?", "--model", str(tiny_model_dir), "--json", "--max-new-tokens", "4"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert [track["key_frame"] for track in result["tracks"]] == [10, 200]
    assert result["question"] == "Is <region> left of <region>?" and len(result["region_visible"]) == 2
    # Tracking read each frame once for both regions; the prompt read its own frames once more at most.
    assert reads and max(reads.values()) <= 2
    assert sum(count == 2 for count in reads.values()) <= len(
        set(result["video_frames"]) | set(result["region_frames"])
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("280,100,360,170@ten", "frame 'ten' after '@' is not a frame index"),
        ("280,100,360,170@-3", "frame -3 is negative"),
        ("280,100,360@4", "has 3 values"),
    ],
)
def test_bad_box_values_are_one_line(value, message, capsys):
    code = main(["ask", "video.mp4", "--box", value, "--question", "what is <region> doing?"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and err[0].startswith("artemis ask: error:")


def test_a_frame_past_the_end_is_one_line(tiny_model_dir, bikes):
    run = subprocess.run(
        [sys.executable, "-m", "artemis.cli", "ask", bikes, "--box", "280,100,360,170@10", "--box",
         "20,20,120,120@400", "--question", "<region> <region>", "--model", str(tiny_model_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("artemis ask: error: frame index 400 is past the end")
