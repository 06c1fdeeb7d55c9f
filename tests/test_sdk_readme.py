"""The README's offline OpenAI and Anthropic examples run, in a fresh interpreter, and print
what the (stand-in) API sent."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example(name: str) -> str:
    match = re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", README.read_text(), re.DOTALL)
    assert match, f"the README's {name} example is missing"
    return match.group(1)


def _run(name: str, tmp_path: Path) -> list[str]:
    script = tmp_path / name
    script.write_text(_example(name))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"PATH": "", "CALLBACKS_PLUGINS": "[]", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("name", ["openai_offline.py", "anthropic_offline.py"])
def test_readme_sdk_examples_run_offline(name, tmp_path):
    lines = _run(name, tmp_path)
    if name == "openai_offline.py":
        assert lines == ["Paris", "tokens: 13"]
    else:
        assert lines[0] == "Hello!"
        assert lines[1] == (
            "TokenUsage(prompt=42, completion=2, total=44, source='anthropic', cache_read=30, "
            "cache_write=None, reasoning=None)"
        )
        assert lines[2] == "exhausted True"
