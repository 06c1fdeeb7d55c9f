"""The LangChain/LangGraph bridge, checked against LangChain's own view of the same runs: the run
tree LangChain's run collector records (``collect_runs()``'s tracer, passed with the run's
callbacks: through the context variable ``collect_runs()`` sets, LangGraph's node runs reach it
only in part) and the usage from ``get_usage_metadata_callback()``. Real langchain-core and
langgraph; only the chat model is a deterministic stand-in (``tests/langchain_models.py``)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")

from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_models import (
    Gate,
    ScriptedChatModel,
    add,
    build_retriever,
    expected_type,
    multiply,
    rag_chain,
    walk,
)

import callbacks
from callbacks import ROOT, CallbackManager, EventPayload, EventType, payloads
from callbacks.integrations import langchain as bridge
from callbacks.testing import RecordingPlugin
from callbacks_tokens import TokenCountingPlugin

# -- LangChain's view --------------------------------------------------------------------------


def langchain_tree(root: Any) -> dict[str, list[str]]:
    """``{parent: sorted children}`` of one root run, with ``"root"`` above it."""
    tree: dict[str, list[str]] = {ROOT: [str(root.id)]}
    for run in walk([root]):
        if run.child_runs:
            tree[str(run.id)] = sorted(str(c.id) for c in run.child_runs)
    return tree


def host_tree(trace: callbacks.Trace) -> dict[str, list[str]]:
    return {parent: sorted(children) for parent, children in trace.trace_map.items()}


def assert_same_runs(recorder: RecordingPlugin, roots: list[Any]) -> dict[str, callbacks.Trace]:
    """Each LangChain root run is one host trace with the run tree's shape, names and types."""
    traces = {trace.root_event_ids[0]: trace for trace in recorder.traces}
    assert sorted(traces) == sorted(str(r.id) for r in roots)
    starts = {e.id: e for e in recorder.starts()}
    ends = {e.id: e for e in recorder.ends()}
    for root in roots:
        trace = traces[str(root.id)]
        assert trace.name == root.name
        assert host_tree(trace) == langchain_tree(root)
        for run in walk([root]):
            start = starts[str(run.id)]
            assert start.type is expected_type(run), run.name
            assert start.trace_id == trace.id
            assert start.parent_id == (str(run.parent_run_id) if run.parent_run_id else ROOT)
            assert str(run.id) in ends
    assert len(starts) == len(ends) == sum(1 for _ in walk(roots))
    return traces


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def host() -> Iterator[SimpleNamespace]:
    """A manager with a recorder and the tokens plugin; a CallbacksHandler and LangChain's run
    collector to pass per call (``config``).
    On teardown: nothing abandoned, no unmatched end, nothing left pending."""
    recorder = RecordingPlugin()
    tokens = TokenCountingPlugin()
    manager = CallbackManager([recorder, tokens])
    handler = bridge.CallbacksHandler(manager)
    runs = RunCollectorCallbackHandler()
    yield SimpleNamespace(
        manager=manager,
        recorder=recorder,
        tokens=tokens,
        handler=handler,
        runs=runs,
        config={"callbacks": [handler, runs]},
    )
    stats = manager.host_stats()
    manager.shutdown(timeout=5.0)
    assert stats["abandoned"] == 0
    assert stats["unmatched_ends"] == 0
    assert stats["pending"] == 0
    assert not handler._runs


@pytest.fixture
def retriever() -> Any:
    return build_retriever()


def usage_totals(host: SimpleNamespace) -> dict[str, tuple[int, int, int]]:
    host.manager.flush()
    return {
        model: (t.prompt, t.completion, t.total)
        for model, t in host.tokens.totals_by_model().items()
    }


def langchain_usage(callback: Any) -> dict[str, tuple[int, int, int]]:
    return {
        model: (u["input_tokens"], u["output_tokens"], u["total_tokens"])
        for model, u in callback.usage_metadata.items()
    }


# -- the run tree, payloads and usage ----------------------------------------------------------


def test_rag_chain_matches_langchains_run_tree_payloads_and_usage(host, retriever):
    chain = rag_chain(retriever, ScriptedChatModel())
    with get_usage_metadata_callback() as usage:
        answer = chain.invoke("What is the capital of France?", config=host.config)

    assert_same_runs(host.recorder, host.runs.traced_runs)
    assert usage_totals(host) == langchain_usage(usage)
    by_id = {str(r.id): r for r in walk(host.runs.traced_runs)}

    (retrieve,) = host.recorder.ends(EventType.RETRIEVE)
    lc_docs = by_id[retrieve.id].outputs["documents"]
    assert retrieve.full_payload[EventPayload.QUERY_STR] == "What is the capital of France?"
    assert [n.text for n in payloads.nodes_of(retrieve.payload[EventPayload.NODES])] == [
        d.page_content for d in lc_docs
    ]
    assert [n.id for n in payloads.nodes_of(retrieve.payload[EventPayload.NODES])] == [
        d.id for d in lc_docs
    ]
    assert [n.metadata for n in payloads.nodes_of(retrieve.payload[EventPayload.NODES])] == [
        d.metadata for d in lc_docs
    ]

    (llm,) = host.recorder.ends(EventType.LLM)
    lc_llm = by_id[llm.id]
    sent = payloads.messages_of(llm.full_payload[EventPayload.MESSAGES])
    prefix = {"system": "System", "user": "Human"}
    assert "\n".join(f"{prefix[m.role]}: {m.content}" for m in sent) == lc_llm.inputs["prompts"][0]
    assert payloads.completion_of(llm.payload) == answer
    assert payloads.model_of(llm.full_payload) == "scripted-1"
    assert llm.full_payload[EventPayload.INVOCATION_PARAMETERS] == {
        k: v for k, v in lc_llm.extra["invocation_params"].items() if k != "tools"
    }

    (templating,) = host.recorder.ends(EventType.TEMPLATING)
    assert "Answer from the context." in templating.full_payload[EventPayload.TEMPLATE]
    assert templating.full_payload[EventPayload.TEMPLATE_VARS]["question"] == (
        "What is the capital of France?"
    )
    (root,) = [e for e in host.recorder.ends(EventType.CHAIN) if e.parent_id == ROOT]
    assert root.payload[EventPayload.RESPONSE] == answer


def test_streamed_chat_call_ends_with_full_text_usage_and_time_to_first_token(host):
    model = ScriptedChatModel()
    with get_usage_metadata_callback() as usage:
        chunks = list(model.stream("tell me about Paris in five words", config=host.config))

    assert_same_runs(host.recorder, host.runs.traced_runs)
    assert usage_totals(host) == langchain_usage(usage)
    (llm,) = host.recorder.ends(EventType.LLM)
    streamed = "".join(str(c.content) for c in chunks)
    assert streamed and payloads.completion_of(llm.payload) == streamed
    (lc_run,) = host.runs.traced_runs
    tokens = [e for e in lc_run.events if e["name"] == "new_token"]
    extra = llm.payload[EventPayload.ADDITIONAL_KWARGS]
    assert extra[bridge.STREAM_CHUNKS] == len(tokens) == len(chunks)
    assert 0 < extra[bridge.TIME_TO_FIRST_TOKEN] < llm.duration_ns


def test_async_stream_reports_time_to_first_token(host):
    model = ScriptedChatModel()

    async def main() -> list[Any]:
        return [c async for c in model.astream("stream this answer", config=host.config)]

    chunks = asyncio.run(main())
    assert_same_runs(host.recorder, host.runs.traced_runs)
    (llm,) = host.recorder.ends(EventType.LLM)
    assert payloads.completion_of(llm.payload) == "".join(str(c.content) for c in chunks)
    assert llm.payload[EventPayload.ADDITIONAL_KWARGS][bridge.STREAM_CHUNKS] == len(chunks)


def test_tool_calling_model_reports_tools_offered_and_calls_made(host):
    model = ScriptedChatModel(tool_args={"add": {"a": 2, "b": 3}, "multiply": {"a": 4, "b": 5}})
    bound = model.bind_tools([add, multiply])
    with get_usage_metadata_callback() as usage:
        reply = bound.invoke("what are 2+3 and 4*5?", config=host.config)

    assert_same_runs(host.recorder, host.runs.traced_runs)
    assert usage_totals(host) == langchain_usage(usage)
    (llm,) = host.recorder.ends(EventType.LLM)
    assert payloads.tool_calls_of(llm.payload) == reply.tool_calls
    assert payloads.assistant_message_of(llm.payload).tool_calls == tuple(reply.tool_calls)
    (lc_run,) = host.runs.traced_runs
    assert llm.full_payload[EventPayload.TOOLS] == lc_run.extra["invocation_params"]["tools"]


def test_langgraph_react_agent_with_two_tools(host):
    from langgraph.prebuilt import create_react_agent

    model = ScriptedChatModel(tool_args={"add": {"a": 2, "b": 3}, "multiply": {"a": 4, "b": 5}})
    with pytest.warns(Warning):
        agent = create_react_agent(model, [add, multiply])
    with get_usage_metadata_callback() as usage:
        state = agent.invoke({"messages": [("user", "2+3 and 4*5?")]}, config=host.config)

    traces = assert_same_runs(host.recorder, host.runs.traced_runs)
    assert len(traces) == 1 and next(iter(traces.values())).name == "LangGraph"
    assert usage_totals(host) == langchain_usage(usage)
    assert len(host.recorder.ends(EventType.AGENT_STEP)) == 2
    assert len(host.recorder.ends(EventType.LLM)) == 2
    results = {m.name: m.content for m in state["messages"] if isinstance(m, ToolMessage)}
    calls = host.recorder.ends(EventType.FUNCTION_CALL)
    assert {c.full_payload[EventPayload.TOOL]["name"] for c in calls} == {"add", "multiply"}
    for call in calls:
        name = call.full_payload[EventPayload.TOOL]["name"]
        assert payloads.text_of(call.payload[EventPayload.FUNCTION_OUTPUT]) == results[name]
        assert call.full_payload[EventPayload.FUNCTION_CALL] == model.tool_args[name]
    assert state["messages"][-1].content == "Results: 5, 20"


def test_exception_ends_the_failing_run_and_every_ancestor(host, retriever):
    def explode(text: str) -> str:
        raise ValueError(f"cannot parse {text!r}")

    chain = rag_chain(retriever, ScriptedChatModel()) | RunnableLambda(explode)
    with pytest.raises(ValueError) as raised:
        chain.invoke("What is the capital of Italy?", config=host.config)

    assert_same_runs(host.recorder, host.runs.traced_runs)
    ends = {e.id: e for e in host.recorder.ends()}
    failed = {str(r.id) for r in walk(host.runs.traced_runs) if r.error}
    assert len(failed) == 2  # the lambda and the sequence it propagated through
    for event_id, end in ends.items():
        if event_id in failed:
            assert end.exception is raised.value
        else:
            assert end.exception is None


def test_failing_model_call_inside_a_graph_fails_each_ancestor(host):
    from langgraph.prebuilt import create_react_agent

    with pytest.warns(Warning):
        agent = create_react_agent(ScriptedChatModel(fail_with="provider down"), [add])
    with pytest.raises(RuntimeError, match="provider down") as raised:
        agent.invoke({"messages": [("user", "hi")]}, config=host.config)
    assert_same_runs(host.recorder, host.runs.traced_runs)
    failed = {str(r.id) for r in walk(host.runs.traced_runs) if r.error}
    assert len(failed) >= 3  # the model, the agent node, the graph
    for end in host.recorder.ends():
        assert (end.exception is raised.value) is (end.id in failed)


# -- concurrency: tasks, thread pools, streams -------------------------------------------------


def test_fifty_concurrent_ainvoke_calls_give_fifty_exact_traces(host, retriever):
    gate = Gate(50)
    chain = rag_chain(retriever, ScriptedChatModel(gate=gate))
    questions = [f"question number {i}?" for i in range(50)]

    async def main() -> list[str]:
        return await asyncio.gather(*(chain.ainvoke(q, config=host.config) for q in questions))

    with get_usage_metadata_callback() as usage:
        answers = asyncio.run(main())

    assert gate.most_in_flight == 50  # every model call was awaiting at once
    traces = assert_same_runs(host.recorder, host.runs.traced_runs)
    assert len(traces) == 50
    assert usage_totals(host) == langchain_usage(usage)
    for trace in traces.values():
        (llm,) = host.recorder.ends(EventType.LLM, trace)
        (retrieve,) = host.recorder.ends(EventType.RETRIEVE, trace)
        question = retrieve.full_payload[EventPayload.QUERY_STR]
        assert payloads.completion_of(llm.payload) == f"Answer: {question}"
    assert sorted(answers) == sorted(f"Answer: {q}" for q in questions)


def test_batch_runs_in_langchains_thread_pool_join_their_own_traces(host, retriever):
    chain = rag_chain(retriever, ScriptedChatModel())
    questions = [f"batch question {i}?" for i in range(8)]
    main = threading.get_ident()
    answers = chain.batch(questions, config={**host.config, "max_concurrency": 4})

    assert answers == [f"Answer: {q}" for q in questions]
    traces = assert_same_runs(host.recorder, host.runs.traced_runs)
    assert len(traces) == 8
    assert any(e.thread_id != main for e in host.recorder.starts())  # really in other threads


def test_abatch_and_astream_events_give_separate_exact_traces(host, retriever):
    chain = rag_chain(retriever, ScriptedChatModel())

    async def main() -> list[str]:
        await chain.abatch(["first?", "second?", "third?"], config=host.config)
        return [e["event"] async for e in chain.astream_events("fourth?", config=host.config)]

    kinds = asyncio.run(main())
    assert "on_chat_model_stream" in kinds
    traces = assert_same_runs(host.recorder, host.runs.traced_runs)
    assert len(traces) == 4


def test_langchain_run_inside_an_application_trace_nests_under_its_event(host):
    manager = host.manager
    with manager.as_trace("request") as trace, manager.event(EventType.QUERY) as query:
        ScriptedChatModel().invoke("hello", config=host.config)
    (llm,) = host.recorder.starts(EventType.LLM)
    assert llm.trace_id == trace.id
    assert llm.parent_id == query.id
    assert [t.name for t in host.recorder.traces] == ["request"]


# -- install / uninstall -----------------------------------------------------------------------


def test_install_reports_every_run_without_callbacks_argument_in_any_thread(host):
    handler = bridge.install(host.manager)
    try:
        assert bridge.install(host.manager) is handler  # idempotent
        model = ScriptedChatModel()
        model.invoke("from the main thread")
        worker = threading.Thread(target=model.invoke, args=("from a plain thread",))
        worker.start()
        worker.join()
        assert len(host.recorder.traces) == 2
        assert {payloads.completion_of(e.payload) for e in host.recorder.ends(EventType.LLM)} == {
            "Answer: from the main thread",
            "Answer: from a plain thread",
        }
    finally:
        assert bridge.uninstall(host.manager) is True
    assert bridge.uninstall(host.manager) is False
    ScriptedChatModel().invoke("after uninstall")
    assert len(host.recorder.traces) == 2
    assert bridge.install(host.manager) is handler  # the same handler, enabled again
    try:
        ScriptedChatModel().invoke("installed again")
        assert len(host.recorder.traces) == 3
    finally:
        bridge.uninstall(host.manager)


def test_uninstall_during_a_run_lets_that_run_end_in_its_trace(host):
    bridge.install(host.manager)

    def uninstall_midway(text: str) -> str:
        bridge.uninstall(host.manager)
        # A new root run elsewhere, while this one is open: no longer reported.
        other = threading.Thread(target=ScriptedChatModel().invoke, args=("elsewhere",))
        other.start()
        other.join()
        return text

    chain = RunnableLambda(uninstall_midway) | ScriptedChatModel() | StrOutputParser()
    try:
        chain.invoke("hi", config={"callbacks": [host.runs]})
    finally:
        bridge.uninstall(host.manager)
    assert_same_runs(host.recorder, host.runs.traced_runs)


def test_installed_handler_sees_every_run_of_a_langgraph_agent(host):
    from langgraph.prebuilt import create_react_agent

    with pytest.warns(Warning):
        agent = create_react_agent(ScriptedChatModel(tool_args={"add": {"a": 1, "b": 1}}), [add])
    bridge.install(host.manager)
    try:
        agent.invoke({"messages": [("user", "1+1?")]}, config={"callbacks": [host.runs]})
    finally:
        bridge.uninstall(host.manager)
    assert_same_runs(host.recorder, host.runs.traced_runs)


def test_install_without_manager_uses_the_process_wide_manager(monkeypatch):
    monkeypatch.setenv("CALLBACKS_PLUGINS", "[]")
    callbacks.reset_manager()
    recorder = RecordingPlugin()
    try:
        callbacks.get_manager().register(recorder)
        handler = bridge.install()
        assert bridge.install() is handler
        ScriptedChatModel().invoke("to the process-wide manager")
        assert [e.type for e in recorder.ends()] == [EventType.LLM]
    finally:
        bridge.uninstall()
        callbacks.reset_manager()


# -- never breaks the app ----------------------------------------------------------------------


def test_a_failing_host_never_reaches_the_langchain_app(host, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("host is broken")

    monkeypatch.setattr(host.manager, "on_event_start", broken)
    monkeypatch.setattr(host.manager, "on_event_end", broken)
    reply = ScriptedChatModel().invoke("still answered", config=host.config)
    assert reply.content == "Answer: still answered"


def test_sampled_out_traces_report_nothing_and_count_no_unmatched_end():
    recorder = RecordingPlugin()
    manager = CallbackManager([recorder], config={"sample_rate": 0.0})
    handler = bridge.CallbacksHandler(manager)
    chain = ScriptedChatModel() | StrOutputParser()
    chain.invoke("not sampled", config={"callbacks": [handler]})
    stats = manager.host_stats()
    manager.shutdown()
    assert recorder.events == []
    assert stats["sampled_out"] == 1 and stats["unmatched_ends"] == 0
    assert not handler._runs


# -- payload readers on LangChain objects ------------------------------------------------------


def test_payload_readers_understand_langchain_messages_documents_and_usage():
    reply = AIMessage(
        "",
        tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}],
        usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 12},
    )
    conversation = [
        ("system", "be brief"),
        HumanMessage("1+2?"),
        reply,
        ToolMessage("3", tool_call_id="c1", name="add"),
    ]
    from langchain_core.messages import convert_to_messages

    messages = convert_to_messages(conversation)
    read = payloads.messages_of(messages)
    assert [m.role for m in read] == ["system", "user", "assistant", "tool"]
    assert read[2].tool_calls == tuple(reply.tool_calls)
    assert (read[3].name, read[3].tool_call_id, read[3].content) == ("add", "c1", "3")
    usage = payloads.usage_of({EventPayload.RESPONSE: reply})
    assert (usage.prompt, usage.completion, usage.total) == (7, 3, 12)
    # LangChain's message text is a str subclass that some sinks' C code rejects.
    assert type(payloads.text_of(AIMessage("plain").text)) is str
    assert type(payloads.messages_of([AIMessage("plain")])[0].content) is str
    doc = Document("text", id="d1", metadata={"k": 1})
    assert payloads.nodes_of([doc]) == [payloads.NodeView("d1", "text", None, {"k": 1})]


def test_importing_callbacks_does_not_import_langchain():
    code = "import sys, callbacks; print(sorted(m for m in sys.modules if 'lang' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_langchain_example_runs_offline(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Use with LangChain") :]
    example = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[1]
    assert "callbacks_langchain.install(manager)" in example
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # Six model calls, each reporting the usage the example's model is given (40 + 6 tokens).
    assert "LLM calls: 6 tokens: 276" in done.stdout
    assert done.stdout.count("Trace 'RunnableSequence'") == 6
    assert list(tmp_path.iterdir()) == [script]  # nothing written anywhere unasked


def test_stream_closed_early_ends_every_run_before_its_trace(host, retriever):
    chain = rag_chain(retriever, ScriptedChatModel())
    stream = chain.stream("a question with several words?", config=host.config)
    first = next(stream)
    stream.close()  # LangChain ends the outer runs first, then the inner ones

    assert first == "Answer:"
    assert_same_runs(host.recorder, host.runs.traced_runs)
    (trace,) = host.recorder.traces
    last_end = max(e.time_ns for e in host.recorder.ends())
    assert trace.end_time_ns >= last_end


def test_agent_action_is_an_agent_step_under_the_agent_run(host):
    from langchain_core.agents import AgentAction, AgentFinish

    def agent(question: str, run_manager: Any) -> str:
        run_manager.on_agent_action(AgentAction("add", {"a": 1, "b": 2}, "I should add."))
        run_manager.on_agent_finish(AgentFinish({"output": "3"}, "Done."))
        return "3"

    RunnableLambda(agent).invoke("1+2?", config=host.config)
    (lc_run,) = host.runs.traced_runs
    action, finish = host.recorder.ends(EventType.AGENT_STEP)
    assert action.parent_id == finish.parent_id == str(lc_run.id)
    assert action.full_payload[EventPayload.FUNCTION_CALL] == {
        "name": "add",
        "arguments": {"a": 1, "b": 2},
    }
    assert finish.payload[EventPayload.RESPONSE] == {"output": "3"}


def test_tokens_fall_back_to_tiktoken_when_langchain_reports_no_usage(host):
    from callbacks_tokens import load_encoding

    reply = ScriptedChatModel(report_usage=False).invoke("count me", config=host.config)
    host.manager.flush()
    (record,) = host.tokens.llm_token_counts
    assert record.source == "tiktoken"
    encoding = load_encoding(record.encoding)
    assert record.completion == len(encoding.encode_ordinary(str(reply.content)))


def test_completion_llm_reports_prompt_completion_and_provider_token_usage(host):
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.outputs import Generation, LLMResult

    class CompletionModel(FakeListLLM):
        """A completion model whose provider reports usage in ``llm_output``."""

        def _generate(
            self, prompts: list[str], stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> LLMResult:
            text = f"Completed: {prompts[0]}"
            usage = {"prompt_tokens": len(prompts[0]), "completion_tokens": len(text)}
            return LLMResult(
                generations=[[Generation(text=text)]],
                llm_output={
                    "token_usage": {**usage, "total_tokens": sum(usage.values())},
                    "model_name": "completion-1",
                },
            )

    text = CompletionModel(responses=[]).invoke("Say hi", config=host.config)
    assert_same_runs(host.recorder, host.runs.traced_runs)
    (lc_run,) = host.runs.traced_runs
    (llm,) = host.recorder.ends(EventType.LLM)
    assert payloads.prompt_of(llm.full_payload) == lc_run.inputs["prompts"][0]
    assert payloads.completion_of(llm.payload) == text
    reported = lc_run.outputs["llm_output"]["token_usage"]
    assert usage_totals(host) == {
        "completion-1": (
            reported["prompt_tokens"],
            reported["completion_tokens"],
            reported["total_tokens"],
        )
    }
