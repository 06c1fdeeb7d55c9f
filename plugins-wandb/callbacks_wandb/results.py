"""Turn event payloads into the ``inputs`` and ``outputs`` dicts of a W&B span.

Like LlamaIndex's ``WandbCallbackHandler``, bulky values are summarised rather than logged:
documents, chunks and nodes are counted, embedding vectors are reduced to their count and
dimension. In ``summary`` mode texts are clipped too; in ``full`` mode they are logged whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from callbacks import EventPayload, payloads
from callbacks.events import INPUT_KEYS

__all__ = ["PayloadMode", "SUMMARY_CHARS", "SUMMARY_ITEMS", "clip", "split_payloads", "summarize"]

PayloadMode = Literal["full", "summary"]

SUMMARY_CHARS = 1000
"""Longest text kept in ``summary`` mode."""
SUMMARY_ITEMS = 5
"""How many nodes or chunks are shown (clipped) in ``summary`` mode, besides their count."""

# Inputs an event's end may repeat; documents and chunks at the end are what it made instead.
_REPEATABLE_INPUTS = INPUT_KEYS - {EventPayload.DOCUMENTS.value, EventPayload.CHUNKS.value}
# Carried elsewhere on the span: usage as token attributes, the exception as the status message.
_NOT_RESULTS = frozenset({EventPayload.USAGE.value, EventPayload.EXCEPTION.value})
_TEXT_KEYS = frozenset(
    k.value
    for k in (
        EventPayload.PROMPT,
        EventPayload.COMPLETION,
        EventPayload.RESPONSE,
        EventPayload.QUERY_STR,
        EventPayload.SUB_QUESTION,
        EventPayload.TEMPLATE,
        EventPayload.SYSTEM_PROMPT,
        EventPayload.QUERY_WRAPPER_PROMPT,
        EventPayload.FUNCTION_OUTPUT,
    )
)


def clip(text: str | None, mode: PayloadMode) -> str | None:
    """``text`` whole in ``full`` mode, else cut to :data:`SUMMARY_CHARS` (whitespace kept)."""
    if text is None or mode == "full" or len(text) <= SUMMARY_CHARS:
        return text
    return text[: SUMMARY_CHARS - 1] + "…"


def summarize(value: Any, limit: int) -> str:
    """``payloads.summarize(value, limit)``, reading only the start of a long text: its words
    up to about ``2 * limit`` characters decide the clipped summary (node and chunk texts run
    to thousands of characters, and summarizing split every one of them whole)."""
    if type(value) is str and len(value) > 2 * limit:
        words = value[: 2 * limit].split()
        # The last word may go on past the cut; the ones before it are whole.
        shown = " ".join(words[:-1])
        if len(shown) >= limit:
            return shown[: limit - 1] + "…"
    return payloads.summarize(value, limit)


def split_payloads(
    start: Mapping[str, Any] | None, end: Mapping[str, Any] | None, mode: PayloadMode
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The span's ``(inputs, outputs)``: the start payload is inputs, the end payload outputs,
    except that an input key the start did not carry (LlamaIndex gives chat ``messages`` at the
    end) is an input, and an input the end repeats unchanged (LlamaIndex repeats an LLM call's
    ``formatted_prompt`` at the end) is not an output. A chunking event's ``chunks`` are its
    input text at the start and the chunks it made at the end, even when they are the same."""
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    start = start or {}
    for key, value in start.items():
        _render(inputs, str(key), value, mode)
    for key, value in (end or {}).items():
        key = str(key)
        if key in INPUT_KEYS:
            before = start.get(key)
            if before is None:
                _render(inputs, key, value, mode)
                continue
            if key in _REPEATABLE_INPUTS and _same(before, value):
                continue
        _render(outputs, key, value, mode)
    return inputs, outputs


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or (type(a) is type(b) and bool(a == b))
    except Exception:
        return False


def _render(into: dict[str, Any], key: str, value: Any, mode: PayloadMode) -> None:
    if key in _NOT_RESULTS or value is None:
        return
    if key == EventPayload.EMBEDDINGS:
        into.update(_embeddings(value))
    elif key == EventPayload.NODES:
        into.update(_nodes(value, mode))
    elif key in (EventPayload.CHUNKS, EventPayload.DOCUMENTS):
        into.update(_texts(key, value, mode))
    elif key == EventPayload.MESSAGES:
        into[key] = [clip(f"{m.role}: {m.content}", mode) for m in payloads.messages_of(value)]
    elif key == EventPayload.TOOL:
        into[key] = _tool_name(value)
    elif key in _TEXT_KEYS:
        into[key] = clip(payloads.text_of(value), mode)
    elif mode == "full":
        into[key] = payloads.to_jsonable(value)
    else:
        into[key] = summarize(value, SUMMARY_CHARS)


def _embeddings(value: Any) -> dict[str, Any]:
    vectors = list(value) if isinstance(value, (list, tuple)) else [value]
    first = vectors[0] if vectors else None
    if isinstance(first, (int, float)):
        # A single vector rather than a list of them.
        vectors, first = [vectors], vectors
    dim = len(first) if isinstance(first, (list, tuple)) else None
    return {"num_embeddings": len(vectors), "embedding_dim": dim}


def _nodes(value: Any, mode: PayloadMode) -> dict[str, Any]:
    nodes = payloads.nodes_of(value)
    shown = nodes if mode == "full" else nodes[:SUMMARY_ITEMS]
    return {
        "num_nodes": len(nodes),
        "nodes": [
            {
                "id": n.id,
                "score": n.score,
                "text": n.text if mode == "full" else summarize(n.text, 200),
            }
            for n in shown
        ],
    }


def _texts(key: str, value: Any, mode: PayloadMode) -> dict[str, Any]:
    if isinstance(value, str):
        texts = [value]
    elif type(value) is list and all(type(text) is str for text in value):
        texts = list(value)  # what nodes_of would give, without a node view per text
    else:
        texts = [n.text for n in payloads.nodes_of(value)]
    out: dict[str, Any] = {f"num_{key}": len(texts)}
    if mode == "full":
        out[key] = texts
    else:
        out[key] = [summarize(t, 200) for t in texts[:SUMMARY_ITEMS]]
    return out


def _tool_name(tool: Any) -> str:
    # LlamaIndex passes ToolMetadata (``.name``); others pass a dict or the bare name.
    name = tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None)
    return str(name) if name is not None else payloads.summarize(tool, 200)
