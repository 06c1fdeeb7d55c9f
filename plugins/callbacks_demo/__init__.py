"""The built-in demo plugin: it adds ``callbacks demo``, an offline retrieval-augmented QA
pipeline that exercises every event type.

The pipeline indexes the Markdown files in :mod:`callbacks_demo.docs` (node parsing, chunking,
embedding in a context-propagating thread pool), then answers questions concurrently with asyncio:
sub-questions, retrieval, reranking, templating, LLM calls, synthesis, a tree summary and an agent
step whose tools are called (one of them fails and the failure is handled and reported as an
``exception`` event). The only stand-ins are a deterministic LLM and a hashed bag-of-words
embedding, in place of the user's own models; everything else is the public ``callbacks`` API.
"""

from .cli import DemoPlugin, add_arguments, main
from .report import DemoReport
from .run import run_demo

__all__ = ["DemoPlugin", "DemoReport", "add_arguments", "main", "run_demo"]
