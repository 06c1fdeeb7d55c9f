"""A LangChain agent run reaches a loopback OTLP collector end to end: the spans received have
LangChain's run tree, OpenInference span kinds, and the messages, tool calls, documents and
usage LangChain itself reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")

from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from oi_helpers import OTLPReceiver

from callbacks import CallbackManager
from callbacks.integrations.langchain import CallbacksHandler
from callbacks_openinference import OpenInferencePlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from langchain_models import (
    ScriptedChatModel,
    add,
    build_retriever,
    expected_type,
    multiply,
    rag_chain,
    walk,
)

# OpenInference's span kinds for the event types the bridge emits.
KINDS = {
    "llm": "LLM",
    "retrieve": "RETRIEVER",
    "function_call": "TOOL",
    "agent_step": "AGENT",
    "templating": "CHAIN",
    "chain": "CHAIN",
}


def _attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


def _export(receiver: OTLPReceiver, run: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Run ``run(config)`` with the bridge exporting over OTLP; the spans received, LangChain's
    root runs and usage."""
    cm = CallbackManager(
        plugins=[OpenInferencePlugin()],
        config={"openinference": {"exporter": "otlp", "endpoint": receiver.url}},
    )
    runs = RunCollectorCallbackHandler()
    try:
        with get_usage_metadata_callback() as usage:
            run({"callbacks": [CallbacksHandler(cm), runs]})
        assert cm.flush(timeout=10.0)
        count = sum(1 for _ in walk(runs.traced_runs))
        assert receiver.wait_for_spans(count, timeout=10.0)
    finally:
        cm.shutdown(timeout=5.0)
    return receiver.spans(), runs.traced_runs, usage.usage_metadata


def _same_tree(spans: list[Any], roots: list[Any]) -> dict[str, Any]:
    """Spans and runs pair up one to one, parent for parent and kind for kind; returns
    ``{run id: span}``."""
    lc_runs = list(walk(roots))
    # A trace with one top-level event (the root run) has that event's span as its root.
    assert len(spans) == len(lc_runs)
    # Spans are matched to runs by start order within each parent, as both sides start them.
    by_parent: dict[bytes, list[Any]] = {}
    for span in sorted(spans, key=lambda s: s.start_time_unix_nano):
        by_parent.setdefault(span.parent_span_id, []).append(span)
    matched: dict[str, Any] = {}

    def pair(run: Any, span: Any) -> None:
        matched[str(run.id)] = span
        assert _attrs(span)["openinference.span.kind"] == KINDS[expected_type(run).value]
        children = sorted(run.child_runs, key=lambda r: r.start_time)
        child_spans = by_parent.get(span.span_id, [])
        assert len(child_spans) == len(children), run.name
        for child, child_span in zip(children, child_spans, strict=True):
            pair(child, child_span)

    (root_span,) = by_parent[b""]
    (root,) = roots
    pair(root, root_span)
    return matched


def test_langgraph_agent_run_reaches_an_otlp_collector(receiver: OTLPReceiver) -> None:
    from langgraph.prebuilt import create_react_agent

    model = ScriptedChatModel(tool_args={"add": {"a": 2, "b": 3}, "multiply": {"a": 4, "b": 5}})
    with pytest.warns(Warning):
        agent = create_react_agent(model, [add, multiply])
    spans, roots, usage = _export(
        receiver, lambda config: agent.invoke({"messages": [("user", "2+3, 4*5?")]}, config)
    )
    matched = _same_tree(spans, roots)
    runs = {str(r.id): r for r in walk(roots)}
    llm_runs = [r for r in runs.values() if r.run_type == "llm"]
    assert len(llm_runs) == 2
    first = _attrs(matched[str(llm_runs[0].id)])
    calls = llm_runs[0].outputs["generations"][0][0]["message"]["kwargs"]["tool_calls"]
    for i, call in enumerate(calls):
        prefix = f"llm.output_messages.0.message.tool_calls.{i}.tool_call."
        assert first[prefix + "function.name"] == call["name"]
        assert first[prefix + "id"] == call["id"]
    assert first["llm.input_messages.0.message.role"] == "user"
    last = _attrs(matched[str(llm_runs[1].id)])
    assert last["llm.output_messages.0.message.content"] == "Results: 5, 20"
    assert last["llm.output_messages.0.message.role"] == "assistant"
    ((model_name, figures),) = usage.items()
    totals = [
        sum(_attrs(matched[str(r.id)])[f"llm.token_count.{k}"] for r in llm_runs)
        for k in ("prompt", "completion", "total")
    ]
    assert totals == [figures["input_tokens"], figures["output_tokens"], figures["total_tokens"]]
    assert {_attrs(matched[str(r.id)])["llm.model_name"] for r in llm_runs} == {model_name}
    tools = {
        _attrs(matched[str(r.id)])["tool.name"]: r for r in runs.values() if r.run_type == "tool"
    }
    assert set(tools) == {"add", "multiply"}


def test_langchain_rag_run_exports_retrieved_documents(receiver: OTLPReceiver) -> None:
    chain = rag_chain(build_retriever(), ScriptedChatModel())
    spans, roots, _ = _export(
        receiver, lambda config: chain.invoke("What is the capital of France?", config)
    )
    matched = _same_tree(spans, roots)
    (retriever,) = [r for r in walk(roots) if r.run_type == "retriever"]
    attrs = _attrs(matched[str(retriever.id)])
    for i, doc in enumerate(retriever.outputs["documents"]):
        assert attrs[f"retrieval.documents.{i}.document.content"] == doc.page_content
        assert attrs[f"retrieval.documents.{i}.document.id"] == doc.id
    assert attrs["input.value"] == "What is the capital of France?"
