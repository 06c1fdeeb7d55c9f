"""Importing callbacks stays cheap: no heavy library is imported until it is needed."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "pydantic_settings",
    "pydantic",
    "tiktoken",
    "wandb",
    "aim",
    "opentelemetry",
    "rich",
    "llama_index",
    "importlib.metadata",
)


def test_import_callbacks_imports_no_heavy_library() -> None:
    code = (
        "import sys, callbacks\n"
        "from callbacks import traced, EventType\n"
        "@traced(EventType.LLM)\n"
        "def complete(prompt): return prompt\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
