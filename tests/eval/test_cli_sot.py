"""``artemis eval sot``: ``--tracker NAME`` scores a tracker, ``--model DIR`` a model's box output.

Run through the real entry point (:func:`artemis.cli.main`) on a SynthRef split written to ``tmp_path``; the
same sequences are also written as image lists (ElysiumTrack-1M style) to check that
:func:`artemis.eval.samples.open_sample` reads those lazily and closes what it opens.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from artemis.cli import main
from artemis.data.formats import read
from artemis.data.synthref import SynthRefConfig
from artemis.data.synthref_writer import generate_split
from artemis.errors import VideoError
from artemis.eval.runner import PREDICTIONS_FILE
from artemis.eval.samples import open_sample
from artemis.model.loading import resolve_model_dir
from artemis.video import ImageListVideo, opened

KEYS = {"success_auc", "precision_20px", "norm_precision_020", "ao", "sr50"}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    config = SynthRefConfig(width=64, height=48, num_frames=10, min_objects=2, max_objects=2)
    return generate_split(tmp_path_factory.mktemp("sot"), 1, seed=1, split="test", config=config).split_dir


@pytest.fixture(scope="module")
def image_list_data(split: Path) -> Path:
    """The split's ``elysium.json`` with every video's frames written as PNG files, listed per record."""
    records = json.loads((split / "elysium.json").read_text())
    for record in records:
        video = record["frames"][0].rpartition("#")[0]
        folder = split / "images" / Path(video).stem
        if not folder.is_dir():
            folder.mkdir(parents=True)
            with opened(split / video) as source:
                for index, frame in source.iter_frames():
                    cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        record["frames"] = [f"images/{folder.name}/{int(f.rpartition('#')[2]):04d}.png" for f in record["frames"]]
    path = split / "elysium_images.json"
    path.write_text(json.dumps(records))
    return path


def _sot(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", "sot", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_tracker_flag_and_the_deprecated_model_spelling_score_the_same(split: Path, tmp_path: Path, capsys) -> None:
    data = f"elysium:{split / 'elysium.json'}"
    code, out, err = _sot(capsys, "--tracker", "opencv-kcf", "--data", data, "--out", str(tmp_path / "a"), "--json")
    assert code == 0 and "Deprecation" not in err
    scores = json.loads(out)
    assert set(scores) == KEYS
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["tracker"] == "opencv-kcf" and metrics["num_sequences"] == 2 and metrics["num_frames"] == 20
    assert "num_unparsed_frames" not in metrics

    code, out, err = _sot(capsys, "--model", "opencv-kcf", "--data", data, "--out", str(tmp_path / "b"), "--json")
    assert code == 0
    assert [line for line in err.splitlines() if line and not line.startswith("sot:")] == [  # not the progress bar
        "artemis eval sot: DeprecationWarning: --model opencv-kcf is deprecated for trackers; use --tracker opencv-kcf"
    ]
    assert json.loads(out) == scores
    assert (tmp_path / "b" / PREDICTIONS_FILE).read_text() == (tmp_path / "a" / PREDICTIONS_FILE).read_text()
    # The two spellings record the same run settings, so either resumes the other's run.
    settings = [json.loads((tmp_path / run / "run.json").read_text()) for run in ("a", "b")]
    assert settings[0] == settings[1]
    code, out, err = _sot(capsys, "--tracker", "opencv-kcf", "--data", data, "--out", str(tmp_path / "b"), "--json")
    assert code == 0 and json.loads(out) == scores


def test_image_list_records_score_like_the_video(split: Path, image_list_data: Path, tmp_path: Path, capsys) -> None:
    video_data = f"elysium:{split / 'elysium.json'}"
    code, out, _ = _sot(capsys, "--tracker", "opencv-csrt", "--data", video_data, "--out", str(tmp_path / "v"))
    assert code == 0
    from_video = out
    image_data = f"elysium:{image_list_data}"
    code, out, _ = _sot(capsys, "--tracker", "opencv-csrt", "--data", image_data, "--out", str(tmp_path / "i"))
    assert code == 0
    assert out == from_video and "success_auc" in out  # the printed table


def test_open_sample_reads_image_lists_lazily_and_closes_every_source(split: Path, image_list_data: Path) -> None:
    sample = read("elysium", image_list_data)[0]
    with open_sample(sample, whole_video=False) as (video, positions):
        assert isinstance(video, ImageListVideo) and positions == list(range(10))
        assert video.get_frame(3).shape == (48, 64, 3)
    with pytest.raises(VideoError, match="closed"):
        video.get_frame(0)
    for whole in (False, True):
        sample = read("elysium", split / "elysium.json")[0]
        with open_sample(sample, whole_video=whole) as (video, positions):
            assert positions == list(range(10))
        with pytest.raises(VideoError, match="closed"):
            video.get_frame(0)
    # An error inside the block closes the source too.
    with pytest.raises(RuntimeError), open_sample(sample, whole_video=False) as (video, _):
        raise RuntimeError("stop")
    with pytest.raises(VideoError, match="closed"):
        video.get_frame(0)


def test_model_without_boxes_is_refused_before_its_weights_load(split: Path, tmp_path: Path, capsys) -> None:
    data = f"elysium:{split / 'elysium.json'}"
    code, _, err = _sot(capsys, "--model", "synthref-tiny", "--data", data, "--out", str(tmp_path / "m"))
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "'synthref-tiny' was not trained to write boxes" in err and "tasks: [describe, boxes]" in err
    assert "--tracker opencv-csrt" in err
    assert not (tmp_path / "m").exists()
    # A checkpoint with a config and no weights fails the same way: the weights are never read.
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(resolve_model_dir("synthref-tiny") / "config.json", config_only / "config.json")
    code, _, err = _sot(capsys, "--model", str(config_only), "--data", data, "--out", str(tmp_path / "m"))
    assert code == 2 and len(err.splitlines()) == 1 and "not trained to write boxes" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tracker", "opencv-csrt", "--model", "synthref-tiny"], "give one"),
        (["--tracker", "opencv-csrt", "--model", "opencv-kcf"], "give one"),
        ([], "give --tracker NAME"),
        (["--tracker", "given"], "ground truth against itself"),
        (["--model", "given"], "ground truth against itself"),
        (["--tracker", "synthref-tiny"], "'synthref-tiny' is not a tracker"),
    ],
)
def test_bad_subject_exits_2_with_one_line(argv: list[str], expected: str, split: Path, tmp_path: Path, capsys) -> None:
    code, out, err = _sot(capsys, *argv, "--data", f"elysium:{split / 'elysium.json'}", "--out", str(tmp_path / "x"))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and expected in err and err.startswith("artemis eval: error:")
    assert not (tmp_path / "x").exists()
