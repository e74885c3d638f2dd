"""``artemis track`` on the real reference videos, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from track_synth import open_reader

from artemis.cli import main
from artemis.track import Track

# (file, frames, extra options): a box around the frame centre on the middle frame.
VIDEOS = [
    ("bikes.mp4", 250, ["--max-side", "320"]),
    ("carphone_pristine.mp4", 120, []),
    ("realshort.mp4", 36, ["--stride", "2"]),
]


@pytest.mark.reference
@pytest.mark.slow
@pytest.mark.parametrize(("name", "num_frames", "extra"), VIDEOS, ids=[v[0] for v in VIDEOS])
def test_track_command_writes_json_and_viz(reference_dir, tmp_path: Path, name, num_frames, extra):
    video = reference_dir / "videos" / name
    reader = open_reader(video)
    w, h, middle = reader.width, reader.height, reader.num_frames // 2
    box = f"{w * 3 // 8},{h * 3 // 8},{w * 5 // 8},{h * 5 // 8}"
    out, viz = tmp_path / "track.json", tmp_path / "viz.mp4"
    code = main(
        ["track", str(video), "--box", box, "--frame", str(middle), "--out", str(out), "--viz", str(viz), *extra]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["num_frames"] == num_frames == len(data["boxes"]) == len(data["visible"])
    assert data["key_frame"] == middle
    assert data["boxes"][middle] == [float(v) for v in box.split(",")]
    track = Track.from_json(data)
    assert track.visible[middle] and (track.width, track.height) == (w, h)
    drawn = open_reader(viz)
    assert (drawn.num_frames, drawn.width, drawn.height) == (num_frames, w, h)
    # The box is drawn in the track's colour on the key frame of the viz.
    assert not np.array_equal(drawn.get_frame(middle), reader.get_frame(middle))


def test_track_command_prints_json_to_stdout(square_video, capsys):
    folder, truth = square_video
    box = ",".join(str(int(v)) for v in truth[0])
    assert main(["track", str(folder), "--box", box, "--tracker", "opencv-kcf", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["num_frames"] == 40 and data["visible"][0]


def test_track_command_xywh(square_video, tmp_path: Path):
    folder, truth = square_video
    x1, y1, x2, y2 = truth[5].astype(int)
    out = tmp_path / "t.json"
    args = ["track", str(folder), "--box", f"{x1},{y1},{x2 - x1},{y2 - y1}", "--box-format", "xywh", "--frame", "5"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["boxes"][5] == truth[5].tolist()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--box", "500,10,520,40"], "outside"),
        (["--box", "10,10,10,40"], "zero area"),
        (["--box", "40,10,20,40"], "x2 < x1"),
        (["--box", "10,10,40,40", "--frame", "99"], "0..39"),
        (["--box", "10,10,40,40", "--tracker", "nope"], "opencv-csrt"),
        (["--box", "10,10,40"], "expected X1,Y1,X2,Y2"),
    ],
)
def test_track_command_errors_are_one_line(square_video, tmp_path: Path, capsys, args, message):
    folder, _ = square_video
    out = tmp_path / "never.json"
    assert main(["track", str(folder), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("artemis track: error:") and message in err[0]
    assert not out.exists()


def test_track_command_missing_video_in_subprocess(tmp_path: Path):
    missing = tmp_path / "missing.mp4"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from artemis.cli import main; sys.exit(main())",
            "track",
            str(missing),
            "--box",
            "0,0,10,10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert result.stdout == ""
