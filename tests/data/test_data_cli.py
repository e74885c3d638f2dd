"""``artemis data synthref`` and ``artemis data convert`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artemis.cli import main


def test_synthref_cli_writes_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "synthref", "--out", str(tmp_path), "--num-videos", "3", "--seed", "5", "--split", "val"]
    assert main([*argv, "--size", "96,64", "--frames", "16"]) == 0
    split = tmp_path / "val"
    assert "wrote 3 videos" in capsys.readouterr().out
    for name in ("manifest.json", "videoref45k.json", "elysium.json", "llava_stage1.json", "llava_stage2.json"):
        assert (split / name).is_file()
    assert sorted(p.name for p in (split / "videos").iterdir()) == [f"val_0000{i}.mp4" for i in range(3)]
    manifest = json.loads((split / "manifest.json").read_text())
    assert manifest["config"]["width"] == 96 and manifest["videos"][0]["num_frames"] == 16
    from artemis.video import VideoReader

    reader = VideoReader(split / "videos/val_00000.mp4")
    assert (reader.num_frames, reader.width, reader.height) == (16, 96, 64)


def test_synthref_cli_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "synthref", "--out", str(tmp_path), "--num-videos", "1", "--size", "8,8"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "at least 32x32" in err


def test_convert_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synthref", "--out", str(tmp_path), "--num-videos", "2", "--seed", "1"]) == 0
    source = tmp_path / "train" / "videoref45k.json"
    assert (
        main(["data", "convert", "--from", "videoref45k", "--to", "elysium", str(source), str(tmp_path / "e.json")])
        == 0
    )
    assert main(["data", "validate", "--format", "elysium", str(tmp_path / "e.json"), "--check-files"]) == 0
    assert main(["data", "convert", "--from", "videoref45k", "--to", "lasot", str(source), str(tmp_path / "l")]) == 0
    assert len(list((tmp_path / "l").glob("*/groundtruth.txt"))) == len(json.loads(source.read_text()))
    capsys.readouterr()
    code = main(["data", "convert", "--from", "llava", "--to", "otb", str(source), str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot convert llava to otb" in err
