"""Every error a client sees: JSON ``{"error": {"type", "message"}}`` with one line, never a traceback.

artemis' own errors keep the message the CLI prints, with the server's temporary paths replaced by the
name the client uploaded. Anything unexpected is logged here with its traceback and reaches the client as
"internal error".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from artemis.errors import ArtemisError, BoxError, ConfigError, VideoError
from artemis.serve.service import LimitError

logger = logging.getLogger(__name__)

__all__ = ["ServeError", "error_body", "from_artemis", "install_handlers"]

# HTTP statuses and error types of artemis' own errors; any other ArtemisError is a 400 "invalid_request".
ARTEMIS_STATUS: dict[type[ArtemisError], tuple[int, str]] = {
    LimitError: (413, "too_large"),
    VideoError: (400, "video_error"),
    BoxError: (400, "box_error"),
    ConfigError: (400, "config_error"),
}

HTTP_TYPES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "queue_full",
    500: "internal_error",
    504: "timeout",
}


class ServeError(Exception):
    """An error with the status, type and one-line message the client gets."""

    def __init__(self, status: int, message: str, *, type: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.type = type or HTTP_TYPES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})


def error_body(type: str, message: str) -> dict:
    return {"error": {"type": type, "message": message}}


def from_artemis(error: ArtemisError | ValueError, renames: Mapping[str, str] = {}) -> ServeError:
    """The client's view of an artemis error: its status, and its message with server paths renamed."""
    message = " ".join(str(error).split())  # one line
    for path, name in sorted(renames.items(), key=lambda item: -len(item[0])):
        message = message.replace(path, name)
    for kind, (status, type_) in ARTEMIS_STATUS.items():
        if isinstance(error, kind):
            return ServeError(status, message, type=type_)
    return ServeError(400, message, type="invalid_request")


def _response(error: ServeError) -> JSONResponse:
    return JSONResponse(error_body(error.type, error.message), status_code=error.status, headers=error.headers)


async def _serve_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServeError)
    return _response(error)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        message = f"no endpoint {request.url.path}; see /docs for the API"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
    else:
        message = str(error.detail)
    return _response(ServeError(error.status_code, message, headers=getattr(error, "headers", None)))


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return _response(ServeError(422, "invalid request: " + "; ".join(problems)))


async def _disconnect(request: Request, error: Exception) -> JSONResponse:
    # Nobody reads this; the upload folder was removed on the way out.
    return _response(ServeError(400, "the client disconnected before the request was complete"))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("internal error on %s %s", request.method, request.url.path, exc_info=error)
    return _response(ServeError(500, "internal error; the server log has the details"))


def install_handlers(app: FastAPI) -> None:
    """Make every error (also FastAPI's own 404/405/422 and unexpected exceptions) JSON with one line."""
    app.add_exception_handler(ServeError, _serve_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _disconnect)
    app.add_exception_handler(Exception, _unexpected)
