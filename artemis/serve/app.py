"""The HTTP API (FastAPI) and, at ``/``, the web demo: ``create_app(settings) -> FastAPI``.

docs/serve.md documents every endpoint; ``/docs`` shows them too. One process holds one model
(:class:`~artemis.serve.service.ModelService`); ``artemis serve --workers N`` runs N such processes, each
built by :func:`app_from_env`.
"""

from __future__ import annotations

import html
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from artemis.errors import ArtemisError
from artemis.serve.chat import ChatRequest, completion, completion_chunk, new_id, read_question
from artemis.serve.errors import ServeError, error_body, from_artemis, install_handlers
from artemis.serve.limits import Admission, BodyLimit, Job, limit_malloc_arenas
from artemis.serve.regions import MASK_FIELD, RegionSpec, read_regions
from artemis.serve.service import LockedStream, ModelService
from artemis.serve.settings import ServeSettings
from artemis.serve.uploads import Form, RequestFolder, read_form, save_data_url
from artemis.tasks.referring import Description

logger = logging.getLogger(__name__)

__all__ = ["app_from_env", "create_app"]


def _form_schema(properties: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """OpenAPI for a multipart body the endpoint reads itself (streamed to disk, not spooled by FastAPI)."""
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


VIDEO = {"type": "string", "format": "binary", "description": "the video file"}
BOX = {"type": "string", "example": "100,60,220,200", "description": "x1,y1,x2,y2 in pixels of `frame`"}
FRAME = {"type": "integer", "default": 0, "description": "0-based frame the box is on"}
REGIONS = {
    "type": "string",
    "example": '[{"box": [100, 60, 220, 200], "frame": 5}, {"mask": "mask1", "frame": 20}]',
    "description": "JSON list, one region per <region> of the question, in order: {'box': [x1, y1, x2, y2], "
    "'frame': N} or {'mask': <a mask file field's name, or a COCO RLE {'size': [H, W], 'counts': ...}>, 'frame': N}",
}
MASK = {"type": "string", "format": "binary", "description": "a mask PNG (non-zero pixels) of the video's size"}


class Server:
    """What the routes share: the model service, the upload folder and the limits of this process."""

    def __init__(self, settings: ServeSettings, service: ModelService) -> None:
        self.settings = settings
        self.service = service
        self.admission = Admission(settings.queue, settings.timeout)
        self.upload_root = Path(tempfile.mkdtemp(prefix="artemis-serve-"))  # mode 700
        self.created = int(time.time())

    @asynccontextmanager
    async def request(self) -> AsyncIterator[tuple[Job, RequestFolder]]:
        """A place in the queue (429 when there is none) and a private upload folder, both given back at the
        end; artemis errors become JSON errors that name the client's file, not the server's path."""
        ticket = self.admission.enter()
        try:
            with RequestFolder(self.upload_root) as folder:
                try:
                    yield Job(ticket, self.admission), folder
                except (ArtemisError, ValueError) as error:
                    raise from_artemis(error, folder.renames()) from None
        finally:
            ticket.release()

    def regions_result(self, description: Description) -> dict[str, Any]:
        """``/v1/ask``'s answer: the description with every region's track."""
        return {**description.to_dict(), "model": self.service.name}

    def result(self, description: Description) -> dict[str, Any]:
        return {
            "text": description.text,
            "question": description.question,
            "track": description.track.to_json(),
            "video_frames": description.video_frames,
            "region_frames": description.region_frames,
            "model": self.service.name,
        }


def _sse(data: Any) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def stream_response(
    job: Job, stream: LockedStream, piece: Callable[[str], Any], end: Callable[[Description], list[Any]]
) -> StreamingResponse:
    """Server-sent events: ``piece(text)`` for every generated piece, then ``end(description)``, then
    ``[DONE]``. A producer thread reads the model's stream (and releases the model when it ends, also when
    the client leaves); an error or the deadline ends the events with an error event."""
    pieces: queue.Queue[tuple[str, Any]] = queue.Queue()

    def produce() -> None:
        try:
            for text in stream:
                if job.abandoned:
                    break
                pieces.put(("piece", text))
            pieces.put(("end", stream.description))
        except BaseException as error:  # handed to the consumer, which logs it
            pieces.put(("error", error))
        finally:
            stream.close()
            job.ticket.release()

    job.ticket.hold()
    threading.Thread(target=produce, name="artemis-serve-stream", daemon=True).start()

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                with anyio.fail_after(max(0.0, job.remaining())):
                    kind, value = await anyio.to_thread.run_sync(pieces.get, abandon_on_cancel=True)
                if kind == "piece":
                    yield _sse(piece(value))
                elif kind == "end":
                    for event in end(value):
                        yield _sse(event)
                    break
                else:
                    logger.error("generation failed", exc_info=value)
                    yield _sse(error_body("internal_error", "generation failed; the server log has the details"))
                    break
        except TimeoutError:
            error = job.timeout_error()
            yield _sse(error_body(error.type, error.message))
        finally:
            job.abandoned = True  # the producer stops at its next piece
        yield _sse("[DONE]")

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _mount_demo(app: FastAPI, service: ModelService) -> None:
    """The web demo at ``/`` (gradio), or a short note where it cannot be built."""
    try:
        import gradio

        from artemis.serve.demo import build_demo
    except ImportError as error:
        logger.warning("web demo not available (%s); / shows a note instead", error)
        _note_at_root(app, f"{error}; pip install 'artemis-video[serve]'")
        return
    gradio.mount_gradio_app(app, build_demo(service), path="/")


def _note_at_root(app: FastAPI, reason: str) -> None:
    @app.get("/", include_in_schema=False)
    def note() -> HTMLResponse:
        return HTMLResponse(
            f"<p>artemis serves its API here (<a href='/docs'>/docs</a>); "
            f"the web demo is off ({html.escape(reason)}).</p>"
        )


def create_app(settings: ServeSettings | None = None, service: ModelService | None = None) -> FastAPI:
    """The API and the web demo over one model (loaded here from ``settings.model`` unless given)."""
    settings = settings or ServeSettings()
    service = service or ModelService.load(settings.model, max_frames=settings.max_frames, device=settings.device)
    server = Server(settings, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        shutil.rmtree(server.upload_root, ignore_errors=True)

    app = FastAPI(
        title="artemis",
        version="1",
        summary="Track targets in a video from a box or a mask, describe them and answer questions about them.",
        description=f"Model: {service.card.describe()}. See docs/serve.md.",
        lifespan=lifespan,
    )
    app.state.server = server
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)

    @app.get("/healthz", summary="Liveness: the server is up and its model loaded; the answering process's id")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": service.name, "worker": os.getpid()}

    @app.get("/v1/queue", summary="Requests holding or waiting for the model in this worker process")
    def queue_status() -> dict[str, int]:
        in_flight = server.admission.in_flight
        return {"in_flight": in_flight, "waiting": max(0, in_flight - 1), "queue": settings.queue}

    @app.get("/v1/models", summary="The served model (OpenAI list shape), its card and tasks")
    def models() -> dict[str, Any]:
        card = service.card
        entry = {
            "id": service.name,
            "object": "model",
            "created": server.created,
            "owned_by": "artemis",
            "card": {"name": card.name, "summary": card.summary, "caveat": card.caveat},
            "tasks": service.tasks,
        }
        return {"object": "list", "data": [entry]}

    @app.post(
        "/v1/track",
        summary="Track the target in a box through the video (the JSON of `artemis track`)",
        openapi_extra=_form_schema(
            {
                "video": VIDEO,
                "box": BOX,
                "frame": FRAME,
                "by_model": {"type": "boolean", "default": False, "description": "the model writes the boxes"},
            },
            ["video", "box"],
        ),
    )
    async def track(request: Request) -> JSONResponse:
        async with server.request() as (job, folder):
            form = await read_form(request, folder, {"video"})
            video, box, frame = form.file("video"), form.text("box"), form.integer("frame", 0)
            method = service.track_by_model if form.flag("by_model") else service.track
            job.start()
            result = await job.run(method, video.path, box, frame)
        return JSONResponse(result.to_json())

    @app.post(
        "/v1/describe",
        summary="Describe the target in a box, or answer a question about it (stream=true: server-sent events)",
        openapi_extra=_form_schema(
            {
                "video": VIDEO,
                "box": BOX,
                "frame": FRAME,
                "question": {"type": "string", "description": "names the target <region>"},
                "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": 1024},
                "stream": {"type": "boolean", "default": False},
            },
            ["video", "box"],
        ),
    )
    async def describe(request: Request) -> Any:
        async with server.request() as (job, folder):
            form = await read_form(request, folder, {"video"})
            args = _describe_args(form)
            job.start()
            if not form.flag("stream"):
                description = await job.run(service.describe, *args)
                return JSONResponse(server.result(description))
            stream = await job.run(service.describe_stream, *args, discard=LockedStream.close)
        return stream_response(
            job, stream, lambda text: {"text": text}, lambda description: [server.result(description)]
        )

    @app.post(
        "/v1/ask",
        summary="Answer a question about several regions, each a box or a mask on a frame of its own",
        openapi_extra=_form_schema(
            {
                "video": VIDEO,
                "regions": REGIONS,
                "question": {"type": "string", "example": "Is <region> left of <region>?"},
                "mask1": MASK,
                "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": 1024},
                "stream": {"type": "boolean", "default": False},
            },
            ["video", "regions", "question"],
        ),
    )
    async def ask(request: Request) -> Any:
        async with server.request() as (job, folder):
            form = await read_form(request, folder, {"video"}, MASK_FIELD)
            video, regions = form.file("video"), read_regions(form.text("regions"), form.files)
            args = (video.path, regions, form.text("question"), form.integer("max_new_tokens", None, low=1, high=1024))
            job.start()
            if not form.flag("stream"):
                description = await job.run(service.ask, *args)
                return JSONResponse(server.regions_result(description))
            stream = await job.run(lambda: service.ask(*args, stream=True), discard=LockedStream.close)
        return stream_response(
            job, stream, lambda text: {"text": text}, lambda description: [server.regions_result(description)]
        )

    @app.post(
        "/v1/ground",
        summary="Find and track the target an expression names (models trained to write boxes)",
        openapi_extra=_form_schema(
            {"video": VIDEO, "expression": {"type": "string", "example": "the red circle"}}, ["video", "expression"]
        ),
    )
    async def ground(request: Request) -> JSONResponse:
        async with server.request() as (job, folder):
            service.require_boxes()  # before reading the upload
            form = await read_form(request, folder, {"video"})
            video, expression = form.file("video"), form.text("expression")
            job.start()
            result = await job.run(service.ground, video.path, expression)
        return JSONResponse(result.to_json())

    @app.post(
        "/v1/chat/completions",
        summary="OpenAI chat completions: a video_url part, box and mask parts, <region> text; conversations",
    )
    async def chat(body: ChatRequest) -> Any:
        if body.model != service.name:
            raise ServeError(
                404, f"model {body.model!r} is not served here; use {service.name!r} (GET /v1/models)", type="not_found"
            )
        question = read_question(body)
        max_new_tokens = body.max_tokens or body.max_completion_tokens
        completion_id = new_id()
        async with server.request() as (job, folder):
            video = save_data_url(question.video_url, folder, f"content part {question.video_part} (video_url)")

            def mask_file(spec: RegionSpec, url: str) -> Path:
                return save_data_url(url, folder, spec.where, kind="mask").path

            regions = [spec.region(mask_file) for spec in question.regions]
            job.start()
            # Answered by chat (which keeps the model's KV cache for the next turn), but for a first turn
            # streamed as it is generated (ask; a one-message chat is the same answer).
            if not body.stream or len(question.messages) > 1:
                args = (video.path, regions, question.messages, max_new_tokens)
                description = await job.run(service.chat, *args)
                if not body.stream:
                    return JSONResponse(completion(completion_id, service.name, description.text))
                return _chunks_response(completion_id, service.name, description.text)  # chat does not stream
            args = (video.path, regions, question.text, max_new_tokens)
            stream = await job.run(lambda: service.ask(*args, stream=True), discard=LockedStream.close)

        def end(description: Description) -> list[Any]:
            return [completion_chunk(completion_id, service.name, {}, "stop")]

        first = completion_chunk(completion_id, service.name, {"role": "assistant", "content": ""})
        response = stream_response(
            job, stream, lambda text: completion_chunk(completion_id, service.name, {"content": text}), end
        )
        response.body_iterator = _prepend(_sse(first), response.body_iterator)
        return response

    @app.api_route(
        "/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], include_in_schema=False
    )
    def unknown(request: Request, rest: str) -> None:
        # The demo at / would answer every other path; API paths get JSON errors.
        allowed = [route for route in app.routes if getattr(route, "path", None) == request.url.path]
        if allowed and getattr(allowed[0], "path", "") != "/v1/{rest:path}":
            raise ServeError(405, f"{request.method} is not allowed on {request.url.path}; see /docs for the API")
        raise ServeError(404, f"no endpoint {request.url.path}; see /docs for the API")

    if settings.demo:
        _mount_demo(app, service)
    else:
        _note_at_root(app, "started with --no-demo")
    return app


def _describe_args(form: Form) -> tuple[Any, ...]:
    video, box, frame = form.file("video"), form.text("box"), form.integer("frame", 0)
    question = form.optional("question")
    return video.path, box, frame, question, form.integer("max_new_tokens", None, low=1, high=1024)


def _chunks_response(completion_id: str, model: str, text: str) -> StreamingResponse:
    """A whole answer as the chunks of a stream: the role, the text, the stop, ``[DONE]``."""
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": text}, None), ({}, "stop")]
    events = [_sse(completion_chunk(completion_id, model, delta, finish)) for delta, finish in deltas]
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(iter([*events, _sse("[DONE]")]), media_type="text/event-stream", headers=headers)


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for item in rest:
        yield item


def app_from_env() -> FastAPI:
    """The app factory uvicorn's workers import: settings from ``ARTEMIS_SERVE_SETTINGS``; malloc arenas
    capped (:func:`~artemis.serve.limits.limit_malloc_arenas`) before the model loads."""
    limit_malloc_arenas()
    return create_app(ServeSettings.from_env())
