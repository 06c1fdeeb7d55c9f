"""The tools the demo's agent can call; one always fails, as a network call offline would."""

from __future__ import annotations

from typing import Any

__all__ = ["TOOLS", "ToolError"]


class ToolError(RuntimeError):
    """A tool failed; the agent reports it to the LLM and carries on."""


def _word_count(text: str) -> str:
    return f"{len(text.split())} words"


def _fetch_source(url: str) -> str:
    raise ToolError(f"cannot fetch {url}: the demo runs offline")


TOOLS: dict[str, tuple[Any, dict[str, Any]]] = {
    "word_count": (
        _word_count,
        {
            "type": "function",
            "function": {
                "name": "word_count",
                "description": "Count the words of a text.",
                "parameters": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            },
        },
    ),
    "fetch_source": (
        _fetch_source,
        {
            "type": "function",
            "function": {
                "name": "fetch_source",
                "description": "Fetch a web page that supports the answer.",
                "parameters": {
                    "type": "object",
                    "properties": {"url": {"type": "string"}},
                    "required": ["url"],
                },
            },
        },
    ),
}
"""The agent's tools by name: ``(function, OpenAI-style tool spec)``."""
