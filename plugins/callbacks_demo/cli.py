"""``callbacks demo``: the demo's command line, contributed to the ``callbacks`` command through
the ``callbacks_commands`` hook (and runnable as ``python -m callbacks_demo``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from callbacks import hookimpl

from .run import run_demo

__all__ = ["DemoPlugin", "add_arguments", "main"]


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (the only place they are defined)."""
    parser.add_argument(
        "--questions", type=_at_least_one, default=3, help="questions to answer (default 3)"
    )
    parser.add_argument(
        "--concurrency", type=_at_least_one, default=1, help="questions run at once (asyncio)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("callbacks-out"),
        help="output directory (default callbacks-out)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only where the outputs went (no trace trees, timing or token tables)",
    )
    parser.set_defaults(run=_run)


def _unwritable(out_dir: Path) -> str | None:
    """Why ``out_dir`` cannot take the demo's files, or ``None``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".callbacks-demo-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def _run(args: argparse.Namespace, out: TextIO) -> int:
    problem = _unwritable(args.out)
    if problem is not None:
        sys.stderr.write(f"callbacks demo: cannot write to --out {str(args.out)!r}: {problem}\n")
        return 2
    run_demo(
        questions=args.questions,
        concurrency=args.concurrency,
        out_dir=args.out,
        stream=out,
        quiet=args.quiet,
    )
    return 0


class DemoPlugin:
    """The built-in demo plugin: it hears no event; it adds ``callbacks demo``."""

    callbacks_name = "demo"
    callbacks_delivery = "inline"  # no event hooks: no worker thread either

    @hookimpl
    def callbacks_commands(self, commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        """Add ``callbacks demo``."""
        demo = commands.add_parser(
            "demo", help="run the offline demo pipeline through every active plugin"
        )
        add_arguments(demo)


def main(argv: list[str] | None = None) -> int:
    """``python -m callbacks_demo [--questions N] [--concurrency N] [--out DIR] [--quiet]``."""
    parser = argparse.ArgumentParser(
        prog="python -m callbacks_demo", description="Run the offline callbacks demo pipeline."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return int(args.run(args, sys.stdout))
