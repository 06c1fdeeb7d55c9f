"""The payload every case carries: a realistic LLM call (a ~200-character prompt, a model name,
and a short completion), shared so that every framework handles the same data."""

from __future__ import annotations

PROMPT = (
    "Context information is below.\n---------------------\n"
    "The Eiffel Tower is 330 metres tall and was completed in 1889.\n"
    "---------------------\nGiven the context information, answer the query.\n"
    "Query: How tall is the Eiffel Tower?\nAnswer:"
)
MODEL = "gpt-4o-mini"
COMPLETION = "The Eiffel Tower is 330 metres tall."
QUESTION = "How tall is the Eiffel Tower?"
