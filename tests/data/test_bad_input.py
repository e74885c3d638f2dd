"""Bad input: each case is one AnnotationError naming the file, the record and the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from artemis.cli import main
from artemis.data import convert, formats, validate
from artemis.errors import AnnotationError

GOOD_REF = {
    "video_name": "a.mp4",
    "caption": "The red circle stays still.",
    "track_list": [[1, 2, 11, 12], [], [3, 4, 13, 14]],
    "frame_path": "videos/a.mp4",
    "frame_id": [0, 1, 2],
    "key_frame_box": [1, 2, 11, 12],
    "key_frame_id": 0,
    "frame_size": [64, 48],
}
GOOD_ELYSIUM = {
    "source": "x",
    "id": "r0",
    "vid": "a",
    "metadata": {},
    "frames": ["a.mp4#0", "a.mp4#1"],
    "object_class": "circle",
    "box": [[0.1, 0.1, 0.5, 0.5], []],
    "object_description": "a circle",
    "frame_size": [64, 48],
}


def _write(tmp_path: Path, data: Any, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _bad(record: dict, **changes: Any) -> dict:
    bad = copy.deepcopy(record)
    for key, value in changes.items():
        if value is ...:
            del bad[key]
        else:
            bad[key] = value
    return bad


def test_good_records_read(tmp_path: Path) -> None:
    (ref,) = formats.read("videoref45k", _write(tmp_path, [GOOD_REF]))
    assert ref.visible == [True, False, True]
    (ely,) = formats.read("elysium", _write(tmp_path, [GOOD_ELYSIUM]))
    assert ely.boxes[0] == pytest.approx((6.4, 4.8, 32.0, 24.0))


@pytest.mark.parametrize(
    ("fmt", "data", "expected"),
    [
        ("videoref45k", {"a": 1}, "expected a JSON list of videoref45k records, got a JSON object"),
        ("elysium", "text", "expected a JSON list of elysium records"),
        ("llava", [1], "record 0: expected a JSON object"),
        ("hcstvg", [GOOD_REF], "expected a JSON object keyed by video name"),
        (
            "videoref45k",
            [GOOD_REF, _bad(GOOD_REF, caption=...)],
            "record 1: field 'caption': required field is missing",
        ),
        ("videoref45k", [_bad(GOOD_REF, key_frame_id="0")], "field 'key_frame_id': expected int"),
        ("videoref45k", [_bad(GOOD_REF, track_list=[[1, 2, 80, 12], [], []])], "field 'boxes': box [1, 2, 80, 12]"),
        ("videoref45k", [_bad(GOOD_REF, track_list=[[1, 2, 1, 12], [], []])], "zero or negative area"),
        ("videoref45k", [_bad(GOOD_REF, track_list=[], frame_id=[])], "field 'track_list': the track is empty"),
        ("videoref45k", [_bad(GOOD_REF, track_list=[[], [], []], key_frame_box=[])], "field 'key_frame_box'"),
        ("videoref45k", [_bad(GOOD_REF, key_frame_id=7)], "field 'key_frame_id': frame 7 is not one"),
        ("videoref45k", [_bad(GOOD_REF, track_list=[[1, 2, 3]] * 3)], "entry 0 is [1, 2, 3]"),
        ("elysium", [_bad(GOOD_ELYSIUM, box=[[0.1, 0.1, 1.5, 0.5], []])], "record 0: field 'box'"),
        ("elysium", [_bad(GOOD_ELYSIUM, frame_size=...)], "field 'frame_size': required field is missing"),
        ("elysium", [_bad(GOOD_ELYSIUM, box=[[], []])], "the track is empty"),
        ("elysium", [_bad(GOOD_ELYSIUM, box=[[0.1, 0.1, 0.5, 0.5]])], "1 boxes for 2 frames"),
        ("elysium", [_bad(GOOD_ELYSIUM, metadata={"key_frame_id": 5})], "key_frame_id 5 is not one"),
        ("llava", [{"id": 1, "conversations": [{"from": "gpt", "value": "x"}]}], "expected 'human'"),
        ("llava", [{"id": 1}], "field 'conversations': required field is missing"),
    ],
)
def test_bad_json_records(tmp_path: Path, fmt: str, data: Any, expected: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(AnnotationError) as info:
        formats.read(fmt, path)
    message = str(info.value)
    assert str(path) in message and expected in message


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"a": 1},\n')
    with pytest.raises(AnnotationError, match=r"broken.json: not valid JSON .* line 2"):
        formats.read("videoref45k", path)


def _hcstvg(**changes: Any) -> dict:
    entry = {"bbox": [[0, 0, 10, 10]] * 3, "st_frame": 2, "img_num": 5, "caption": "c", "width": 20, "height": 20}
    entry.update(changes)
    return {"v.mp4": entry}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_hcstvg(st_frame=4), "record 'v.mp4': field 'bbox': 3 boxes from st_frame 4 reach frame 6"),
        (_hcstvg(bbox=[]), "field 'bbox': the track is empty"),
        (_hcstvg(bbox=[[0, 0, 0, 10]]), "zero or negative area"),
        (_hcstvg(bbox=[[15, 0, 10, 10]]), "lies outside the 20x20 frame"),
        (_hcstvg(width=...), "field 'width': expected int"),
    ],
)
def test_bad_hcstvg(tmp_path: Path, data: dict, expected: str) -> None:
    for entry in data.values():
        for key in [k for k, v in entry.items() if v is ...]:
            del entry[key]
    if "width" not in data["v.mp4"]:
        expected = "field 'width': required field is missing"
    path = _write(tmp_path, data)
    with pytest.raises(AnnotationError, match=expected.replace("(", r"\(")):
        formats.read("hcstvg", path)


def test_bad_text_rows(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "groundtruth_rect.txt").write_text("1\t2\t3\t4\n1\t2\t3\n")
    with pytest.raises(AnnotationError, match=r"groundtruth_rect.txt: record 1: line 2 has 3 values"):
        formats.read("otb", seq)
    (seq / "groundtruth.txt").write_text("0,0,0,0\n")
    with pytest.raises(AnnotationError, match="the track is empty"):
        formats.read("lasot", seq)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AnnotationError, match="no LaSOT annotations found"):
        formats.read("lasot", empty)


def test_frame_ids_past_the_frame_folder(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    seq = tmp_path / "s"
    (seq / "img").mkdir(parents=True)
    cv2.imwrite(str(seq / "img" / "0001.jpg"), np.zeros((20, 20, 3), np.uint8))
    (seq / "groundtruth_rect.txt").write_text("1 1 5 5\n1 1 5 5\n")
    with pytest.raises(AnnotationError, match=r"2 boxes but .* has 1 frames \(ids 1.. do not exist\)"):
        formats.read("otb", seq)


def test_missing_video_is_found_by_validate_check_files(tmp_path: Path) -> None:
    path = _write(tmp_path, [GOOD_REF])
    assert len(validate("videoref45k", path)) == 1  # without check_files the record is fine
    with pytest.raises(AnnotationError) as info:
        validate("videoref45k", path, check_files=True)
    message = str(info.value)
    assert str(path) in message and "record '0 (0)'" in message and "field 'video'" in message
    assert "videos/a.mp4 does not exist" in message


def test_frame_id_past_the_video_end(tmp_path: Path) -> None:
    from artemis.data.synthref_writer import generate_split

    split = generate_split(tmp_path, 1, seed=0, split="val").split_dir
    records = json.loads((split / "videoref45k.json").read_text())
    records[0]["frame_id"] = [f + 10 for f in records[0]["frame_id"]]
    records[0]["key_frame_id"] += 10
    path = _write(split, records, "shifted.json")
    with pytest.raises(AnnotationError, match=r"field 'frame_id': frame 33 does not exist: .* has 24 frames"):
        validate("videoref45k", path, check_files=True)


def test_unknown_format_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(
        AnnotationError, match="unknown annotation format 'coco'; expected one of: videoref45k, elysium"
    ):
        formats.read("coco", tmp_path)


def test_meaningless_conversion_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="cannot convert llava to lasot"):
        convert("llava", "lasot", tmp_path / "x.json", tmp_path / "out")


def test_writer_names_what_the_target_format_lacks(reference_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=r"record 'airplane-1': field 'caption'"):
        convert("lasot", "videoref45k", reference_dir / "lasot", tmp_path / "v.json")
    with pytest.raises(AnnotationError, match=r"record 'airplane-1': field 'frame_size'"):
        convert("lasot", "elysium", reference_dir / "lasot", tmp_path / "e.json")


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, {"not": "a list"})
    code = main(["data", "convert", "--from", "videoref45k", "--to", "elysium", str(path), str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "expected a JSON list" in err
    code = main(["data", "convert", "--from", "nope", "--to", "elysium", str(path), str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "expected one of: videoref45k" in err
    code = main(["data", "validate", "--format", "videoref45k", str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not found" in err
    assert not (tmp_path / "o.json").exists()
