"""``artemis serve``: the HTTP API and the web demo over one model, on one port.

artemis serve [--model DIR|NAME] [--host 127.0.0.1] [--port 8000] [--workers N] [--max-upload-mb 200]
              [--max-frames N] [--queue 16] [--timeout 120] [--no-demo]
"""

from __future__ import annotations

import argparse
import os
import sys

from artemis.model.loading import DEFAULT_MODEL, resolve_model_dir
from artemis.serve.settings import SETTINGS_ENV, ServeSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` sub-command to the ``artemis`` parser."""
    parser = subparsers.add_parser(
        "serve",
        help="serve the HTTP API (OpenAI-compatible chat included) and the web demo",
        description=(
            "Serve a model over HTTP: /v1/track, /v1/describe, /v1/chat/completions (OpenAI format) and /v1/ground; "
            "the web demo at /, the API reference at /docs. Binds loopback unless --host says otherwise. "
            "The limits apply per worker process. See docs/serve.md."
        ),
    )
    defaults = ServeSettings()
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model directory or bundled name (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--host", default=defaults.host, help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--workers", type=int, default=defaults.workers, help="processes, each with its own model")
    parser.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb, help="largest request body")
    parser.add_argument("--max-frames", type=int, default=None, help="refuse videos with more frames (default: any)")
    parser.add_argument("--queue", type=int, default=defaults.queue, help="requests that may wait for the model")
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds per request before 504")
    parser.add_argument("--no-demo", action="store_true", help="serve the API only, no web demo at /")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``artemis serve``; returns when the server stops."""
    import uvicorn

    settings = ServeSettings(
        model=args.model,
        device=args.device,
        host=args.host,
        port=args.port,
        workers=args.workers,
        demo=not args.no_demo,
        max_upload_mb=args.max_upload_mb,
        max_frames=args.max_frames,
        queue=args.queue,
        timeout=args.timeout,
    )
    resolve_model_dir(settings.model)  # a wrong --model fails here, in one line, not in every worker
    print(
        f"artemis serve: model {settings.model} on http://{settings.host}:{settings.port} "
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''}; API at /docs"
        f"{', demo at /' if settings.demo else ''})",
        file=sys.stderr,
    )
    # Every worker process builds its own app (and model) from these settings.
    os.environ[SETTINGS_ENV] = settings.to_env()
    uvicorn.run(
        "artemis.serve.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        log_level="info" if args.verbose else "warning",
        timeout_graceful_shutdown=5,
    )
    return 0
