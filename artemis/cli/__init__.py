"""The ``artemis`` command line.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an
exit code). Errors that artemis raises on purpose (:class:`artemis.errors.ArtemisError`) and missing
files become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from artemis.errors import ArtemisError

# Sub-command modules, in the order ``artemis --help`` lists them. A module missing from an install
# (an optional part) is skipped.
COMMAND_MODULES = ("track", "ground", "describe", "ask", "data", "eval", "train", "demo", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artemis",
        description="Referential video understanding: track a target from one box, describe it, ask about it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"artemis.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"artemis.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Only ``artemis train`` takes free-form ``--section.key value`` overrides; elsewhere they are errors.
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # bitsandbytes (pulled in by peft) warns on every import on CPU that an optional kernels package is
    # missing; it changes nothing for artemis, so keep it out of every command's output.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ArtemisError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
        print(f"artemis {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"artemis {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
