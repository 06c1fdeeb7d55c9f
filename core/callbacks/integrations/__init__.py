"""Bridges from LLM frameworks into ``callbacks``.

Each bridge lives in its own module and is the only place that imports its framework, so
importing :mod:`callbacks` never imports one. Install the framework with the matching extra, for
example ``pip install "callbacks[llama-index]"`` for :mod:`callbacks.integrations.llama_index`
and ``pip install "callbacks-core[langchain]"`` for :mod:`callbacks.integrations.langchain`.
"""
