"""Workflow agents through the bridge, against ``openinference-instrumentation-llama-index``.

The instrumentor records the same agent run through LlamaIndex's instrumentation API into
OpenTelemetry spans (in memory); the host must see the same LLM calls and the same tool calls
(names, arguments, outputs), in one trace, with nothing abandoned.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("openinference.instrumentation.llama_index")

from llama_index.core import Settings
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager
from llama_index.core.callbacks import LlamaDebugHandler
from llama_index.core.tools import FunctionTool
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from scripted_llm import ScriptedLLM

from callbacks import ROOT, CallbackManager, EventType, payloads
from callbacks.integrations import llama_index as bridge
from callbacks.testing import RecordingPlugin

QUESTION = "What is (2 + 3) * 4?"
PLAN = [("add", {"a": 2, "b": 3}), ("multiply", {"a": 5, "b": 4})]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def divide(a: int, b: int) -> float:
    """Divide two integers."""
    return a / b


TOOLS = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)]


@pytest.fixture(scope="module")
def otel() -> Iterator[InMemorySpanExporter]:
    """openinference-instrumentation-llama-index recording into memory for this module."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield exporter
    instrumentor.uninstrument()
    provider.shutdown()


@pytest.fixture
def agent_run(otel: InMemorySpanExporter) -> Iterator[SimpleNamespace]:
    saved = Settings._callback_manager
    debug = LlamaDebugHandler(print_trace_on_end=False)
    Settings.callback_manager = LlamaCallbackManager([debug])
    recorder = RecordingPlugin()
    manager = CallbackManager([recorder])
    bridge.install(manager)
    otel.clear()
    yield SimpleNamespace(manager=manager, recorder=recorder, otel=otel, debug=debug)
    bridge.uninstall(manager)
    manager.shutdown(timeout=5.0)
    Settings._callback_manager = saved


def _kind(span: ReadableSpan) -> str | None:
    return (span.attributes or {}).get("openinference.span.kind")  # type: ignore[return-value]


def oi_llm_calls(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """The provider calls the instrumentor saw: LLM spans with a reported output (LlamaIndex's
    ``_prepare_chat_with_tools`` is an LLM span too, but calls nothing)."""
    calls = []
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        attributes = dict(span.attributes or {})
        if _kind(span) != "LLM" or "output.value" not in attributes:
            continue
        if span.name.endswith("._prepare_chat_with_tools"):
            continue
        output = attributes["output.value"]
        prefix = "assistant: "
        text = attributes.get(
            "llm.output_messages.0.message.content",
            output[len(prefix) :] if isinstance(output, str) and output.startswith(prefix) else "",
        )
        tools = []
        i = 0
        while f"llm.output_messages.0.message.tool_calls.{i}.tool_call.function.name" in attributes:
            base = f"llm.output_messages.0.message.tool_calls.{i}.tool_call.function"
            tools.append(
                (attributes[f"{base}.name"], json.loads(str(attributes[f"{base}.arguments"])))
            )
            i += 1
        calls.append({"text": text, "tool_calls": tools})
    return calls


def oi_tool_calls(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    calls = []
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        if _kind(span) != "TOOL":
            continue
        attributes = dict(span.attributes or {})
        failed = span.status.status_code.name == "ERROR"
        output = {} if failed else json.loads(str(attributes["output.value"]))
        calls.append(
            {
                "name": attributes["tool.name"],
                "description": attributes["tool.description"],
                "arguments": json.loads(str(attributes["input.value"]))["kwargs"],
                "output": output["blocks"][0]["text"] if output else None,
                "error": failed or output.get("is_error", False),
            }
        )
    return calls


def host_llm_calls(recorder: RecordingPlugin) -> list[dict[str, Any]]:
    calls = []
    for end in recorder.ends(EventType.LLM):
        tools = [
            (call["function"]["name"], json.loads(call["function"]["arguments"]))
            for call in payloads.tool_calls_of(end.payload)
        ]
        calls.append({"text": payloads.completion_of(end.payload) or "", "tool_calls": tools})
    return calls


def host_tool_calls(recorder: RecordingPlugin) -> list[dict[str, Any]]:
    calls = []
    for end in recorder.ends(EventType.FUNCTION_CALL):
        tool = end.full_payload["tool"]
        calls.append(
            {
                "name": tool["name"],
                "description": tool["description"],
                "arguments": end.full_payload["function_call"],
                "output": (
                    str(end.payload["function_call_response"]) if end.exception is None else None
                ),
                "error": end.exception is not None,
            }
        )
    return calls


def assert_same_run_as_openinference(
    run: SimpleNamespace, llm: ScriptedLLM, *, legacy: bool = True
) -> None:
    assert run.manager.flush(timeout=10.0)
    spans = list(run.otel.get_finished_spans())
    assert spans, "the instrumentor recorded nothing"
    # The same provider calls, with the same text and tool calls...
    oi_llm = oi_llm_calls(spans)
    assert len(oi_llm) == llm.calls
    assert host_llm_calls(run.recorder) == oi_llm
    # ...the same tool calls...
    assert host_tool_calls(run.recorder) == oi_tool_calls(spans)
    # ...in one trace (as the instrumentor's), with nothing abandoned and no end lost.
    assert len({span.context.trace_id for span in spans}) == 1
    events = run.recorder.events
    assert len({e.trace_id for e in events}) == 1
    (trace,) = run.recorder.traces
    starts = {e.id: e for e in run.recorder.starts()}
    assert set(starts) == {e.id for e in run.recorder.ends()}
    (root,) = trace.trace_map[ROOT]
    assert starts[root].type is EventType.AGENT_STEP
    # Every LLM call LlamaIndex's legacy handler saw is one host event, with that id (an LLM
    # whose own callback manager lacks the bridge is reported through the instrumentation API).
    legacy_llm = [p[0].id_ for p in run.debug.get_event_pairs() if p[0].event_type.value == "llm"]
    if legacy:
        assert [e.id for e in run.recorder.starts(EventType.LLM)] == legacy_llm
    else:
        assert legacy_llm == []
    # Nothing nests under an LLM call.
    assert not [e for e in starts.values() if starts.get(e.parent_id, e).type is EventType.LLM]
    stats = run.manager.host_stats()
    assert (stats["abandoned"], stats["unmatched_ends"], stats["pending"]) == (0, 0, 0)


@pytest.mark.parametrize("streaming", [True, False])
@pytest.mark.parametrize("own_callback_manager", [False, True])
def test_function_agent_run_matches_openinference(
    agent_run: SimpleNamespace, streaming: bool, own_callback_manager: bool
) -> None:
    llm = ScriptedLLM(plan=PLAN)
    own_debug = LlamaDebugHandler(print_trace_on_end=False)
    if own_callback_manager:  # an LLM whose callback manager the bridge is not on
        llm.callback_manager = LlamaCallbackManager([own_debug])
    agent = FunctionAgent(tools=TOOLS, llm=llm, streaming=streaming)

    async def main() -> Any:
        return await agent.run(QUESTION)

    result = asyncio.run(main())
    assert "20" in str(result)
    assert_same_run_as_openinference(agent_run, llm, legacy=not own_callback_manager)
    if own_callback_manager:  # LlamaIndex reported the calls, to a manager without the bridge
        assert len(own_debug.get_llm_inputs_outputs()) == llm.calls
    assert [c["name"] for c in host_tool_calls(agent_run.recorder)] == ["add", "multiply"]
    usage = [payloads.usage_of(e.payload) for e in agent_run.recorder.ends(EventType.LLM)]
    assert all(u is not None and u.source == "openai" for u in usage)
    (step,) = agent_run.recorder.ends(EventType.AGENT_STEP)
    assert step.full_payload["query_str"] == QUESTION
    assert "20" in payloads.text_of(step.payload["response"])


def test_react_agent_run_matches_openinference(agent_run: SimpleNamespace) -> None:
    llm = ScriptedLLM(plan=PLAN)
    agent = ReActAgent(tools=TOOLS, llm=llm)

    async def main() -> Any:
        return await agent.run(QUESTION)

    result = asyncio.run(main())
    assert "20" in str(result)
    assert_same_run_as_openinference(agent_run, llm)
    assert [c["name"] for c in host_tool_calls(agent_run.recorder)] == ["add", "multiply"]


def test_failing_tool_is_a_failed_function_call_and_the_agent_goes_on(
    agent_run: SimpleNamespace,
) -> None:
    llm = ScriptedLLM(plan=[("divide", {"a": 1, "b": 0})])
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(divide)], llm=llm)

    async def main() -> Any:
        return await agent.run("What is 1 / 0?")

    asyncio.run(main())
    assert_same_run_as_openinference(agent_run, llm)
    (call,) = agent_run.recorder.ends(EventType.FUNCTION_CALL)
    assert isinstance(call.exception, ZeroDivisionError)
    (step,) = agent_run.recorder.ends(EventType.AGENT_STEP)
    assert step.exception is None  # the agent handled it and answered


def test_agent_workflow_of_two_agents_is_one_trace(agent_run: SimpleNamespace) -> None:
    llm = ScriptedLLM(plan=PLAN)
    calculator = FunctionAgent(
        name="calculator", description="Does arithmetic.", tools=TOOLS, llm=llm
    )
    workflow = AgentWorkflow(agents=[calculator], root_agent="calculator")

    async def main() -> Any:
        return await workflow.run(user_msg=QUESTION)

    asyncio.run(main())
    assert_same_run_as_openinference(agent_run, llm)


def test_two_agent_runs_are_two_traces(agent_run: SimpleNamespace) -> None:
    llm = ScriptedLLM(plan=PLAN)
    agent = FunctionAgent(tools=TOOLS, llm=llm)

    async def main() -> None:
        await agent.run(QUESTION)
        await agent.run(QUESTION)

    asyncio.run(main())
    assert agent_run.manager.flush(timeout=10.0)
    traces = agent_run.recorder.traces
    assert len(traces) == 2
    for trace in traces:
        (root,) = trace.trace_map[ROOT]
        assert root in {e.id for e in agent_run.recorder.starts(EventType.AGENT_STEP)}
    assert agent_run.manager.host_stats()["abandoned"] == 0


def test_llm_rerank_is_a_reranking_event_with_the_nodes_openinference_saw(
    agent_run: SimpleNamespace,
) -> None:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.postprocessor import LLMRerank

    llm = ScriptedLLM(chat_model=False)
    documents = [Document(text=f"Topic {i} is about {i} things.") for i in range(4)]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))
    reranker = LLMRerank(llm=llm, top_n=2, choice_batch_size=4)
    engine = index.as_query_engine(llm=llm, similarity_top_k=4, node_postprocessors=[reranker])
    agent_run.otel.clear()
    agent_run.recorder.clear()
    response = engine.query("Which topic?")
    assert agent_run.manager.flush(timeout=10.0)

    # The instrumentor records LLMRerank as a span of its own (kind CHAIN): the nodes it
    # returned, with their ids and scores, are the host's RERANKING output.
    (span,) = [s for s in agent_run.otel.get_finished_spans() if s.name.startswith("LLMRerank.")]
    oi_out = re.findall(
        r"id_=([0-9a-f-]+)\), score=([0-9.]+)", str((span.attributes or {})["output.value"])
    )
    (rerank,) = agent_run.recorder.ends(EventType.RERANKING)
    out = payloads.nodes_of(rerank.payload["nodes"])
    assert [(n.id, str(n.score)) for n in out] == oi_out
    assert [n.id for n in out] == [n.node.node_id for n in response.source_nodes]
    assert len(payloads.nodes_of(rerank.start.payload["nodes"])) == 4
    (query,) = agent_run.recorder.starts(EventType.QUERY)
    assert rerank.parent_id == query.id
    assert agent_run.manager.host_stats()["abandoned"] == 0


def test_a_reranker_reporting_rerank_events_gives_its_model_and_top_n(
    agent_run: SimpleNamespace,
) -> None:
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    dispatcher = get_dispatcher("tests.keyword_rerank")

    class KeywordRerank(BaseNodePostprocessor):
        """The user's own reranker, reporting like LlamaIndex's reranker integrations do."""

        top_n: int = 1

        def _postprocess_nodes(
            self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
        ) -> list[NodeWithScore]:
            query = query_bundle.query_str if query_bundle else ""
            dispatcher.event(
                ReRankStartEvent(query=query, nodes=nodes, top_n=self.top_n, model_name="kw-1")
            )
            ranked = sorted(nodes, key=lambda n: -n.node.get_content().count(query))
            dispatcher.event(ReRankEndEvent(nodes=ranked[: self.top_n]))
            return ranked[: self.top_n]

    nodes = [NodeWithScore(node=TextNode(text=t, id_=t), score=0.5) for t in ("a b", "b b b")]
    out = KeywordRerank(top_n=1).postprocess_nodes(nodes, query_str="b")
    (rerank,) = agent_run.recorder.ends(EventType.RERANKING)
    assert (rerank.payload["model_name"], rerank.payload["top_k"]) == ("kw-1", 1)
    assert [n.id for n in payloads.nodes_of(rerank.payload["nodes"])] == [
        n.node.node_id for n in out
    ]
    assert rerank.start.payload["query_str"] == "b"


def test_readme_agent_example_runs(otel: InMemorySpanExporter, capsys) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("An agent with two tools") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n\n")]
    saved = Settings._callback_manager
    Settings.callback_manager = LlamaCallbackManager([])
    namespace: dict[str, Any] = {"my_function_calling_llm": ScriptedLLM(plan=PLAN)}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        bridge.uninstall(namespace["manager"])
        Settings._callback_manager = saved
    printed = capsys.readouterr().out.splitlines()
    assert "20" in printed[0]
    assert printed[1:] == ["add {'a': 2, 'b': 3} 5 None", "multiply {'a': 5, 'b': 4} 20 None"]


def test_ingestion_pipeline_run_is_a_chain_over_its_legacy_events(
    agent_run: SimpleNamespace,
) -> None:
    from llama_index.core import Document
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import TokenTextSplitter

    pipeline = IngestionPipeline(
        transformations=[
            TokenTextSplitter(chunk_size=64, chunk_overlap=8),
            MockEmbedding(embed_dim=8),
        ]
    )
    nodes = pipeline.run(documents=[Document(text="Some words here. " * 40)])
    assert agent_run.manager.flush(timeout=10.0)
    oi_runs = [s for s in agent_run.otel.get_finished_spans() if s.name == "IngestionPipeline.run"]
    (chain,) = agent_run.recorder.ends(EventType.CHAIN)
    assert len(oi_runs) == 1
    assert chain.start.payload["serialized"]["name"] == "IngestionPipeline.run"
    assert chain.payload["response"] == nodes
    (trace,) = agent_run.recorder.traces
    assert trace.trace_map[ROOT] == [chain.id]
    legacy = {p[0].id_ for p in agent_run.debug.get_event_pairs()}
    assert legacy and set(trace.trace_map[chain.id]) <= legacy
    assert agent_run.manager.host_stats()["abandoned"] == 0


def test_a_tool_called_inside_an_llm_call_is_not_its_child(agent_run: SimpleNamespace) -> None:
    from llama_index.core.llms import CompletionResponse
    from llama_index.core.llms.callbacks import llm_completion_callback

    tool = FunctionTool.from_defaults(add)

    class ToolUsingLLM(ScriptedLLM):
        """A provider runtime that calls a local function while it completes."""

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            output = tool.call(a=1, b=2)
            return CompletionResponse(text=f"1 + 2 = {output.content}")

    with agent_run.manager.as_trace("app"):
        with agent_run.manager.event(EventType.CHAIN) as step:
            ToolUsingLLM().complete("add 1 and 2")
    (llm,) = agent_run.recorder.starts(EventType.LLM)
    (call,) = agent_run.recorder.starts(EventType.FUNCTION_CALL)
    # LlamaIndex never makes an LLM event a parent; both hang off the application's step.
    assert llm.parent_id == step.id
    assert call.parent_id == step.id
    assert agent_run.manager.host_stats()["abandoned"] == 0
