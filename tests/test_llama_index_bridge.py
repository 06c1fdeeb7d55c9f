"""The LlamaIndex bridge, tested against a real LlamaIndex pipeline run offline (MockLLM and
MockEmbedding stand in for the user's models)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager
from llama_index.core.callbacks import (
    CBEventType,
    LlamaDebugHandler,
    TokenCountingHandler,
)
from llama_index.core.callbacks import EventPayload as LlamaEventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    MessageRole,
    MockLLM,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.query_engine import SubQuestionQueryEngine
from llama_index.core.question_gen import LLMQuestionGenerator
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.tools import QueryEngineTool, ToolMetadata

import callbacks
from callbacks import (
    ROOT,
    CallbackManager,
    EventPayload,
    EventType,
    Trace,
    payloads,
)
from callbacks.integrations import llama_index as bridge
from callbacks.integrations.llama_index import CallbacksHandler
from callbacks.testing import RecordingPlugin

DOCS = [
    Document(text=f"Document {i} is about topic {i}. It says {i} plus {i} is {2 * i}. " * 4)
    for i in range(4)
]


# -- recorders on both sides -------------------------------------------------------------------


class LlamaParents(BaseCallbackHandler):
    """A LlamaIndex handler that keeps the parent LlamaIndex tells handlers for each event, and
    the trace maps LlamaIndex's CallbackManager hands to ``end_trace``."""

    def __init__(self) -> None:
        super().__init__([], [])
        self.parent: dict[str, str] = {}
        self.type: dict[str, str] = {}
        self.order: list[str] = []
        self.trace_maps: list[dict[str, list[str]]] = []

    def on_event_start(self, event_type, payload=None, event_id="", parent_id="", **kw):  # type: ignore[no-untyped-def]
        self.parent[event_id] = parent_id
        self.type[event_id] = event_type.value
        self.order.append(event_id)
        return event_id

    def on_event_end(self, event_type, payload=None, event_id="", **kw):  # type: ignore[no-untyped-def]
        pass

    def start_trace(self, trace_id=None):  # type: ignore[no-untyped-def]
        pass

    def end_trace(self, trace_id=None, trace_map=None):  # type: ignore[no-untyped-def]
        self.trace_maps.append({k: list(v) for k, v in (trace_map or {}).items() if v})

    def trace_map(self, ids: list[str]) -> dict[str, list[str]]:
        """LlamaIndex's ``{parent: [children]}`` over ``ids``, as it told its handlers."""
        wanted = set(ids)
        out: dict[str, list[str]] = {}
        for event_id in self.order:
            if event_id in wanted:
                out.setdefault(self.parent[event_id], []).append(event_id)
        return out


def shape(trace_map: dict[str, list[str]], types: dict[str, Any], node: str = ROOT) -> tuple:
    """The trace map as nested (type, children) tuples: its shape without the ids."""
    return tuple(
        (str(types[child]), shape(trace_map, types, child)) for child in trace_map.get(node, [])
    )


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def mock_models() -> Iterator[None]:
    """MockLLM, MockEmbedding and one CallbackManager in LlamaIndex's Settings for this module,
    restored after."""
    names = ("_llm", "_embed_model", "_callback_manager", "_node_parser", "_transformations")
    saved = {name: getattr(Settings, name) for name in names}
    Settings.llm = MockLLM(max_tokens=12)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    # One manager for the whole module: LlamaIndex caches Settings.transformations with the
    # callback manager of its first use, so replacing Settings.callback_manager later would leave
    # node parsing reporting to the old one. Tests change its handler list in place instead.
    Settings.callback_manager = LlamaCallbackManager([])
    Settings._node_parser = None
    Settings._transformations = None
    yield
    for name, value in saved.items():
        setattr(Settings, name, value)


@pytest.fixture
def run() -> Iterator[SimpleNamespace]:
    """A host manager with a recorder, bridged into ``Settings.callback_manager`` next to
    LlamaIndex's own LlamaDebugHandler, and an index built through it."""
    recorder = RecordingPlugin()
    manager = CallbackManager([recorder])
    debug = LlamaDebugHandler(print_trace_on_end=False)
    parents = LlamaParents()
    Settings.callback_manager.handlers[:] = [debug, parents]
    handler = bridge.install(manager)
    index = VectorStoreIndex.from_documents(DOCS)
    yield SimpleNamespace(
        manager=manager,
        recorder=recorder,
        debug=debug,
        parents=parents,
        handler=handler,
        index=index,
    )
    bridge.uninstall(manager)
    Settings.callback_manager.handlers[:] = []
    manager.shutdown(timeout=2.0)


def only_trace(recorder: RecordingPlugin, name: str) -> Trace:
    traces = [t for t in recorder.traces if t.name == name]
    assert len(traces) == 1, [t.name for t in recorder.traces]
    return traces[0]


def trace_ids(trace: Trace) -> list[str]:
    return [child for children in trace.trace_map.values() for child in children]


# -- packaging and vocabulary ------------------------------------------------------------------


def test_importing_callbacks_does_not_import_llama_index() -> None:
    code = (
        "import sys, callbacks, callbacks.integrations; "
        "print(sorted(m for m in sys.modules if m.startswith('llama_index')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_event_types_and_payload_keys_are_llama_index_values() -> None:
    assert {t.value for t in CBEventType} == {t.value for t in EventType} - {"chain"}
    assert {k.value for k in LlamaEventPayload} <= {k.value for k in EventPayload}


# -- one query -----------------------------------------------------------------------------------


def test_query_trace_map_equals_the_parents_llama_index_reports(run: SimpleNamespace) -> None:
    run.recorder.clear()
    run.index.as_query_engine().query("What is topic 2 about?")

    trace = only_trace(run.recorder, "query")
    ids = trace_ids(trace)
    assert trace.trace_map == run.parents.trace_map(ids)
    types = {e.id: e.type for e in run.recorder.starts(trace=trace)}
    assert shape(trace.trace_map, types) == (
        (
            "query",
            (
                ("retrieve", (("embedding", ()),)),
                (
                    "synthesize",
                    (("chunking", ()), ("chunking", ()), ("templating", ()), ("llm", ())),
                ),
            ),
        ),
    )
    # LlamaIndex's own trace_map only holds the events of the CallbackManager that opened the
    # trace (the synthesizer's text splitter reports its chunking through another one); every
    # edge it has is in the host's map, in the same order.
    llama_map = run.parents.trace_maps[-1]
    for parent, children in llama_map.items():
        assert [c for c in trace.trace_map[parent] if c in children] == children
    assert run.manager.host_stats()["unmatched_ends"] == 0
    assert run.manager.host_stats()["abandoned"] == 0


def test_event_pairs_equal_llama_debug_handler_pairs(run: SimpleNamespace) -> None:
    run.debug.flush_event_logs()
    run.recorder.clear()
    run.index.as_query_engine().query("What is topic 1 about?")

    llama_pairs = [
        (pair[0].event_type.value, pair[0].id_, len(pair)) for pair in run.debug.get_event_pairs()
    ]
    host_starts = run.recorder.starts()
    ended = {e.id for e in run.recorder.ends()}
    host_pairs = [(e.type.value, e.id, 2 if e.id in ended else 1) for e in host_starts]
    assert host_pairs == llama_pairs
    assert len(host_pairs) == 8


def test_index_construction_is_its_own_trace(run: SimpleNamespace) -> None:
    run.recorder.clear()
    VectorStoreIndex.from_documents(DOCS[:2])
    trace = only_trace(run.recorder, "index_construction")
    types = {e.id: e.type for e in run.recorder.starts(trace=trace)}
    assert shape(trace.trace_map, types) == (
        ("node_parsing", (("chunking", ()), ("chunking", ()))),
        ("embedding", ()),
    )
    assert trace.trace_map == run.parents.trace_map(trace_ids(trace))


def test_payloads_stay_llama_index_objects_keyed_by_plain_strings(run: SimpleNamespace) -> None:
    run.recorder.clear()
    response = run.index.as_query_engine(similarity_top_k=2).query("What is topic 3 about?")

    retrieve_end = run.recorder.ends(EventType.RETRIEVE)[0]
    assert all(type(key) is str for e in run.recorder.events for key in e.payload)
    nodes = retrieve_end.payload["nodes"]
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    views = payloads.nodes_of(nodes)
    assert [v.text for v in views] == [n.node.get_content() for n in nodes]
    assert [v.score for v in views] == [n.score for n in nodes]
    assert [v.id for v in views] == [n.node.node_id for n in nodes]

    llm_end = run.recorder.ends(EventType.LLM)[0]
    assert isinstance(llm_end.payload["completion"], CompletionResponse)
    assert payloads.completion_of(llm_end.payload) == llm_end.payload["completion"].text
    assert "What is topic 3 about?" in (payloads.prompt_of(llm_end.payload) or "")

    query_end = run.recorder.ends(EventType.QUERY)[0]
    assert payloads.completion_of(query_end.payload) == response.response

    embedding_end = run.recorder.ends(EventType.EMBEDDING)[0]
    assert payloads.embedding_texts_of(embedding_end.payload) == ["What is topic 3 about?"]


def test_debug_plugin_pairs_equal_llama_debug_handler_pairs(run: SimpleNamespace) -> None:
    callbacks_debug = pytest.importorskip("callbacks_debug")
    plugin = callbacks_debug.DebugPlugin(stream=io.StringIO())
    run.manager.register(plugin)
    run.debug.flush_event_logs()
    run.index.as_query_engine().query("What is topic 1 about?")
    VectorStoreIndex.from_documents(DOCS[:2])

    llama_pairs = run.debug.get_event_pairs()
    host_pairs = plugin.get_event_pairs()
    assert [(s.type.value, s.id) for s, _ in host_pairs] == [
        (pair[0].event_type.value, pair[0].id_) for pair in llama_pairs
    ]
    assert all(len(pair) == 2 for pair in llama_pairs)
    assert all(start.id == end.id for start, end in host_pairs)
    # Nesting: each pair's parent is the one LlamaIndex gave it.
    assert [s.parent_id for s, _ in host_pairs] == [run.parents.parent[s.id] for s, _ in host_pairs]
    assert len(host_pairs) == 8 + 4


def test_tokens_plugin_counts_equal_llama_token_counting_handler(run: SimpleNamespace) -> None:
    callbacks_tokens = pytest.importorskip("callbacks_tokens")
    plugin = callbacks_tokens.TokenCountingPlugin()  # its own offline tiktoken (cl100k_base)
    run.manager.register(plugin)
    llama_counter = TokenCountingHandler()  # LlamaIndex's bundled cl100k_base
    Settings.callback_manager.add_handler(llama_counter)
    engine = run.index.as_query_engine()

    VectorStoreIndex.from_documents(DOCS)
    engine.query("What is topic 1 about?")

    async def main() -> None:
        await asyncio.gather(*(engine.aquery(f"question-{i:02d}") for i in range(5)))

    asyncio.run(main())

    assert llama_counter.total_llm_token_count > 0
    assert llama_counter.total_embedding_token_count > 0
    expected = {
        "prompt": llama_counter.prompt_llm_token_count,
        "completion": llama_counter.completion_llm_token_count,
        "total": llama_counter.total_llm_token_count,
        "embedding": llama_counter.total_embedding_token_count,
    }
    assert {
        "prompt": plugin.prompt_llm_token_count,
        "completion": plugin.completion_llm_token_count,
        "total": plugin.total_llm_token_count,
        "embedding": plugin.total_embedding_token_count,
    } == expected


# -- concurrency -------------------------------------------------------------------------------


def test_concurrent_aqueries_get_separate_exact_traces(run: SimpleNamespace) -> None:
    engine = run.index.as_query_engine()
    run.recorder.clear()
    asyncio.run(engine.aquery("question-single"))
    single = only_trace(run.recorder, "query")
    types = {e.id: e.type for e in run.recorder.events}
    expected = shape(single.trace_map, types)

    run.recorder.clear()
    questions = [f"question-{i:02d}" for i in range(20)]

    async def main() -> None:
        await asyncio.gather(*(engine.aquery(q) for q in questions))

    asyncio.run(main())

    traces = [t for t in run.recorder.traces if t.name == "query"]
    assert len(traces) == 20
    types = {e.id: e.type for e in run.recorder.events}
    seen: set[str] = set()
    asked: list[str] = []
    for trace in traces:
        ids = trace_ids(trace)
        assert shape(trace.trace_map, types) == expected
        assert trace.trace_map == run.parents.trace_map(ids)
        assert not seen & set(ids)
        seen |= set(ids)
        starts = run.recorder.starts(trace=trace)
        assert sorted(e.id for e in starts) == sorted(ids)
        (query,) = [e for e in starts if e.type is EventType.QUERY]
        question = query.payload["query_str"]
        asked.append(question)
        # No cross-talk: every prompt in this trace carries this trace's question only.
        for llm in (e for e in starts if e.type is EventType.LLM):
            prompt = payloads.prompt_of(llm.payload) or ""
            assert question in prompt
            assert not [q for q in questions if q != question and q in prompt]
    assert sorted(asked) == questions
    assert run.manager.host_stats()["abandoned"] == 0


# -- other engines -----------------------------------------------------------------------------


class PlannerLLM(MockLLM):
    """Stands in for the user's model: plans two sub-questions, and echoes every other prompt."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if "<User Question>" in prompt:
            plan = {
                "items": [
                    {"sub_question": "What is topic 1 about?", "tool_name": "first"},
                    {"sub_question": "What is topic 2 about?", "tool_name": "second"},
                ]
            }
            return CompletionResponse(text=f"```json\n{json.dumps(plan)}\n```")
        return CompletionResponse(text=prompt)


def test_sub_question_engine_nests_each_sub_question_under_the_query(
    run: SimpleNamespace,
) -> None:
    llm = PlannerLLM()
    tools = [
        QueryEngineTool(
            query_engine=run.index.as_query_engine(llm=llm),
            metadata=ToolMetadata(name=name, description=f"the {name} documents"),
        )
        for name in ("first", "second")
    ]
    engine = SubQuestionQueryEngine.from_defaults(
        query_engine_tools=tools,
        question_gen=LLMQuestionGenerator.from_defaults(llm=llm),
        llm=llm,
        use_async=False,
    )
    run.recorder.clear()
    engine.query("Compare topics 1 and 2")

    trace = only_trace(run.recorder, "query")
    # The question generator's output parser is reported by the instrumentation API only (a
    # CHAIN event, no LlamaIndex callback id); every other edge is LlamaIndex's.
    starts = {e.id: e for e in run.recorder.starts(trace=trace)}
    (parser,) = [i for i, e in starts.items() if e.type is EventType.CHAIN]
    legacy_map = {
        parent: [c for c in children if c != parser] for parent, children in trace.trace_map.items()
    }
    assert legacy_map == run.parents.trace_map([i for i in trace_ids(trace) if i != parser])
    (root,) = trace.trace_map[ROOT]
    assert starts[root].type is EventType.QUERY
    children = [starts[c].type for c in trace.trace_map[root]]
    assert children == [
        EventType.TEMPLATING,
        EventType.LLM,
        EventType.CHAIN,
        EventType.SUB_QUESTION,
        EventType.SUB_QUESTION,
        EventType.SYNTHESIZE,
    ]
    sub_questions = [c for c in trace.trace_map[root] if starts[c].type is EventType.SUB_QUESTION]
    for sub_question in sub_questions:
        (inner,) = trace.trace_map[sub_question]
        assert starts[inner].type is EventType.QUERY
        assert [starts[c].type for c in trace.trace_map[inner]] == [
            EventType.RETRIEVE,
            EventType.SYNTHESIZE,
        ]
    answers = [e.payload["sub_question"] for e in run.recorder.ends(EventType.SUB_QUESTION)]
    assert [a.sub_q.sub_question for a in answers] == [
        "What is topic 1 about?",
        "What is topic 2 about?",
    ]


def test_chat_messages_and_chat_response_read_through_payloads(run: SimpleNamespace) -> None:
    run.recorder.clear()
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.USER, content="Hello there"),
    ]
    response = Settings.llm.chat(messages)

    trace = only_trace(run.recorder, "chat")
    chat_start, chat_end = (
        e for e in run.recorder.events if e.type is EventType.LLM and "messages" in e.payload
    )
    assert chat_start.trace_id == trace.id
    assert payloads.messages_of(chat_start.payload["messages"]) == [
        payloads.Message("system", "Be brief."),
        payloads.Message("user", "Hello there"),
    ]
    assert isinstance(chat_end.payload["response"], ChatResponse)
    assert payloads.completion_of(chat_end.payload) == response.message.content


# -- installing ----------------------------------------------------------------------------------


def test_install_is_idempotent(run: SimpleNamespace) -> None:
    handlers = Settings.callback_manager.handlers
    assert bridge.install(run.manager) is run.handler
    assert [h for h in handlers if isinstance(h, CallbacksHandler)] == [run.handler]
    from llama_index.core.instrumentation import get_dispatcher

    root = get_dispatcher()
    assert [h for h in root.span_handlers if h is run.handler.spans] == [run.handler.spans]
    assert [h for h in root.event_handlers if h is run.handler.span_events] == [
        run.handler.span_events
    ]
    assert bridge.uninstall(run.manager) is True
    assert bridge.uninstall(run.manager) is False
    assert run.handler.spans not in root.span_handlers
    assert run.handler.span_events not in root.event_handlers
    run.recorder.clear()
    run.index.as_query_engine().query("unheard")
    assert run.recorder.events == []


def test_install_without_a_manager_follows_the_process_manager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CALLBACKS_PLUGINS", "[]")
    callbacks.reset_manager()
    try:
        handler = bridge.install()
        assert bridge.install() is handler
        assert handler.manager is callbacks.get_manager()
        assert bridge.install(callbacks.get_manager()) is handler
        recorder = RecordingPlugin()
        callbacks.get_manager().register(recorder)
        Settings.llm.complete("hi")
        assert [e.type for e in recorder.starts()] == [EventType.LLM]
        assert [t.name for t in recorder.traces] == ["completion"]
    finally:
        assert bridge.uninstall() is True
        Settings.callback_manager.handlers[:] = []
        callbacks.reset_manager()


def test_handler_on_a_specific_llama_callback_manager() -> None:
    recorder = RecordingPlugin()
    manager = CallbackManager([recorder])
    llama_cm = LlamaCallbackManager([])
    llama_cm.add_handler(CallbacksHandler(manager))
    try:
        MockLLM(callback_manager=llama_cm).complete("hello")
        (trace,) = recorder.traces
        assert trace.name == "completion"
        assert [(e.type, e.phase.value) for e in recorder.events] == [
            (EventType.LLM, "start"),
            (EventType.LLM, "end"),
        ]
    finally:
        manager.shutdown(timeout=2.0)


# -- nesting with the application's own events, and failures ------------------------------------


def test_query_inside_an_application_event_nests_under_it(run: SimpleNamespace) -> None:
    run.recorder.clear()
    with run.manager.as_trace("agent") as trace:
        with run.manager.event(EventType.AGENT_STEP) as step:
            run.index.as_query_engine().query("What is topic 0 about?")

    assert [t.name for t in run.recorder.traces] == ["agent"]
    (query,) = [e for e in run.recorder.starts() if e.type is EventType.QUERY]
    assert query.trace_id == trace.id
    assert query.parent_id == step.id
    assert trace.trace_map[ROOT] == [step.id]


def test_failed_llama_event_reaches_plugins_with_its_exception() -> None:
    recorder = RecordingPlugin()
    manager = CallbackManager([recorder])
    llama_cm = LlamaCallbackManager([CallbacksHandler(manager)])
    try:
        with pytest.raises(ValueError, match="boom"):
            with llama_cm.as_trace("query"):
                with llama_cm.event(CBEventType.QUERY, payload={LlamaEventPayload.QUERY_STR: "q"}):
                    raise ValueError("boom")
        (query_end,) = recorder.ends(EventType.QUERY)
        assert isinstance(query_end.exception, ValueError)
        # Raised in a trace but outside any event, LlamaIndex starts (and never ends) an
        # EXCEPTION event; no event failed, so the host gets no event for it.
        with pytest.raises(KeyError):
            with llama_cm.as_trace("query"):
                raise KeyError("lost")
        assert recorder.starts(EventType.EXCEPTION) == []
        assert [t.name for t in recorder.traces] == ["query", "query"]
        assert manager.host_stats()["abandoned"] == 0
    finally:
        manager.shutdown(timeout=2.0)


# -- payload readers on LlamaIndex objects -----------------------------------------------------


def test_payload_readers_understand_llama_index_objects() -> None:
    nodes = [
        NodeWithScore(node=TextNode(text="alpha", id_="n1", metadata={"k": 1}), score=0.5),
        NodeWithScore(node=TextNode(text="beta", id_="n2"), score=None),
    ]
    assert payloads.nodes_of(nodes) == [
        payloads.NodeView("n1", "alpha", 0.5, {"k": 1}),
        payloads.NodeView("n2", "beta", None, {}),
    ]
    tool_call = {"id": "c1", "function": {"name": "add", "arguments": "{}"}}
    messages = [
        ChatMessage(role="system", content="sys"),
        ChatMessage(role=MessageRole.USER, content="hi"),
        ChatMessage(role="assistant", content=None, additional_kwargs={"tool_calls": [tool_call]}),
    ]
    assert payloads.messages_of(messages) == [
        payloads.Message("system", "sys"),
        payloads.Message("user", "hi"),
        payloads.Message("assistant", "", (tool_call,)),
    ]
    assert payloads.tool_calls_of({"response": ChatResponse(message=messages[2])}) == [tool_call]

    reply = ChatMessage(role="assistant", content="hello")
    usages = {
        "openai": ChatResponse(
            message=reply, raw={"usage": {"prompt_tokens": 3, "completion_tokens": 4}}
        ),
        "anthropic": ChatResponse(
            message=reply, raw={"usage": {"input_tokens": 3, "output_tokens": 4}}
        ),
        "gemini": ChatResponse(
            message=reply,
            raw={"usage_metadata": {"prompt_token_count": 3, "candidates_token_count": 4}},
        ),
    }
    for source, response in usages.items():
        assert payloads.completion_of({"response": response}) == "hello"
        assert payloads.usage_of({"response": response}) == payloads.TokenUsage(3, 4, 7, source)
    kwargs_usage = ChatResponse(
        message=reply, additional_kwargs={"prompt_tokens": 2, "completion_tokens": 1}
    )
    assert payloads.usage_of({"response": kwargs_usage}) == payloads.TokenUsage(2, 1, 3, "openai")
    completion = CompletionResponse(
        text="done", raw={"usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    )
    assert payloads.completion_of({"completion": completion}) == "done"
    assert payloads.usage_of({"completion": completion}) == payloads.TokenUsage(1, 2, 3, "openai")
    assert payloads.usage_of({"completion": CompletionResponse(text="x")}) is None


def test_text_of_an_empty_llama_response_is_empty() -> None:
    assert payloads.text_of(Response(response=None)) == ""


def test_reading_a_streaming_query_payload_leaves_the_stream_to_the_user(
    run: SimpleNamespace,
) -> None:
    run.recorder.clear()
    response = run.index.as_query_engine(streaming=True).query("What is topic 2 about?")
    assert isinstance(response, StreamingResponse)
    query_end = run.recorder.ends(EventType.QUERY)[0]
    payloads.completion_of(query_end.payload)  # what any plugin does with a query's end
    assert "".join(response.response_gen) != ""
