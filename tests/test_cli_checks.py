"""What a new user meets first: malformed arguments, outputs that cannot be written, damaged checkpoints,
a model asked for what it was not trained for, and which model answered."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from artemis import ArtemisModel
from artemis.cli import main
from artemis.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def realshort(reference_dir):
    return reference_dir / "videos" / "realshort.mp4"


def test_a_malformed_box_names_the_expected_form(realshort, capsys):
    for command in ("track", "describe"):
        assert main([command, str(realshort), "--box", "a,b,c,d"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"artemis {command}: error: box 'a,b,c,d' is not 4 numbers; expected X1,Y1,X2,Y2 such as 10,20,110,220"
        ]


def test_an_unwritable_output_fails_before_any_tracking(realshort, tmp_path, monkeypatch, capsys):
    import artemis.cli.track as track_command

    def never(*args, **kwargs):
        raise AssertionError("the video was tracked although its output cannot be written")

    monkeypatch.setattr(track_command, "track_video", never)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for flag in ("--out", "--viz"):
        code = main(["track", str(realshort), "--box", "100,60,220,200", flag, str(blocker / "out" / "x.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert err[0].startswith(f"artemis track: error: {flag} {blocker / 'out' / 'x.json'} cannot be written")
        assert "choose a folder you can write to" in err[0]
    code = main(["track", str(realshort), "--box", "100,60,220,200", "--out", str(tmp_path)])
    assert code == 2 and "is a directory; give a file path" in capsys.readouterr().err


def test_describe_says_which_model_answered_and_what_it_knows(realshort):
    # A real process, so what reaches stderr (the CLI's line and any log record) is what a user sees.
    result = subprocess.run(
        [sys.executable, "-m", "artemis.cli", "describe", str(realshort), "--box", "100,60,220,200", "--frame", "5",
         "--max-new-tokens", "8"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("artemis describe: model ")]
    assert len(notes) == 1
    assert "synthref-tiny" in notes[0] and "trained from nothing on SynthRef" in notes[0]
    assert "what it says about a real video is not meaningful" in notes[0]
    assert result.stderr.count("what it says about a real video is not meaningful") == 1  # said once
    assert ArtemisModel.from_pretrained("synthref-tiny").card.name == "synthref-tiny"


def test_a_truncated_checkpoint_is_one_line(tiny_model_dir, realshort, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_model_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code = main(["describe", str(realshort), "--box", "100,60,220,200", "--model", str(damaged)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(weights) in err[0] and "truncated or corrupt" in err[0] and "Traceback" not in err[0]
    weights.write_bytes(b"\x00" * 7)  # not even a header
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        ArtemisModel.from_pretrained(damaged)


def test_box_output_is_refused_for_a_model_not_trained_for_it(realshort):
    model = ArtemisModel.from_pretrained("synthref-tiny")
    assert model.config.video_layout == "frames" and model.config.tasks == ["describe"]
    with pytest.raises(ConfigError, match=r"model 'synthref-tiny' was not trained to write boxes"):
        model.track_with_llm(realshort, box=(100, 60, 220, 200), frame_index=5)


def test_set_selector_is_an_inference_switch_that_is_not_saved(tiny_model_dir, realshort, tmp_path):
    model = ArtemisModel.from_pretrained(tiny_model_dir)
    model.set_selector("random")
    assert model.model.selector.method == "random" and not model.model.selector.training
    assert model.config.selector == "kmeans"
    first = model.describe(realshort, (100, 60, 220, 200), 5, max_new_tokens=6)
    second = model.describe(realshort, (100, 60, 220, 200), 5, max_new_tokens=6, track=first.track)
    assert first.text == second.text  # seeded at inference, so the ablation repeats
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["selector"] == "kmeans"
    with pytest.raises(ConfigError, match="selector 'all' changes the region token count"):
        model.set_selector("all")
    assert np.isfinite(first.track.boxes[5]).all()


def test_describe_takes_stride_auto_and_refuses_a_bad_stride(realshort, tiny_model_dir, capsys):
    code = main(
        ["describe", str(realshort), "--box", "100,60,220,200", "--frame", "5", "--stride", "auto",
         "--model", str(tiny_model_dir), "--json", "--max-new-tokens", "2"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    track = json.loads(out.out)["tracks"][0]
    assert track["key_frame"] == 5 and len(track["boxes"]) == 36
    for bad in ("0", "-2", "fast", "1.5"):
        with pytest.raises(SystemExit) as exit_info:
            main(["describe", str(realshort), "--box", "100,60,220,200", "--stride", bad])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2
        assert f"argument --stride: {bad!r} is not a stride; expected an integer >= 1 or 'auto'" in err[-1]
