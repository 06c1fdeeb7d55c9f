"""Run a Python child process for a fault test, and read what it reports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PYTHON = sys.executable


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: no user configuration, no plugin selection, quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def write_script(tmp_path: Path, code: str, name: str = "child.py") -> Path:
    """Write ``code`` (dedented) to a script in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def run_script(
    script: Path, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` to completion and capture its output."""
    return subprocess.run(
        [PYTHON, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or child_env(),
        cwd=script.parent,
    )


def start_script(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``script`` with a pipe on stdout (it reports readiness there)."""
    return subprocess.Popen(
        [PYTHON, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or child_env(),
        cwd=script.parent,
    )


def count_lines(path: Path) -> int:
    """Lines in a file written by a child (0 if it does not exist)."""
    if not path.exists():
        return 0
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)
