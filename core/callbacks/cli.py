"""The ``callbacks`` command."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``callbacks`` console script."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="callbacks")
    parser.add_argument("--version", action="version", version=f"callbacks {__version__}")
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
