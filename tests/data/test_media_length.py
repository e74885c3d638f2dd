"""``data.media_counts_as_one``: a sample's video or image counts as one token against ``max_length``, as the
original Artemis counted its one ``<video>``/``<image>`` id (its collator cut the ids before the model
expanded them)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from artemis.data.referring_dataset import ReferringDataset
from artemis.errors import AnnotationError
from artemis.model import build_tiny_model
from artemis.train.config import load_config

REPO = Path(__file__).resolve().parents[2]
LONG_ANSWER = " ".join(["the red square moves to the left and then it stops ."] * 6)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaVA file: a video and an image conversation with long answers, and a text-only one."""
    root = tmp_path_factory.mktemp("media-length")
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):  # a frame folder: the video
        (root / "clip").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "clip" / f"{i:05d}.png"), frame)
    cv2.imwrite(str(root / "square.png"), frames[0])
    question = {"from": "human", "value": "<video>\nwhat happens ?"}
    answer = {"from": "gpt", "value": LONG_ANSWER}
    data = [
        {"id": "v", "video": "clip", "conversations": [question, answer]},
        {"id": "i", "image": "square.png", "conversations": [{**question, "value": "<image>\nwhat happens ?"}, answer]},
        {"id": "t", "conversations": [{"from": "human", "value": "what happens ?"}, answer]},
    ]
    (root / "llava.json").write_text(json.dumps(data))
    return root / "llava.json"


def _original_cut(ids: list[int], media_id: int, max_length: int) -> list[int]:
    """The original's rule, written out: the media is one id while the ids are cut, then it is expanded."""
    start = ids.index(media_id) if media_id in ids else None
    if start is None:
        return ids[:max_length]
    count = ids.count(media_id)
    collapsed = [*ids[:start], media_id, *ids[start + count :]]  # the media as one id
    cut = collapsed[:max_length]
    return [*cut[:start], *[media_id] * count, *cut[start + 1 :]]  # expanded again


@pytest.mark.parametrize("image_tokens", ["video", "patches"])
def test_the_cut_counts_the_media_as_one_token(records: Path, image_tokens: str) -> None:
    model, processor = build_tiny_model([LONG_ANSWER, "what happens ?"], seed=0, image_tokens=image_tokens)
    media_id, max_length = model.config.video_token_id, 40
    full = ReferringDataset.from_files([("llava", records)], processor, model.config)
    original = ReferringDataset.from_files(
        [("llava", records)], processor, model.config, max_length=max_length, media_counts_as_one=True
    )
    counting_all = ReferringDataset.from_files([("llava", records)], processor, model.config, max_length=max_length)
    for index, media in enumerate((model.config.num_video_tokens, model.config.num_image_tokens, 0)):
        ids = full[index]["input_ids"].tolist()
        assert ids.count(media_id) == media and len(ids) - max(media - 1, 0) > max_length  # long enough to be cut
        item = original[index]
        assert item["input_ids"].tolist() == _original_cut(ids, media_id, max_length)
        assert len(item["input_ids"]) == max_length + max(media - 1, 0) == len(item["labels"])
        assert item["labels"].tolist() == full[index]["labels"].tolist()[: len(item["labels"])]
    # Counting every token, 40 cannot even hold the video's ids; a text-only sample is cut alike either way.
    with pytest.raises(AnnotationError, match="would cut a video"):
        counting_all[0]
    assert original[2]["input_ids"].tolist() == counting_all[2]["input_ids"].tolist()


def test_a_cut_through_the_media_is_still_refused(records: Path) -> None:
    model, processor = build_tiny_model([LONG_ANSWER, "what happens ?"], seed=0)
    dataset = ReferringDataset.from_files(
        [("llava", records)], processor, model.config, max_length=5, media_counts_as_one=True
    )
    with pytest.raises(AnnotationError, match="max_length=5 and truncation would cut a video"):
        dataset[0]


def test_the_published_stages_follow_the_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ARTEMIS_CLIP_DIR", "ARTEMIS_LLM_DIR", "ARTEMIS_DATA", "ARTEMIS_OUT"):
        monkeypatch.setenv(name, str(tmp_path))
    for name in ("stage1_pretrain", "stage2_finetune", "stage3_referring", "stage3_referring_qlora"):
        data = load_config(REPO / "configs" / f"{name}.yaml").data
        assert (data.max_length, data.media_counts_as_one) == (2048, True), name
    stage1 = load_config(REPO / "configs/stage1_pretrain.yaml")
    assert stage1.model.config["image_tokens"] == "patches"
    monkeypatch.setenv("SYNTHREF", str(tmp_path))
    monkeypatch.setenv("OUT", str(tmp_path))
    for path in sorted((REPO / "configs/synthref_tiny").glob("*.yaml")):  # the tiny recipe is unchanged
        assert not load_config(path).data.media_counts_as_one, path.name
