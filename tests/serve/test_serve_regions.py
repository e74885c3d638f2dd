"""Several regions over HTTP (issue 16): ``POST /v1/ask`` and the chat endpoint's box and mask parts, on a
real ``artemis serve`` process with the bundled model, checked against ``ArtemisModel.ask`` / ``chat``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from test_serve_api import assert_error, sse_data

from artemis.regions import Region

pytestmark = [pytest.mark.slow, pytest.mark.reference]

# bikes.mp4 (640x272, 250 frames): a cyclist boxed on frame 10, another on frame 200 (docs/regions.md).
WIDTH, HEIGHT, NUM_FRAMES = 640, 272, 250
FIRST = ((280, 100, 360, 170), 10)
SECOND = ((20, 20, 120, 120), 200)
QUESTION = "Is <region> left of <region>?"
TOKENS = 12


@pytest.fixture(scope="module")
def bikes(reference_dir) -> Path:
    path = reference_dir / "videos" / "bikes.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent; the region tests need the reference video bikes.mp4")
    return path


@pytest.fixture(scope="module")
def model():
    from artemis import ArtemisModel

    return ArtemisModel.from_pretrained("synthref-tiny", log_card=False)


@pytest.fixture(scope="module")
def expected(model, bikes):
    """What the library answers for the two boxes, greedy (the server must answer the same)."""
    regions = [Region(box=FIRST[0], frame=FIRST[1]), Region(box=SECOND[0], frame=SECOND[1])]
    return model.ask(bikes, regions=regions, question=QUESTION, max_new_tokens=TOKENS)


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory) -> Path:
    return write_png(tmp_path_factory.mktemp("masks") / "cyclist.png", second_mask())


@pytest.fixture(scope="module")
def expected_with_mask(model, bikes, mask_png):
    """What the library answers when the second region is the mask PNG."""
    regions = [Region(box=FIRST[0], frame=FIRST[1]), Region(mask=mask_png, frame=SECOND[1])]
    return model.ask(bikes, regions=regions, question=QUESTION, max_new_tokens=TOKENS)


def second_mask(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A mask whose tight box is SECOND's box: a filled ellipse touching the box's four edges."""
    x1, y1, x2, y2 = SECOND[0]
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0


def write_png(path: Path, mask: np.ndarray) -> Path:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


def coco_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def post_ask(server, video: Path, regions: list, question: str = QUESTION, masks: dict | None = None, **fields):
    files = {"video": (video.name, video.read_bytes(), "video/mp4")}
    for name, path in (masks or {}).items():
        files[name] = (Path(path).name, Path(path).read_bytes(), "image/png")
    data = {"regions": json.dumps(regions), "question": question, "max_new_tokens": str(TOKENS)}
    data |= {key: str(value) for key, value in fields.items()}
    return httpx.post(f"{server.url}/v1/ask", files=files, data=data, timeout=120)


def box_region(box, frame) -> dict:
    return {"box": list(box), "frame": frame}


def test_two_boxes_on_their_own_frames(server, bikes, expected):
    response = post_ask(server, bikes, [box_region(*FIRST), box_region(*SECOND)])
    assert response.status_code == 200, response.text
    result = response.json()
    # Each region is tracked from its own frame, starting from its own box there.
    assert [track["key_frame"] for track in result["tracks"]] == [FIRST[1], SECOND[1]]
    for track, (box, frame) in zip(result["tracks"], (FIRST, SECOND), strict=True):
        assert track["num_frames"] == NUM_FRAMES
        assert track["boxes"][frame] == pytest.approx(list(box), abs=1.0)
    # The answer and the frames the prompt read are the library's, for the same regions.
    assert result["text"] == expected.text and result["text"]
    assert result["question"] == QUESTION and result["model"] == "synthref-tiny"
    assert result["region_frames"] == expected.region_frames
    assert result["video_frames"] == expected.video_frames
    assert result["tracks"] == json.loads(json.dumps([track.to_json() for track in expected.tracks]))
    assert (
        "regions"
        in httpx.get(f"{server.url}/openapi.json").json()["paths"]["/v1/ask"]["post"]["requestBody"]["content"][
            "multipart/form-data"
        ]["schema"]["required"]
    )


def test_a_mask_png_and_a_rle_mask(server, bikes, mask_png, expected_with_mask):
    with_mask = expected_with_mask
    regions = [box_region(*FIRST), {"mask": "mask1", "frame": SECOND[1]}]
    by_png = post_ask(server, bikes, regions, masks={"mask1": mask_png})
    assert by_png.status_code == 200, by_png.text
    result = by_png.json()
    assert result["text"] == with_mask.text
    assert [track["key_frame"] for track in result["tracks"]] == [FIRST[1], SECOND[1]]
    # The region starts from the mask's tight box, SECOND's box.
    assert result["tracks"][1]["boxes"][SECOND[1]] == pytest.approx(list(SECOND[0]), abs=1.0)

    # A COCO RLE (compressed counts, as pycocotools writes them), streamed: same answer, piece by piece.
    rle_regions = [box_region(*FIRST), {"mask": coco_rle(second_mask()), "frame": SECOND[1]}]
    streamed = post_ask(server, bikes, rle_regions, stream="true")
    assert streamed.status_code == 200, streamed.text
    events = sse_data(streamed)
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    assert "".join(json.loads(event)["text"] for event in events[:-2]).strip() == final["text"] == with_mask.text
    assert final["tracks"] == result["tracks"]


def data_url(path: Path, media: str) -> str:
    return f"data:{media};base64," + base64.b64encode(path.read_bytes()).decode()


def chat(server, messages: list, stream: bool = False) -> httpx.Response:
    body = {"model": "synthref-tiny", "messages": messages, "max_tokens": TOKENS, "stream": stream}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)


def test_chat_with_a_box_and_a_mask_on_their_own_frames(server, bikes, model, mask_png, expected_with_mask):
    first = {
        "role": "user",
        "content": [
            {"type": "text", "text": QUESTION},
            {"type": "video_url", "video_url": {"url": data_url(bikes, "video/mp4")}},
            {"type": "box", "box": list(FIRST[0]), "frame": FIRST[1]},
            {"type": "mask", "mask": data_url(mask_png, "image/png"), "frame": SECOND[1]},
        ],
    }
    response = chat(server, [{"role": "system", "content": "You are helpful."}, first])
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == expected_with_mask.text

    # A conversation: the earlier turn is kept, the new question names the regions in words.
    follow_up = "Which one is faster, region1 or region2?"
    messages = [
        first,
        {"role": "assistant", "content": expected_with_mask.text},
        {"role": "user", "content": follow_up},
    ]
    regions = [Region(box=FIRST[0], frame=FIRST[1]), Region(mask=mask_png, frame=SECOND[1])]
    conversation = [{"role": "user", "content": QUESTION}, *messages[1:]]
    reply = model.chat(bikes, regions, conversation, max_new_tokens=TOKENS)
    streamed = chat(server, messages, stream=True)  # a conversation's answer arrives as one chunk
    assert streamed.status_code == 200, streamed.text
    events = sse_data(streamed)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == reply.text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_bad_regions_are_refused_naming_the_value_and_the_fix(server, bikes, tmp_path):
    one, two = box_region(*FIRST), box_region(*SECOND)
    small = write_png(tmp_path / "small.png", np.ones((50, 100), dtype=bool))
    empty = write_png(tmp_path / "empty.png", np.zeros((HEIGHT, WIDTH), dtype=bool))
    (tmp_path / "notes.png").write_text("not an image")

    def refused(regions, *fragments, question=QUESTION, masks=None, status=400):
        return assert_error(post_ask(server, bikes, regions, question, masks), status, *fragments)

    mask2 = {"mask": "mask2", "frame": 30}
    refused([one, mask2], "region 2 (mask on frame 30)", "100x50", "640x272", masks={"mask2": small})
    refused([one, mask2], "region 2 (mask on frame 30)", "empty", "give a box", masks={"mask2": empty})
    refused([one, mask2], "notes.png is not an image", "PNG", masks={"mask2": tmp_path / "notes.png"})
    refused([one, box_region((700, 300, 760, 340), 30)], "region 2 (box on frame 30)", "lies outside", "0..640")
    refused([one, box_region(SECOND[0], 999)], "region 2", "frame 999", "bikes.mp4", "0..249")
    refused([one, two], "names 1 <region> placeholder for 2 regions", question="What is <region> doing?")
    refused([one, two], "no question about the 2 regions", question="")
    refused([one, mask2], "regions[1]", "'mask2' names no uploaded file", "-F mask2=@mask.png")
    refused([one], "uploaded mask 'mask2' is named by no region", masks={"mask2": small}, question="<region>?")
    refused([{"box": [1, 2, 3], "frame": 0}], "regions[0]", "4 numbers")
    refused([{"box": list(FIRST[0]), "frame": -1}], "regions[0]", "integer >= 0")
    refused([{"box": list(FIRST[0]), "mask": "mask1"}], "regions[0]", "exactly one")
    bad_rle = {"mask": {"size": [HEIGHT, WIDTH], "counts": [5, 10]}, "frame": 30}
    refused([one, bad_rle], "regions[1]", "cover 15 pixels", "174080")
    wrong_rle = {"mask": coco_rle(np.ones((50, 100), dtype=bool)), "frame": 30}
    refused([one, wrong_rle], "region 2 (mask on frame 30)", "100x50", "640x272")
    refused([one, {"mask": {"size": [HEIGHT, WIDTH], "counts": "garbage!!"}}], "regions[1]", "malformed")
    response = httpx.post(
        f"{server.url}/v1/ask",
        files={"video": (bikes.name, bikes.read_bytes())},
        data={"regions": "[{box: 1}]", "question": QUESTION},
    )
    assert_error(response, 400, "'regions' is not JSON", '"frame": 5')
    # The chat endpoint refuses the same mask, naming its part.
    content = [
        {"type": "text", "text": QUESTION},
        {"type": "video_url", "video_url": {"url": data_url(bikes, "video/mp4")}},
        {"type": "box", "box": list(FIRST[0]), "frame": FIRST[1]},
        {"type": "mask", "mask": data_url(small, "image/png"), "frame": 30},
    ]
    assert_error(chat(server, [{"role": "user", "content": content}]), 400, "region 2", "100x50")
    content[3] = {"type": "mask", "mask": "file:///etc/passwd", "frame": 30}
    assert_error(chat(server, [{"role": "user", "content": content}]), 400, "content part 3 (mask)", "data:image/png")
    later = [{"role": "user", "content": [*content[:3], content[2]]}, {"role": "assistant", "content": "x"}]
    later.append({"role": "user", "content": [{"type": "box", "box": [1, 2, 3, 4]}]})
    assert_error(chat(server, later), 400, "message 2", "only text")
    assert server.upload_files() == []


def test_region_uploads_stay_within_the_body_limit(limited_server, video, tmp_path):
    # limited_server takes at most 1 MB bodies: a large mask upload is refused before it is read whole.
    big = tmp_path / "big.png"
    big.write_bytes(np.random.default_rng(0).bytes(2 * 1024 * 1024))
    response = post_ask(limited_server, video, [{"mask": "mask1", "frame": 0}], "<region>?", masks={"mask1": big})
    assert_error(response, 413)


def test_demo_gathers_regions_on_their_frames_and_asks_about_them(model, bikes, mask_png, expected_with_mask, tmp_path):
    gr = pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e .[serve])")
    from artemis.errors import BoxError
    from artemis.serve import demo
    from artemis.serve.service import ModelService

    service = ModelService(model)
    regions = demo.add_box_region(service, [], str(bikes), FIRST[1], ",".join(str(v) for v in FIRST[0]))
    regions = demo.add_mask_region(service, regions, str(bikes), SECOND[1], str(mask_png))
    listing = demo.regions_listing(regions)
    assert "**region1**: box 280,100,360,170 on frame 10" in listing
    assert "**region2**: mask (its box 20,20,120,120) on frame 200" in listing

    # A bad third region is refused (the message names it and the uploaded file, not a server path); the
    # two regions stay as they were.
    small = write_png(tmp_path / "small.png", np.ones((50, 100), dtype=bool))
    with pytest.raises(BoxError, match=r"region 3 \(mask on frame 30\): the mask is 100x50 .* 640x272"):
        demo.add_mask_region(service, regions, str(bikes), 30, str(small))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(BoxError, match=r"region 3 \(mask on frame 30\): mask notes.png is not an image") as error:
        demo.add_mask_region(service, regions, str(bikes), 30, str(tmp_path / "notes.png"))
    assert str(tmp_path) not in str(error.value)
    with pytest.raises(BoxError, match=r"region 3 .* lies outside"):
        demo.add_box_region(service, regions, str(bikes), 30, "700,300,760,340")
    with pytest.raises(gr.Error, match="no box yet"):
        demo.add_box_region(service, regions, str(bikes), 30, "")
    with pytest.raises(gr.Error, match="no regions yet"):
        demo.ask_about_regions(service, tmp_path, str(bikes), [], QUESTION, gr.Progress())

    text, mp4, gif, json_path = demo.ask_about_regions(service, tmp_path, str(bikes), regions, QUESTION, gr.Progress())
    assert text == expected_with_mask.text
    result = json.loads(Path(json_path).read_text())
    assert result["text"] == text
    assert [track["key_frame"] for track in result["tracks"]] == [FIRST[1], SECOND[1]]
    drawn = Path(mp4 or gif["value"])
    assert drawn.stat().st_size > 0


def test_the_demo_has_the_region_buttons():
    pytest.importorskip("gradio", reason="the web demo needs gradio (pip install -e .[serve])")
    from types import SimpleNamespace

    from artemis.model.loading import ModelCard
    from artemis.serve.demo import build_demo

    demo = build_demo(SimpleNamespace(card=ModelCard(name="stub"), can_write_boxes=False))
    buttons = {block.value for block in demo.blocks.values() if type(block).__name__ == "Button"}
    assert {"Track", "Describe", "Ask", "Add box as region", "Add mask as region", "Ask about the regions"} <= buttons


def test_a_conversation_continued_with_a_new_upload_reuses_the_models_cache(model, video, tmp_path):
    # Each chat request uploads the video again (another file); the model's KV cache of the last conversation
    # is keyed by the pixels and the regions, so the follow-up prefills only its new turn. One region: the
    # default model's tokens for several regions depend on the question (its relation token), and such a
    # conversation is encoded again at every turn (docs/regions.md).
    from artemis.serve.service import ModelService

    service = ModelService(model)
    regions = [Region(box=(100, 60, 220, 200), frame=5)]
    first, second = tmp_path / "upload-0.mp4", tmp_path / "upload-1.mp4"
    first.write_bytes(video.read_bytes())
    second.write_bytes(video.read_bytes())
    turn = service.chat(first, regions, [{"role": "user", "content": "What is <region> doing?"}], TOKENS)
    follow_up = [*turn.messages, {"role": "user", "content": "What colour is region1?"}]
    reply = service.chat(second, regions, follow_up, TOKENS)
    assert model.chat_cache.reused_tokens > 0
    model.chat_cache.clear()
    assert reply.text == model.chat(video, regions, follow_up, max_new_tokens=TOKENS).text
