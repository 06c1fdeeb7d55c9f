"""Append whole JSON lines to a file, one write per line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["LineWriter"]


class LineWriter:
    """An append-only JSONL file. Each line goes out in a single unbuffered ``write`` on a file
    opened in append mode, so concurrent writers and crashes never leave half a line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None
        self.lines_written = 0

    def write(self, line: str) -> None:
        """Append one line (it must end with a newline)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)
        data = line.encode("utf-8")
        written = self._file.write(data) or 0
        if written < len(data):  # a regular file only does this when the disk is full
            self._file.write(data[written:])
        self._file.flush()
        self.lines_written += 1

    def close(self) -> None:
        """Close the file (a later write reopens it)."""
        if self._file is not None:
            self._file.close()
            self._file = None
