"""The LlamaIndex bridge against LlamaIndex's own handlers, on the pipelines real apps run.

LlamaIndex's ``LlamaDebugHandler`` (event pairs), a handler that keeps the parent LlamaIndex tells
its handlers, and ``TokenCountingHandler`` sit next to the bridge on the same LlamaIndex
``CallbackManager``; every test compares the host's events, parents and token counts with what
they recorded. The model is :class:`ScriptedLLM` (it awaits, streams through the callbacks and
reports usage), not ``MockLLM``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, TreeIndex, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager
from llama_index.core.callbacks import CBEventType, LlamaDebugHandler, TokenCountingHandler
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.query_engine import RouterQueryEngine, SubQuestionQueryEngine
from llama_index.core.question_gen import LLMQuestionGenerator
from llama_index.core.selectors import LLMSingleSelector
from llama_index.core.tools import QueryEngineTool, ToolMetadata
from scripted_llm import CompletionOnlyLLM, ScriptedLLM, ScriptedLLMError

from callbacks import ROOT, CallbackManager, EventType, payloads
from callbacks.integrations import llama_index as bridge
from callbacks.testing import RecordingPlugin

callbacks_tokens = pytest.importorskip("callbacks_tokens")

DOCS = [
    Document(text=f"Document {i} is about topic {i}. It says {i} plus {i} is {2 * i}. " * 6)
    for i in range(4)
]
MESSAGES = [
    ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
    ChatMessage(role=MessageRole.USER, content="What is topic 2 about?"),
]
# Events only the instrumentation API reports; the legacy callback system has no id for them.
INSTRUMENTATION_TYPES = {
    EventType.AGENT_STEP,
    EventType.FUNCTION_CALL,
    EventType.CHAIN,
    EventType.RERANKING,
}


class LlamaParents(BaseCallbackHandler):
    """Keeps the parent and type LlamaIndex tells its handlers for each event."""

    def __init__(self) -> None:
        super().__init__([], [])
        self.parent: dict[str, str] = {}
        self.type: dict[str, CBEventType] = {}
        self.payload: dict[str, Any] = {}

    def on_event_start(self, event_type, payload=None, event_id="", parent_id="", **kw):  # type: ignore[no-untyped-def]
        self.parent[event_id] = parent_id
        self.type[event_id] = event_type
        self.payload[event_id] = payload or {}
        return event_id

    def on_event_end(self, event_type, payload=None, event_id="", **kw):  # type: ignore[no-untyped-def]
        pass

    def start_trace(self, trace_id=None):  # type: ignore[no-untyped-def]
        pass

    def end_trace(self, trace_id=None, trace_map=None):  # type: ignore[no-untyped-def]
        pass

    def ancestors(self, event_id: str) -> list[str]:
        out = []
        parent = self.parent.get(event_id)
        while parent and parent in self.parent:
            out.append(parent)
            parent = self.parent.get(parent)
        return out


@pytest.fixture(scope="module", autouse=True)
def scripted_models() -> Iterator[None]:
    names = ("_llm", "_embed_model", "_callback_manager", "_node_parser", "_transformations")
    saved = {name: getattr(Settings, name) for name in names}
    # A completion model without reported usage: both token counters tokenize the same strings.
    Settings.llm = ScriptedLLM(chat_model=False, report_usage=False)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.callback_manager = LlamaCallbackManager([])
    Settings._node_parser = None
    Settings._transformations = None
    yield
    for name, value in saved.items():
        setattr(Settings, name, value)


@pytest.fixture
def both() -> Iterator[SimpleNamespace]:
    """The bridge and LlamaIndex's own handlers on Settings.callback_manager, after an index
    was built through them (then every record is cleared)."""
    recorder = RecordingPlugin()
    tokens = callbacks_tokens.TokenCountingPlugin()
    manager = CallbackManager([recorder, tokens])
    debug = LlamaDebugHandler(print_trace_on_end=False)
    counter = TokenCountingHandler()
    parents = LlamaParents()
    Settings.callback_manager.handlers[:] = [debug, counter, parents]
    bridge.install(manager)
    index = VectorStoreIndex.from_documents(DOCS)
    debug.flush_event_logs()
    counter.reset_counts()
    tokens.reset_counts()
    recorder.clear()
    yield SimpleNamespace(
        manager=manager,
        recorder=recorder,
        tokens=tokens,
        debug=debug,
        counter=counter,
        parents=parents,
        index=index,
    )
    bridge.uninstall(manager)
    Settings.callback_manager.handlers[:] = []
    manager.shutdown(timeout=5.0)


def assert_agrees(
    o: SimpleNamespace, *, llm_calls: int | None = None, tokens: bool = True
) -> dict[str, Any]:
    """Event pairs, parents and (with ``tokens``) token counts of the host equal LlamaIndex's;
    returns the host's start events by id."""
    assert o.manager.flush(timeout=10.0)
    pairs = o.debug.get_event_pairs()
    llama = {pair[0].id_: pair for pair in pairs}
    failures = {i for i, p in llama.items() if p[0].event_type is CBEventType.EXCEPTION}
    expected = {i: p[0].event_type.value for i, p in llama.items() if i not in failures}
    starts = {e.id: e for e in o.recorder.starts()}
    ends = {e.id: e for e in o.recorder.ends()}
    # Every LlamaIndex event is one host event of the same type, started and ended once.
    assert {i: starts[i].type.value for i in starts if i in expected} == expected
    assert len(o.recorder.starts()) == len(starts) and len(o.recorder.ends()) == len(ends)
    extra = {e.type for i, e in starts.items() if i not in expected}
    assert extra <= INSTRUMENTATION_TYPES, extra
    assert all(len(llama[i]) == 2 for i in expected), "LlamaIndex left an event open"
    assert set(ends) == set(starts)
    # LlamaIndex's start-only EXCEPTION events are not turned into host events.
    assert not o.recorder.starts(EventType.EXCEPTION)
    assert not failures & set(starts)
    # Parents: LlamaIndex's own; its "root" is never a LlamaIndex event on the host side.
    for event_id in expected:
        llama_parent = o.parents.parent[event_id]
        host_parent = starts[event_id].parent_id
        if llama_parent != "root":
            assert host_parent == llama_parent
            assert starts[llama_parent].trace_id == starts[event_id].trace_id
        else:
            assert host_parent == ROOT or host_parent not in expected, (event_id, host_parent)
    # Token counts equal TokenCountingHandler's.
    totals = o.tokens.totals()
    assert o.counter.llm_token_counts or llm_calls == 0
    assert not tokens or {
        "prompt": totals.prompt,
        "completion": totals.completion,
        "embedding": totals.embedding,
        # TokenCountingHandler records a failed call as 0 tokens; the plugin as uncounted.
        "calls": len(o.tokens.llm_token_counts) + o.tokens.uncounted_llm_calls,
    } == {
        "prompt": o.counter.prompt_llm_token_count,
        "completion": o.counter.completion_llm_token_count,
        "embedding": o.counter.total_embedding_token_count,
        "calls": len(o.counter.llm_token_counts),
    }
    if llm_calls is not None:
        assert len(o.recorder.ends(EventType.LLM)) == llm_calls
    stats = o.manager.host_stats()
    assert (stats["abandoned"], stats["unmatched_ends"], stats["pending"]) == (0, 0, 0)
    return starts


# -- streaming ---------------------------------------------------------------------------------


def test_streaming_query_agrees_and_keeps_the_completion(both: SimpleNamespace) -> None:
    engine = both.index.as_query_engine(streaming=True)
    answers = []
    for i in range(5):
        response = engine.query(f"What is topic {i % 4} about?")
        answers.append("".join(response.response_gen))
    assert_agrees(both, llm_calls=5)
    completions = [payloads.completion_of(e.payload) for e in both.recorder.ends(EventType.LLM)]
    assert completions == answers
    assert both.counter.completion_llm_token_count > 0


def test_stream_chat_and_astream_chat_lose_no_call_in_30_runs(both: SimpleNamespace) -> None:
    llm = ScriptedLLM()
    streamed = []
    for _ in range(30):
        streamed.append("".join(r.delta or "" for r in llm.stream_chat(MESSAGES)))

    async def consume() -> None:
        for _ in range(30):
            gen = await llm.astream_chat(MESSAGES)
            streamed.append("".join([r.delta or "" async for r in gen]))

    asyncio.run(consume())
    assert llm.calls == 60
    assert_agrees(both, llm_calls=60)
    ends = both.recorder.ends(EventType.LLM)
    assert [payloads.completion_of(e.payload) for e in ends] == streamed
    assert all(e.exception is None for e in ends)
    usage = payloads.usage_of(ends[0].payload)
    assert usage is not None and usage.completion == len(streamed[0].split())
    assert len(both.recorder.traces) == 60


def test_stream_complete_and_astream_complete_agree(both: SimpleNamespace) -> None:
    llm = ScriptedLLM(report_usage=False)
    for _ in range(10):
        "".join(r.delta or "" for r in llm.stream_complete("Tell me about topic 1"))

    async def consume() -> None:
        for _ in range(10):
            gen = await llm.astream_complete("Tell me about topic 2")
            [r async for r in gen]

    asyncio.run(consume())
    assert_agrees(both, llm_calls=20)


# -- chat engines ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["condense_question", "context"])
def test_chat_engine_chat_and_stream_chat_agree(both: SimpleNamespace, mode: str) -> None:
    llm = ScriptedLLM()
    engine = both.index.as_chat_engine(chat_mode=mode, llm=llm)
    engine.chat("What is topic 1 about?")
    runs = 30 if mode == "context" else 5
    for i in range(runs):
        response = engine.stream_chat(f"And topic {i % 4}?")
        "".join(response.response_gen)
    assert_agrees(both, llm_calls=llm.calls)
    assert llm.calls >= runs + 1


def test_context_chat_engine_stream_ending_after_its_trace_loses_nothing(
    both: SimpleNamespace,
) -> None:
    # ContextChatEngine.stream_chat reads the LLM stream on a thread of its own; the gate holds
    # that stream until stream_chat has returned and LlamaIndex has ended the "chat" trace.
    llm = ScriptedLLM()
    engine = both.index.as_chat_engine(chat_mode="context", llm=llm)
    for i in range(30):
        gate = threading.Event()
        llm.stream_gate = gate
        response = engine.stream_chat(f"What is topic {i % 4} about?")
        gate.set()
        assert "".join(response.response_gen)
    llm.stream_gate = None
    assert_agrees(both, llm_calls=30)
    assert all(e.exception is None for e in both.recorder.ends(EventType.LLM))


def test_context_chat_engine_astream_chat_agrees(both: SimpleNamespace) -> None:
    llm = ScriptedLLM()
    engine = both.index.as_chat_engine(chat_mode="context", llm=llm)

    async def main() -> None:
        for i in range(10):
            response = await engine.astream_chat(f"What is topic {i % 4} about?")
            async for _ in response.async_response_gen():
                pass

    asyncio.run(main())
    assert_agrees(both, llm_calls=llm.calls)
    assert llm.calls == 10


# -- query engines -----------------------------------------------------------------------------


def _tools(index: VectorStoreIndex, llm: ScriptedLLM) -> list[QueryEngineTool]:
    return [
        QueryEngineTool(
            query_engine=index.as_query_engine(llm=llm),
            metadata=ToolMetadata(name=name, description=f"the {name} documents"),
        )
        for name in ("first", "second")
    ]


@pytest.mark.parametrize("use_async", [False, True])
def test_sub_question_query_engine_agrees(both: SimpleNamespace, use_async: bool) -> None:
    llm = ScriptedLLM(
        chat_model=False,
        report_usage=False,
        sub_questions=[("What is topic 1 about?", "first"), ("What is topic 2 about?", "second")],
    )
    engine = SubQuestionQueryEngine.from_defaults(
        query_engine_tools=_tools(both.index, llm),
        question_gen=LLMQuestionGenerator.from_defaults(llm=llm),
        llm=llm,
        use_async=use_async,
    )
    engine.query("Compare topics 1 and 2")
    starts = assert_agrees(both, llm_calls=llm.calls)
    assert len([e for e in starts.values() if e.type is EventType.SUB_QUESTION]) == 2


def test_router_query_engine_agrees(both: SimpleNamespace) -> None:
    llm = ScriptedLLM(chat_model=False, report_usage=False)
    engine = RouterQueryEngine(
        selector=LLMSingleSelector.from_defaults(llm=llm),
        query_engine_tools=_tools(both.index, llm),
        llm=llm,
    )
    engine.query("What is topic 3 about?")
    starts = assert_agrees(both, llm_calls=llm.calls)
    assert len([e for e in starts.values() if e.type is EventType.QUERY]) == 2


@pytest.mark.parametrize("mode", ["tree_summarize", "refine"])
def test_response_modes_agree(both: SimpleNamespace, mode: str) -> None:
    engine = both.index.as_query_engine(response_mode=mode, similarity_top_k=3)
    engine.query("What do the documents say?")
    assert_agrees(both)


def test_tree_index_build_and_query_agree(both: SimpleNamespace) -> None:
    index = TreeIndex.from_documents(DOCS, num_children=2)
    index.as_query_engine().query("What is topic 0 about?")
    starts = assert_agrees(both)
    assert {EventType.TREE, EventType.QUERY, EventType.LLM} <= {e.type for e in starts.values()}


# -- failures ------------------------------------------------------------------------------------


def test_an_llm_failing_inside_a_query_marks_it_and_each_ancestor_once(
    both: SimpleNamespace,
) -> None:
    engine = both.index.as_query_engine(llm=ScriptedLLM(fail=True))
    with pytest.raises(ScriptedLLMError) as caught:
        engine.query("What is topic 1 about?")
    error = caught.value
    starts = assert_agrees(both, llm_calls=1)
    # LlamaIndex reported the failure as one start-only EXCEPTION event...
    (exception_id,) = [i for i, t in both.parents.type.items() if t is CBEventType.EXCEPTION]
    assert both.parents.payload[exception_id]["exception"] is error
    # ...the host marks the failed LLM event and each event it propagated through, and no other.
    (llm,) = [i for i, e in starts.items() if e.type is EventType.LLM]
    chain = {llm, *both.parents.ancestors(llm)}
    assert {starts[i].type for i in chain} == {EventType.LLM, EventType.SYNTHESIZE, EventType.QUERY}
    failed = {e.id for e in both.recorder.ends() if e.exception is not None}
    assert failed == chain
    assert all(e.exception is error for e in both.recorder.ends() if e.id in chain)


def test_an_exception_the_app_handles_leaves_later_queries_ok(both: SimpleNamespace) -> None:
    failing = both.index.as_query_engine(llm=ScriptedLLM(fail=True))
    with pytest.raises(ScriptedLLMError):
        failing.query("first")
    both.recorder.clear()
    both.index.as_query_engine().query("second")
    assert all(e.exception is None for e in both.recorder.ends())


# -- concurrency -----------------------------------------------------------------------------


def test_20_concurrent_aqueries_with_an_awaiting_llm_agree(both: SimpleNamespace) -> None:
    llm = ScriptedLLM(chat_model=False, report_usage=False)
    engine = both.index.as_query_engine(llm=llm)
    questions = [f"question-{i:02d}" for i in range(20)]

    async def main() -> None:
        await asyncio.gather(*(engine.aquery(q) for q in questions))

    asyncio.run(main())
    starts = assert_agrees(both, llm_calls=20)
    # The queries really interleaved: some LLM call started while another was running.
    llm_events = sorted(
        (e.start.time_ns, e.time_ns) for e in both.recorder.ends(EventType.LLM) if e.start
    )
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(llm_events))
    traces = [t for t in both.recorder.traces if t.name == "query"]
    assert len(traces) == 20
    for trace in traces:
        ids = [c for children in trace.trace_map.values() for c in children]
        (query,) = [starts[i] for i in ids if starts[i].type is EventType.QUERY]
        for i in ids:
            if starts[i].type is EventType.LLM:
                prompt = payloads.prompt_of(starts[i].payload) or ""
                question = query.payload["query_str"]
                assert question in prompt
                assert not [q for q in questions if q != question and q in prompt]


# -- overlapping root-level events -------------------------------------------------------------


def test_overlapping_root_level_llm_events_stay_at_the_root(both: SimpleNamespace) -> None:
    llm = CompletionOnlyLLM()

    async def main() -> None:
        gen = await llm.astream_chat(MESSAGES)  # astream_chat -> stream_chat -> stream_complete
        [r async for r in gen]

    llm.chat(MESSAGES)  # chat -> complete
    asyncio.run(main())
    # Chat calls without reported usage: the token counters differ by design (see
    # test_chat_token_counts_differ_from_token_counting_handler_as_documented).
    starts = assert_agrees(both, llm_calls=5, tokens=False)
    assert all(both.parents.parent[i] == "root" for i in starts)
    assert all(e.parent_id == ROOT for e in starts.values())


def test_overlapping_root_level_embeddings_stay_at_the_root(both: SimpleNamespace) -> None:
    embed = Settings.embed_model
    cm = Settings.callback_manager
    first = cm.on_event_start(CBEventType.EMBEDDING, payload={"chunks": ["a"]})
    embed.get_text_embedding("inside")  # a second embedding while the first is open
    cm.on_event_end(CBEventType.EMBEDDING, payload={"chunks": ["a"]}, event_id=first)
    starts = assert_agrees(both, llm_calls=0)
    assert len(starts) == 2
    assert all(e.parent_id == ROOT for e in starts.values())


# -- where the token counters differ -----------------------------------------------------------


def test_chat_token_counts_differ_from_token_counting_handler_as_documented(
    both: SimpleNamespace,
) -> None:
    """The README's example: a chat call with no reported usage. Both count each message's role,
    content and 3 tokens of overhead; the tokens plugin adds the 3 tokens OpenAI's chat format
    spends priming the reply. For the completion, TokenCountingHandler tokenizes
    ``str(ChatResponse)`` ("assistant: ..."), the plugin the reply's content, which is what
    OpenAI bills as completion tokens."""
    from llama_index.core.utils import get_tokenizer

    tokenize = get_tokenizer()  # LlamaIndex's bundled cl100k_base, as TokenCountingHandler's
    llm = ScriptedLLM(report_usage=False)
    response = llm.chat(MESSAGES)
    assert both.manager.flush(timeout=10.0)

    llama_prompt = sum(len(tokenize(m.role.value)) + len(tokenize(m.content)) + 3 for m in MESSAGES)
    llama_completion = len(tokenize(str(response)))
    openai_prompt = 3 + sum(
        3 + len(tokenize(m.role.value)) + len(tokenize(m.content)) for m in MESSAGES
    )
    openai_completion = len(tokenize(response.message.content))
    assert str(response).startswith("assistant: ")
    assert (both.counter.prompt_llm_token_count, both.counter.completion_llm_token_count) == (
        llama_prompt,
        llama_completion,
    )
    totals = both.tokens.totals()
    assert (totals.prompt, totals.completion) == (openai_prompt, openai_completion)
    # The figures the README quotes for this example.
    assert (llama_prompt, llama_completion, openai_prompt, openai_completion) == (18, 14, 21, 12)


def test_a_fallback_query_run_while_handling_the_failure_is_not_marked_failed(
    both: SimpleNamespace,
) -> None:
    failing = both.index.as_query_engine(llm=ScriptedLLM(fail=True))
    fallback = both.index.as_query_engine()
    try:
        failing.query("What is topic 1 about?")
    except ScriptedLLMError:
        answer = fallback.query("What is topic 1 about?")  # inside the except block
    assert answer.response
    starts = assert_agrees(both, llm_calls=2)
    failed = {e.id for e in both.recorder.ends() if e.exception is not None}
    (failed_llm,) = [e.id for e in both.recorder.ends(EventType.LLM) if e.exception is not None]
    assert failed == {failed_llm, *both.parents.ancestors(failed_llm)}
    assert {starts[i].type for i in failed} == {
        EventType.LLM,
        EventType.SYNTHESIZE,
        EventType.QUERY,
    }
