"""What keeps one server process healthy: a body size limit, a bounded queue for the model, a timeout.

- :class:`BodyLimit` refuses a body above the limit with 413: at once from its ``Content-Length``, or, for
  a chunked body, as soon as the bytes read pass the limit (the rest is never read).
- :class:`Admission` lets at most ``queue`` requests wait while the model runs one; others get 429 with
  ``Retry-After``. A request takes its place when it arrives, before its upload is read.
- :class:`Job` runs model work in a worker thread, so the event loop stays responsive, under a deadline
  (504 when it passes). Python cannot stop a thread: work that outlives its request finishes unseen, and
  keeps its place in the queue until it does, so timeouts cannot pile up threads.
- :func:`limit_malloc_arenas` caps glibc's malloc arenas, which would otherwise keep freed memory of every
  thread that ever allocated (docs/serve.md, "Memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from artemis.serve.errors import ServeError, error_body

__all__ = ["MALLOC_ARENAS", "Admission", "BodyLimit", "BodyTooLarge", "Job", "limit_malloc_arenas"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# glibc's arenas of a server process; MALLOC_ARENA_MAX in the environment overrides it.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas in this process; ``True`` when it was applied.

    Each thread that allocates gets an arena of its own, up to 8 per core, and memory freed into an arena
    mostly stays with the process; threads that come and go (request threads, the decoder's and the
    tokenizer's threads) would make the process grow by an arena's worth of working memory each. Leaves
    the setting alone where ``MALLOC_ARENA_MAX`` is set (glibc read it at start-up) or the C library is not
    glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    applied = bool(mallopt(_M_ARENA_MAX, arenas))
    logger.info("malloc arenas limited to %d: %s", arenas, applied)
    return applied


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a request body passes the limit."""


class BodyLimit:
    """ASGI middleware: 413 for request bodies above ``max_bytes``.

    Args:
        app: the ASGI app it wraps.
        max_bytes: the largest body accepted.
        label: how the limit is named in the message (the command-line flag).
    """

    def __init__(self, app: Any, max_bytes: int, label: str = "--max-upload-mb") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.label = label

    def message(self) -> str:
        mb = self.max_bytes / (1024 * 1024)
        return f"request body is larger than this server accepts ({mb:g} MB, {self.label}); send a smaller video"

    async def _reject(self, send: Callable) -> None:
        body = json.dumps(error_body("too_large", self.message())).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)  # before a byte of the body is read
                return
        seen = 0
        too_large = False
        started = False

        async def counting_receive() -> dict:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge(self.message())
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if too_large:  # whatever the app made of the interrupted body, the client gets 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                started = True
                await self._reject(send)


class Ticket:
    """A request's place in the queue; released when the request and every thread it started are done."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._holders = 1
        self._lock = threading.Lock()

    def hold(self) -> None:
        with self._lock:
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            done = self._holders == 0
        if done:
            self._admission._leave()


class Admission:
    """At most ``queue`` requests wait while one uses the model; the next gets 429.

    ``Retry-After`` is the time the requests ahead are expected to take (a running mean of model work).
    """

    def __init__(self, queue: int, timeout: float) -> None:
        self.limit = queue + 1
        self.timeout = timeout
        self.in_flight = 0
        self.mean_seconds = 5.0  # until the first request is measured
        self._lock = threading.Lock()

    def enter(self) -> Ticket:
        with self._lock:
            if self.in_flight >= self.limit:
                wait = math.ceil(min(self.timeout, self.mean_seconds * self.in_flight))
                raise ServeError(
                    429,
                    f"the server is busy ({self.in_flight - 1} requests already wait for the model, --queue "
                    f"{self.limit - 1}); retry after {wait} s",
                    headers={"Retry-After": str(max(1, wait))},
                )
            self.in_flight += 1
        return Ticket(self)

    def measured(self, seconds: float) -> None:
        with self._lock:
            self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * seconds

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class Job:
    """One request's model work: run in threads, under one deadline that starts at :meth:`start`.

    A result that arrives after its request gave up is passed to ``discard`` (e.g. to close a stream
    that holds the model).
    """

    def __init__(self, ticket: Ticket, admission: Admission) -> None:
        self.ticket = ticket
        self.admission = admission
        self.deadline = math.inf
        self._lock = threading.Lock()
        self.abandoned = False

    def start(self) -> None:
        self.deadline = time.monotonic() + self.admission.timeout

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timeout_error(self) -> ServeError:
        return ServeError(
            504,
            f"the request took longer than this server allows ({self.admission.timeout:g} s, --timeout); "
            "retry later or send a shorter video",
        )

    async def run(self, fn: Callable[..., T], *args: Any, discard: Callable[[T], Any] | None = None) -> T:
        """``fn(*args)`` in a worker thread; 504 when the deadline passes first."""
        handed_over: list[T] = []

        def work() -> T:
            began = time.monotonic()
            try:
                result = fn(*args)
                with self._lock:
                    if self.abandoned:
                        if discard is not None:
                            discard(result)
                    else:
                        handed_over.append(result)
                self.admission.measured(time.monotonic() - began)
                return result
            finally:
                self.ticket.release()

        self.ticket.hold()
        try:
            with anyio.fail_after(max(0.0, self.remaining())):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except BaseException as error:
            with self._lock:
                self.abandoned = True
                leftovers = list(handed_over)
            for result in leftovers:  # finished just as the request gave up
                if discard is not None:
                    discard(result)
            if isinstance(error, TimeoutError):
                raise self.timeout_error() from None
            raise
