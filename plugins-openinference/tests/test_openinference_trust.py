"""Issue 17's OpenInference points, read back from OTLP requests captured on a loopback
receiver: nothing lost silently in a burst, one huge payload never costs other spans, full tool
definitions, the values the official instrumentor fills, token counts for every call, failures up
the chain, and no collector never blocks."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from oi_helpers import OTLPReceiver, plugin_of

from callbacks import CallbackManager, EventPayload, EventType
from callbacks.encodings import load_encoding
from callbacks_openinference import OpenInferencePlugin

P = EventPayload


def _manager(endpoint: str, **config: Any) -> CallbackManager:
    return CallbackManager(
        plugins=[OpenInferencePlugin()],
        config={"openinference": {"exporter": "otlp", "endpoint": endpoint, **config}},
    )


def _attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = tuple(
                getattr(v, v.WhichOneof("value")) for v in kv.value.array_value.values
            )
        else:
            out[kv.key] = getattr(kv.value, kind)
    return out


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_burst_through_a_small_export_queue_loses_nothing(receiver: OTLPReceiver) -> None:
    traces, calls = 200, 10
    # OpenTelemetry's BatchSpanProcessor with this queue drops most of the burst silently.
    cm = _manager(receiver.url, max_queue_size=32, max_export_batch_size=32)
    try:
        for t in range(traces):
            with cm.as_trace(f"burst-{t}"):
                for i in range(calls):
                    with cm.event(EventType.LLM, {P.PROMPT: f"p{t}.{i}"}) as llm:
                        llm.on_end({P.COMPLETION: "ok", P.USAGE: {"prompt_tokens": 1}})
        assert cm.flush(timeout=60)
        expected = traces * (calls + 1)  # each trace: its calls under a trace span
        assert receiver.wait_for_spans(expected, timeout=30)
        stats = plugin_of(cm).callbacks_stats()
        host = cm.stats()["openinference"]
    finally:
        cm.shutdown(timeout=5)
    spans = receiver.spans()
    assert len(spans) == expected
    assert len({s.trace_id for s in spans}) == traces
    assert (stats["spans_lost"], stats["spans_dropped"], host["dropped"]) == (0, 0, 0)
    assert stats["spans_exported"] == expected


def test_every_lost_span_is_counted_flush_says_so_and_shutdown_warns(
    caplog: Any,
) -> None:
    listener = socket.socket()  # accepts connections into its backlog, never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces"
    cm = _manager(endpoint, max_queue_size=4, max_export_batch_size=4, export_timeout_millis=200)
    plugin = plugin_of(cm)
    try:
        for t in range(10):
            with cm.as_trace(f"t{t}"), cm.event(EventType.LLM, {P.PROMPT: "p"}) as llm:
                llm.on_end({P.COMPLETION: "c"})
        assert cm.flush(timeout=10) is False  # the plugin's flush reports the loss ...
        assert plugin.last_flush_ok is False
        assert cm.stats()["openinference"]["queue_depth"] == 0  # ... not a timeout
        with caplog.at_level(logging.WARNING):
            cm.shutdown(timeout=1.0)
    finally:
        listener.close()
    stats = plugin.callbacks_stats()
    assert stats["spans_created"] == 10
    # Every span is accounted for: lost (dropped or failed) or not exported by the deadline.
    assert stats["spans_lost"] + stats["spans_unexported"] == 10
    assert stats["spans_lost"] == stats["spans_dropped"] + stats["export_errors"] > 0
    assert f"{stats['spans_lost'] + stats['spans_unexported']} span(s) lost" in caplog.text


def test_one_huge_span_never_takes_other_spans_with_it() -> None:
    receiver = OTLPReceiver(max_body=5_000_000)  # a collector's request size limit
    huge = "x" * 3_000_000  # twice in its span (input.value, message content): over the limit
    cm = _manager(
        receiver.url,
        max_attribute_length=None,
        max_request_bytes=4_000_000,
        schedule_delay_millis=60_000,  # all eleven spans go in one batch, at the flush
    )
    try:
        for t in range(10):
            with cm.as_trace(f"small-{t}"), cm.event(EventType.LLM, {P.PROMPT: "p"}) as llm:
                llm.on_end({P.COMPLETION: "c"})
            if t == 5:
                with cm.as_trace("huge"), cm.event(EventType.LLM, {P.PROMPT: huge}) as llm:
                    llm.on_end({P.COMPLETION: "c"})
        cm.flush(timeout=60)
        stats = plugin_of(cm).callbacks_stats()
    finally:
        cm.shutdown(timeout=5)
        receiver.close()
    assert len(receiver.spans()) == 10  # every small trace's span arrived
    assert receiver.rejected == 1
    assert (stats["spans_exported"], stats["export_errors"]) == (10, 1)


def test_attribute_length_is_limited_by_default(receiver: OTLPReceiver) -> None:
    cm = _manager(receiver.url)
    try:
        with cm.as_trace("big"), cm.event(EventType.LLM, {P.PROMPT: "y" * 1_000_000}) as llm:
            llm.on_end({P.COMPLETION: "c"})
        cm.flush(timeout=30)
    finally:
        cm.shutdown(timeout=5)
    (span,) = receiver.spans()
    assert len(_attrs(span)["input.value"]) == 100_000


def test_tool_definitions_carry_name_description_and_parameters(receiver: OTLPReceiver) -> None:
    # LlamaIndex's own rendering of a tool is the oracle (installed in the full suite).
    FunctionTool = pytest.importorskip("llama_index.core.tools").FunctionTool

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    tool = FunctionTool.from_defaults(add)
    anthropic = {
        "name": "lookup",
        "description": "Find a word.",
        "input_schema": {"type": "object"},
    }
    cm = _manager(receiver.url)
    try:
        with cm.as_trace("tools"):
            with cm.event(EventType.LLM, {P.PROMPT: "2+2?", P.TOOLS: [tool, anthropic]}) as llm:
                llm.on_end({P.COMPLETION: "4"})
        cm.flush(timeout=30)
    finally:
        cm.shutdown(timeout=5)
    (span,) = receiver.spans()
    attrs = _attrs(span)
    # LlamaIndex's own OpenAI rendering of the tool is the oracle.
    assert json.loads(attrs["llm.tools.0.tool.json_schema"]) == tool.metadata.to_openai_tool()
    assert json.loads(attrs["llm.tools.1.tool.json_schema"]) == {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Find a word.",
            "parameters": {"type": "object"},
        },
    }


def test_values_the_official_instrumentor_fills_are_filled(receiver: OTLPReceiver) -> None:
    nodes = [{"id": "n1", "text": "Paris is in France.", "score": 0.9}]
    tool_call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
    cm = _manager(receiver.url)
    try:
        with cm.as_trace("rag"), cm.event(EventType.QUERY, {P.QUERY_STR: "Where?"}) as query:
            with cm.event(EventType.EMBEDDING, {P.CHUNKS: ["Where?"]}) as ev:
                ev.on_end({P.EMBEDDINGS: [[0.1, 0.2]]})
            with cm.event(EventType.RETRIEVE, {P.QUERY_STR: "Where?"}) as ev:
                ev.on_end({P.NODES: nodes})
            with cm.event(EventType.RERANKING, {P.QUERY_STR: "Where?", P.NODES: nodes}) as ev:
                ev.on_end({P.NODES: nodes})
            with cm.event(
                EventType.TEMPLATING, {P.TEMPLATE: "Q: {q}", P.TEMPLATE_VARS: {"q": "Where?"}}
            ) as ev:
                ev.on_end({P.PROMPT: "Q: Where?"})
            with cm.event(EventType.LLM, {P.PROMPT: "Q: Where?", P.MODEL_NAME: "gpt-4o"}) as ev:
                ev.on_end(
                    {
                        P.RESPONSE: {"message": {"role": "assistant", "tool_calls": [tool_call]}},
                        P.USAGE: {"prompt_tokens": 5, "completion_tokens": 3},
                    }
                )
            with cm.event(EventType.LLM, {P.PROMPT: "hi"}) as ev:
                ev.on_end({P.COMPLETION: "hello", P.USAGE: {"input_tokens": 1, "output_tokens": 1}})
            query.on_end({P.RESPONSE: "Paris."})
        with cm.as_trace("alone"), cm.event(EventType.RETRIEVE, {P.QUERY_STR: "x"}) as ev:
            ev.on_end({P.NODES: nodes})
        cm.flush(timeout=30)
    finally:
        cm.shutdown(timeout=5)
    spans = receiver.spans()
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(_attrs(span))
    assert by_name["embedding"][0]["input.value"] == "Where?"
    assert by_name["reranking"][0]["input.value"] == "Where?"
    assert json.loads(by_name["reranking"][0]["output.value"]) == ["Paris is in France."]
    for retrieve in by_name["retrieve"]:
        assert json.loads(retrieve["output.value"]) == ["Paris is in France."]
    assert by_name["templating"][0]["output.value"] == "Q: Where?"
    tools_only, plain = by_name["llm"]
    assert json.loads(tools_only["output.value"]) == {"tool_calls": [tool_call]}
    assert (tools_only["llm.provider"], tools_only["llm.system"]) == ("openai", "openai")
    assert (plain["llm.provider"], plain["llm.system"]) == ("anthropic", "anthropic")
    # The trace whose one event is its root gets no duplicated root span.
    alone = [s for s in spans if s.name in ("alone", "retrieve") and not s.parent_span_id]
    assert [s.name for s in alone] == ["retrieve"]
    assert "alone" not in by_name


def test_every_llm_call_has_token_counts_marked_with_their_source(
    receiver: OTLPReceiver,
) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    cm = _manager(receiver.url)
    try:
        with cm.as_trace("t"):
            with cm.event(EventType.LLM, {P.MESSAGES: messages, P.MODEL_NAME: "gpt-4o"}) as ev:
                ev.on_end({P.RESPONSE: "Paris."})
            with cm.event(EventType.LLM, {P.PROMPT: "hi"}) as ev:
                ev.on_end({P.COMPLETION: "hello", P.USAGE: {"prompt_tokens": 7}})
        cm.flush(timeout=30)
    finally:
        cm.shutdown(timeout=5)
    estimated, reported = (
        _attrs(s)
        for s in sorted(receiver.spans(), key=lambda s: s.start_time_unix_nano)
        if s.name == "llm"
    )
    o200k = load_encoding("o200k_base")  # gpt-4o's encoding, as tiktoken maps it
    prompt = 3 + 3 + len(o200k.encode("user")) + len(o200k.encode(messages[0]["content"]))
    assert (
        estimated["llm.token_count.prompt"],
        estimated["llm.token_count.completion"],
        estimated["llm.token_count.source"],
    ) == (prompt, len(o200k.encode("Paris.")), "estimate")
    assert (reported["llm.token_count.prompt"], reported["llm.token_count.source"]) == (
        7,
        "provider",
    )


def test_failure_shows_at_every_level_of_the_chain(receiver: OTLPReceiver) -> None:
    cm = _manager(receiver.url)
    try:
        try:
            with cm.as_trace("chain"), cm.event(EventType.QUERY, {P.QUERY_STR: "q"}):
                with cm.event(EventType.SYNTHESIZE), cm.event(EventType.LLM, {P.PROMPT: "p"}):
                    raise TimeoutError("provider timed out")
        except TimeoutError:
            pass
        cm.flush(timeout=30)
    finally:
        cm.shutdown(timeout=5)
    spans = {s.name: s for s in receiver.spans()}
    assert set(spans) == {"query", "synthesize", "llm"}
    for span in spans.values():
        assert span.status.code == 2  # STATUS_CODE_ERROR
        assert span.status.message == "TimeoutError: provider timed out"
        assert [e.name for e in span.events] == ["exception"]


_APP = """
import sys, time
from callbacks import CallbackManager, EventPayload, EventType
from callbacks_openinference import OpenInferencePlugin

cm = CallbackManager(plugins=[OpenInferencePlugin()], config={"openinference": %s})
for t in range(20):
    with cm.as_trace("q"), cm.event(EventType.LLM, {EventPayload.PROMPT: "p"}) as llm:
        llm.on_end({EventPayload.COMPLETION: "c"})
started = time.monotonic()
flushed = cm.flush(timeout=5.0)
print(time.monotonic() - started, flushed)
print(time.time(), flush=True)
"""


def _exit_delay(tmp_path: Path, config: dict[str, Any]) -> tuple[float, float, str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(_APP % json.dumps(config)))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.communicate(timeout=60)
    ended = time.time()
    assert proc.returncode == 0, err
    flush_line, done_line = out.strip().splitlines()
    return float(flush_line.split()[0]), ended - float(done_line), err


def test_no_collector_adds_no_exit_delay_and_prints_nothing_per_span(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}/v1/traces"
    flush_s, delay, err = _exit_delay(tmp_path, {"exporter": "otlp", "endpoint": endpoint})
    _, baseline, _ = _exit_delay(tmp_path, {"exporter": "none"})
    assert flush_s < 2.0  # within its timeout: never blocked by the exporter's retries
    assert delay - baseline <= 0.5
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 2, err  # one warning for the failed export, one at shutdown at most
    assert "could not be exported" in err
