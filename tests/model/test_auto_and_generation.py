"""The processor and generation as library pieces: Auto classes, one processor call, batches, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, BatchFeature

from artemis import ArtemisModel, ArtemisProcessor
from artemis.errors import ConfigError
from artemis.model import generate, stream
from artemis.model.loading import resolve_model_dir
from artemis.tasks import VideoPipeline
from artemis.video import opened

BOX = (100, 60, 220, 200)  # on frame 5 of realshort.mp4 (320x240)


@pytest.mark.parametrize("which", ["bundled", "tiny"])
def test_auto_classes_load_a_checkpoint_that_describes_like_artemis_model(which, tiny_model_dir, reference_dir):
    directory = resolve_model_dir("synthref-tiny") if which == "bundled" else tiny_model_dir
    processor = AutoProcessor.from_pretrained(directory)
    model = AutoModelForImageTextToText.from_pretrained(directory)
    assert isinstance(processor, ArtemisProcessor)
    video = reference_dir / "videos" / "realshort.mp4"
    expected = ArtemisModel.from_pretrained(directory).describe(video, BOX, frame_index=5, max_new_tokens=12)
    via_auto = VideoPipeline(model, processor).describe(video, BOX, frame_index=5, max_new_tokens=12)
    assert via_auto.text == expected.text and expected.text
    # The processor's own call builds the same inputs: plain model.generate on them writes the same text.
    with opened(video) as source:
        inputs = processor(source, "What is the <region> doing in this video?", regions=[expected.track], key_frame=5)
    assert isinstance(inputs, BatchFeature) and "labels" not in inputs
    assert int((inputs["input_ids"] == model.config.region_token_id).sum()) == processor.num_region_tokens
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == processor.num_video_tokens
    # Plain generate with artemis' one generation rule: the placeholder ids are slots, never words to write
    # (an untrained model may rank them first).
    banned = [[model.config.video_token_id], [model.config.region_token_id]]
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False, bad_words_ids=banned)
    assert processor.decode(output[0, inputs["input_ids"].shape[1] :]) == expected.text


def test_a_left_padded_batch_generates_what_each_sample_does_alone(tiny_model_dir, reference_dir):
    pipeline = ArtemisModel.from_pretrained(tiny_model_dir)
    model, processor = pipeline.model, pipeline.processor
    video = reference_dir / "videos" / "bikes.mp4"
    track = pipeline.track(video, (280, 100, 360, 170), 10)
    questions = ["What is the <region> doing in this video?", "Is the <region> moving ?", "<region>"]
    with opened(video) as source:
        alone = [
            generate(model, processor, processor(source, q, regions=[track], key_frame=10), max_new_tokens=8)[0]
            for q in questions
        ]
        batch = processor([source] * 3, questions, regions=[[track]] * 3, key_frame=10)
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == 3 and bool((batch["attention_mask"][:, -1] == 1).all())  # left padded
    assert generate(model, processor, batch, max_new_tokens=8) == alone
    right = processor.collate([processor.text_item([("hi", None)]), processor.text_item([("hi there", None)])])
    with pytest.raises(ValueError, match="padded on the left"):
        generate(model, processor, right)


def test_streaming_yields_the_generated_text_piece_by_piece(reference_dir):
    pipeline = ArtemisModel.from_pretrained("synthref-tiny")  # writes whole sentences
    video = reference_dir / "videos" / "realshort.mp4"
    track = pipeline.track(video, BOX, 5)
    with opened(video) as source:
        inputs = pipeline.processor(source, "What is the <region> doing in this video?", regions=[track], key_frame=5)
    whole = generate(pipeline.model, pipeline.processor, inputs)[0]
    pieces = list(stream(pipeline.model, pipeline.processor, inputs))
    assert len(whole.split()) > 2 and len(pieces) > 1 and "".join(pieces).strip() == whole
    with pytest.raises(ValueError, match="one sample"):
        next(stream(pipeline.model, pipeline.processor, {"input_ids": torch.zeros(2, 3, dtype=torch.long)}))
    # An error inside generation reaches the consumer instead of hanging the stream.
    broken = dict(inputs)
    broken["region_boxes"] = inputs["region_boxes"][:, :, :2]  # wrong number of region frames
    with pytest.raises((ValueError, RuntimeError)):
        list(stream(pipeline.model, pipeline.processor, broken, max_new_tokens=4))


def test_processor_refuses_what_it_cannot_build(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    frames = np.zeros((4, 24, 24, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match="task='caption'"):
        processor(frames, task="caption")
    with pytest.raises(ConfigError, match="needs videos=, text="):
        processor(None, "What is the <region> doing?")
    # A pooled-layout processor has no per-frame tokens, so a box-output prompt is refused.
    with pytest.raises(ConfigError, match="per-frame video tokens"):
        processor(frames, task="sot", box=(1, 1, 10, 10))
    with pytest.raises(ConfigError, match="either box="):
        processor.box_output_item(frames)


def test_describe_streams_the_same_text_it_returns(reference_dir):
    model = ArtemisModel.from_pretrained("synthref-tiny")
    video = reference_dir / "videos" / "realshort.mp4"
    whole = model.describe(video, BOX, 5)
    streamed = model.describe(video, BOX, 5, stream=True, track=whole.track)
    assert streamed.description.text == "" and streamed.description.region_frames == whole.region_frames
    pieces = list(streamed)
    assert len(pieces) > 1 and streamed.description.text == whole.text
