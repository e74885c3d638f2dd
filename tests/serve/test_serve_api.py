"""The HTTP API of a real ``artemis serve`` process with the bundled model, on realshort.mp4."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from conftest import BOX, FRAME

pytestmark = [pytest.mark.slow, pytest.mark.reference]

QUESTION = "What is the <region> doing?"


def post_form(server, endpoint: str, video: Path, name: str | None = None, **fields) -> httpx.Response:
    with video.open("rb") as handle:
        files = {"video": (name or video.name, handle, "video/mp4")}
        data = {key: str(value) for key, value in fields.items()}
        return httpx.post(f"{server.url}{endpoint}", files=files, data=data, timeout=120)


def assert_error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message"}
    message = error["message"]
    assert "\n" not in message and "Traceback" not in message and "/tmp" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def chat_content(video: Path, text: str = QUESTION, box: object = (100, 60, 220, 200), frame: int = FRAME) -> list:
    data_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    return [
        {"type": "text", "text": text},
        {"type": "video_url", "video_url": {"url": data_url}},
        {"type": "box", "box": list(box) if isinstance(box, tuple) else box, "frame": frame},
    ]


def sse_data(response: httpx.Response) -> list[str]:
    return [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]


def test_health_and_models(server):
    health = httpx.get(f"{server.url}/healthz").json()
    assert health == {"status": "ok", "model": "synthref-tiny", "worker": server.process.pid}
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == "synthref-tiny" and entry["object"] == "model"
    assert entry["tasks"] == ["describe"] and "SynthRef" in entry["card"]["summary"]
    assert httpx.get(f"{server.url}/").status_code == 200  # the web demo (or its note)
    assert httpx.get(f"{server.url}/openapi.json").json()["paths"]["/v1/describe"]


def test_track_matches_the_cli(server, video):
    from artemis import ArtemisModel
    from artemis.track import track_video

    response = post_form(server, "/v1/track", video, box=BOX, frame=FRAME)
    assert response.status_code == 200, response.text
    # The model's tracker settings (what describe uses: its tracker on every track_stride-th frame at
    # track_max_side px), in the JSON `artemis track VIDEO --box BOX --frame 5 --tracker T --stride S
    # --max-side M` writes.
    pipeline = ArtemisModel.from_pretrained("synthref-tiny")
    box = tuple(float(v) for v in BOX.split(","))
    expected = track_video(
        video, box, FRAME, tracker=pipeline.tracker, stride=pipeline.track_stride,
        max_side=pipeline.track_max_side, progress=False,
    ).to_json()  # fmt: skip
    assert response.json() == json.loads(json.dumps(expected))
    assert pipeline.track(video, box, FRAME).to_json() == expected


def test_describe_and_its_stream(server, video):
    response = post_form(server, "/v1/describe", video, box=BOX, frame=FRAME)
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {"text", "question", "track", "video_frames", "region_frames", "model"}
    assert result["text"] and result["model"] == "synthref-tiny"
    assert result["track"]["key_frame"] == FRAME and result["track"]["num_frames"] == 36

    streamed = post_form(server, "/v1/describe", video, box=BOX, frame=FRAME, stream="true")
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_data(streamed)
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    pieces = [json.loads(event)["text"] for event in events[:-2]]
    assert len(pieces) > 1 and all(set(json.loads(event)) == {"text"} for event in events[:-2])
    assert "".join(pieces).strip() == final["text"] == result["text"]
    assert final["question"] == result["question"] and final["track"] == result["track"]


def test_chat_completions_with_the_openai_client(server, video):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": chat_content(video)}]
    answer = client.chat.completions.create(model="synthref-tiny", messages=messages, max_tokens=32)
    assert answer.object == "chat.completion" and answer.model == "synthref-tiny"
    text = answer.choices[0].message.content
    assert text and answer.choices[0].finish_reason == "stop"

    chunks = list(client.chat.completions.create(model="synthref-tiny", messages=messages, max_tokens=32, stream=True))
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks).strip() == text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_corrupt_video_gets_the_clis_message(server, tmp_path, monkeypatch):
    from artemis.errors import VideoError
    from artemis.video import open_video

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    monkeypatch.chdir(tmp_path)  # `artemis track corrupt.mp4 ...` run here prints this message
    with pytest.raises(VideoError) as cli:
        open_video("corrupt.mp4")
    response = post_form(server, "/v1/describe", corrupt, box=BOX, frame=FRAME)
    assert assert_error(response, 400) == " ".join(str(cli.value).split())

    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    assert_error(post_form(server, "/v1/track", text, box=BOX), 400, "notes.txt")


def test_bad_requests(server, video):
    assert_error(post_form(server, "/v1/track", video, box="220,60,100,200", frame=FRAME), 400, "x2 < x1")
    assert_error(post_form(server, "/v1/track", video, box="1,2,3"), 400, "'1,2,3'")
    assert_error(post_form(server, "/v1/describe", video, box=BOX, frame=99), 400, "99")
    assert_error(post_form(server, "/v1/track", video, box=BOX, frame="five"), 400, "frame")
    assert_error(httpx.post(f"{server.url}/v1/track", data={"box": BOX}), 415, "multipart/form-data")
    assert_error(httpx.post(f"{server.url}/v1/track", files={"x": ("a", b"b")}, data={"box": BOX}), 400, "'x'")
    assert_error(httpx.post(f"{server.url}/v1/track", data={"box": BOX}, files={}), 415)
    assert_error(httpx.get(f"{server.url}/v1/track"), 405, "GET")
    assert_error(httpx.get(f"{server.url}/v1/nothing"), 404, "/v1/nothing")
    assert_error(httpx.post(f"{server.url}/v1/chat/completions", json={"messages": []}), 422, "model")


def test_box_output_on_a_describe_only_model(server, video):
    config = "model 'synthref-tiny' was not trained to write boxes"
    assert_error(post_form(server, "/v1/ground", video, expression="the blue diamond"), 400, config)
    assert_error(post_form(server, "/v1/track", video, box=BOX, frame=FRAME, by_model="true"), 400, config)


def test_chat_errors_name_the_part(server, video):
    def chat(content, model="synthref-tiny") -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)

    content = chat_content(video)
    assert_error(chat([*content, {"type": "image_url", "image_url": {"url": "x"}}]), 400, "part 3", "'image_url'")
    assert_error(chat([content[0], content[1], {"type": "box", "box": [1, 2, 3]}]), 400, "part 2 (box)")
    assert_error(chat([content[0], {"type": "video_url", "video_url": "x"}, content[2]]), 400, "part 1 (video_url)")
    remote = {"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}
    assert_error(chat([content[0], remote, content[2]]), 400, "part 1 (video_url)", "data:")
    one_region_too_many = [{"type": "text", "text": "Is <region> near <region>?"}, content[1], content[2]]
    assert_error(chat(one_region_too_many), 400, "2 <region> placeholders for 1 box and mask parts")
    assert_error(chat([content[0], content[1]]), 400, "box")
    assert_error(chat(content, model="gpt-4o"), 404, "'gpt-4o'")
    assert_error(chat(chat_content(video, box=(220, 60, 100, 200))), 400, "x2 < x1")


def test_uploads_are_removed(server):
    assert server.upload_files() == []
