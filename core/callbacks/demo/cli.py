"""The ``python -m callbacks.demo`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from .run import run_demo

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m callbacks.demo [--questions N] [--concurrency N] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m callbacks.demo", description="Run the offline callbacks demo pipeline."
    )
    parser.add_argument("--questions", type=int, default=3, help="questions to answer (default 3)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="questions answered at once (default 1)"
    )
    parser.add_argument("--out", type=Path, default=Path("callbacks-out"), help="output directory")
    args = parser.parse_args(argv)
    if args.questions < 1 or args.concurrency < 1:
        parser.error("--questions and --concurrency must be at least 1")
    run_demo(questions=args.questions, concurrency=args.concurrency, out_dir=args.out)
    return 0
