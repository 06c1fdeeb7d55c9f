"""The README's "Write a plugin" example is real: it fits in 20 lines and it works."""

from __future__ import annotations

import re
import types
from pathlib import Path

from callbacks import CallbackManager, EventType

README = Path(__file__).resolve().parents[1] / "README.md"


def _example_source() -> str:
    text = README.read_text()
    match = re.search(r"```python\n(# callbacks_slowcalls\.py\n.*?)```", text, re.DOTALL)
    assert match, "the README's plugin example is missing"
    return match.group(1)


def test_readme_plugin_example_is_under_20_lines_and_works(monkeypatch) -> None:
    source = _example_source()
    code_lines = [line for line in source.splitlines() if line.strip()]
    assert len(code_lines) <= 20
    module = types.ModuleType("callbacks_slowcalls")
    exec(compile(source, "callbacks_slowcalls.py", "exec"), module.__dict__)

    monkeypatch.setenv("CALLBACKS_SLOWCALLS__THRESHOLD_MS", "0")
    plugin = module.SlowCalls()
    cm = CallbackManager(plugins=[plugin])
    try:
        assert cm.name_of(plugin) == "slowcalls"
        with cm.event(EventType.LLM) as first:
            pass
        with cm.event(EventType.RETRIEVE):
            pass
        assert plugin.slow == [first.id]
        assert cm.delivery_mode("slowcalls") == "inline"
    finally:
        cm.shutdown()
