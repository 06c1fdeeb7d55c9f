"""The demo's data: the sample documents shipped in :mod:`callbacks_demo.docs` and the questions
asked about them."""

from __future__ import annotations

from importlib import resources

__all__ = ["QUESTIONS", "load_documents"]

QUESTIONS: tuple[str, ...] = (
    "How do honeybees tell each other where flowers are, and how do sailors tell one "
    "lighthouse from another?",
    "What makes black tea different from green tea, and how do scientists forecast eruptions?",
    "Who invented the Fresnel lens, and how long does a worker bee live?",
    "What is a shield volcano, and what is oolong tea?",
)
"""The demo's questions, asked in turn (``questions`` larger than this cycles through them)."""


def load_documents() -> dict[str, str]:
    """The sample documents shipped in :mod:`callbacks_demo.docs`, ``{file name: text}``."""
    folder = resources.files("callbacks_demo.docs")
    return {
        item.name: item.read_text(encoding="utf-8")
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".md")
    }
