"""Test helpers: a traced pipeline that emits all 14 event types, and a loopback OTLP receiver."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from callbacks import CallbackManager, Event, EventPayload, EventType, Trace, hookimpl
from callbacks_openinference import OpenInferencePlugin, using_attributes

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
VECTOR = [0.25, -0.5, 1.0]


def run_pipeline(cm: CallbackManager) -> str:
    """A RAG query plus an agent step with a tool call, one failing and one abandoned event:
    every one of the 15 event types, nested. Returns the trace id."""
    with using_attributes(
        session_id="s-1", user_id="u-1", metadata={"team": "qa"}, tags=["t1", "t2"]
    ):
        with cm.as_trace("rag-query") as trace:
            with cm.event(
                EventType.NODE_PARSING, {EventPayload.DOCUMENTS: ["Doc one. Doc two."]}
            ) as ev:
                with cm.event(
                    EventType.CHUNKING, {EventPayload.CHUNKS: ["Doc one. Doc two."]}
                ) as chunk:
                    chunk.on_end({EventPayload.CHUNKS: ["Doc one.", "Doc two."]})
                ev.on_end(
                    {
                        EventPayload.NODES: [
                            {"id": "n1", "text": "Doc one."},
                            {"id": "n2", "text": "Doc two."},
                        ]
                    }
                )
            with cm.event(EventType.QUERY, {EventPayload.QUERY_STR: "What is one?"}) as query:
                with cm.event(EventType.CHAIN, {EventPayload.QUERY_STR: "What is one?"}) as chain:
                    chain.on_end({EventPayload.RESPONSE: "one"})
                with cm.event(
                    EventType.RETRIEVE, {EventPayload.QUERY_STR: "What is one?"}
                ) as retrieve:
                    with cm.event(
                        EventType.EMBEDDING, {EventPayload.EMBEDDING_MODEL_NAME: "stub-embed"}
                    ) as emb:
                        emb.on_end(
                            {
                                EventPayload.CHUNKS: ["What is one?"],
                                EventPayload.EMBEDDINGS: [VECTOR],
                            }
                        )
                    retrieve.on_end(
                        {
                            EventPayload.NODES: [
                                {
                                    "id": "n1",
                                    "text": "Doc one.",
                                    "score": 0.9,
                                    "metadata": {"file": "a.txt"},
                                },
                                {"id": "n2", "text": "Doc two.", "score": 0.4},
                            ]
                        }
                    )
                with cm.event(
                    EventType.RERANKING,
                    {
                        EventPayload.QUERY_STR: "What is one?",
                        EventPayload.TOP_K: 1,
                        EventPayload.MODEL_NAME: "stub-rerank",
                        EventPayload.NODES: [
                            {"id": "n1", "text": "Doc one.", "score": 0.9},
                            {"id": "n2", "text": "Doc two.", "score": 0.4},
                        ],
                    },
                ) as rerank:
                    rerank.on_end(
                        {EventPayload.NODES: [{"id": "n1", "text": "Doc one.", "score": 0.99}]}
                    )
                with cm.event(
                    EventType.SYNTHESIZE, {EventPayload.QUERY_STR: "What is one?"}
                ) as synth:
                    with cm.event(
                        EventType.TEMPLATING,
                        {
                            EventPayload.TEMPLATE: "Context: {context}\nQ: {query}",
                            EventPayload.TEMPLATE_VARS: {
                                "context": "Doc one.",
                                "query": "What is one?",
                            },
                        },
                    ):
                        pass
                    with cm.event(
                        EventType.LLM,
                        {
                            EventPayload.MESSAGES: [
                                {"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Context: Doc one.\nQ: What is one?"},
                            ],
                            EventPayload.SERIALIZED: {
                                "model": "stub-llm",
                                "temperature": 0.1,
                                "max_tokens": 64,
                            },
                        },
                    ) as llm:
                        llm.on_end(
                            {
                                EventPayload.RESPONSE: {
                                    "message": {"role": "assistant", "content": "One is a doc."}
                                },
                                EventPayload.USAGE: {
                                    "prompt_tokens": 12,
                                    "completion_tokens": 4,
                                    "total_tokens": 16,
                                },
                            }
                        )
                    with cm.event(EventType.TREE, {EventPayload.CHUNKS: ["One is a doc."]}) as tree:
                        tree.on_end({EventPayload.RESPONSE: "One is a doc."})
                    synth.on_end({EventPayload.RESPONSE: "One is a doc."})
                with cm.event(
                    EventType.SUB_QUESTION,
                    {EventPayload.SUB_QUESTION: {"sub_q": {"sub_question": "Which doc?"}}},
                ) as sub:
                    sub.on_end(
                        {
                            EventPayload.SUB_QUESTION: {
                                "sub_q": {"sub_question": "Which doc?"},
                                "answer": "Doc one.",
                            }
                        }
                    )
                query.on_end({EventPayload.RESPONSE: "One is a doc."})
            with cm.event(
                EventType.AGENT_STEP,
                {EventPayload.MESSAGES: [{"role": "user", "content": "Add 1 and 2"}]},
            ) as step:
                with cm.event(
                    EventType.FUNCTION_CALL,
                    {
                        EventPayload.FUNCTION_CALL: {"a": 1, "b": 2},
                        EventPayload.TOOL: {
                            "name": "add",
                            "description": "Add two integers.",
                            "parameters": SCHEMA,
                        },
                    },
                ) as call:
                    call.on_end({EventPayload.FUNCTION_OUTPUT: "3"})
                step.on_end({EventPayload.RESPONSE: "1 + 2 = 3"})
            with cm.event(EventType.EXCEPTION, {EventPayload.EXCEPTION: KeyError("missing")}):
                pass
            try:
                with cm.event(EventType.CHUNKING, {EventPayload.CHUNKS: ["bad"]}):
                    raise ValueError("chunker broke")
            except ValueError:
                pass
            cm.on_event_start(EventType.TREE, {EventPayload.CHUNKS: ["never finished"]})
    return trace.id


class Recorder:
    """Keeps every event and trace exactly as plugins receive them."""

    callbacks_name = "recorder"
    callbacks_delivery = "inline"

    def __init__(self) -> None:
        self.starts: dict[str, Event] = {}
        self.ends: dict[str, Event] = {}
        self.traces: list[Trace] = []

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        self.starts[event.id] = event

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        self.ends[event.id] = event

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        self.traces.append(trace)


def memory_manager(*extra_plugins: object, **config: Any) -> CallbackManager:
    """A manager with the OpenInference plugin exporting to memory (plus ``extra_plugins``)."""
    return CallbackManager(
        plugins=[OpenInferencePlugin(), *extra_plugins],
        # trace_wait 0: the pipeline's never-ended event is abandoned when its trace block ends.
        config={"openinference": {"exporter": "memory", **config}, "trace_wait": 0},
    )


def plugin_of(cm: CallbackManager) -> OpenInferencePlugin:
    plugin = cm.get_plugin("openinference")
    assert isinstance(plugin, OpenInferencePlugin)
    return plugin


class OTLPReceiver:
    """A loopback OTLP/HTTP collector: decodes each ``ExportTraceServiceRequest``."""

    def __init__(self, max_body: int | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], ExportTraceServiceRequest]] = []
        self.bodies: list[bytes] = []
        """Each request's body as received."""
        self.rejected = 0
        """Requests refused with 413 because their body exceeded ``max_body`` bytes."""
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                if max_body is not None and length > max_body:
                    # As a collector with a body limit does: refuse without reading it all.
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    with receiver._changed:
                        receiver.rejected += 1
                    return
                body = self.rfile.read(length)
                with receiver._changed:
                    receiver.bodies.append(body)  # before the reply: the sender may look next
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                with receiver._changed:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append((self.path, headers, request))
                    receiver._changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def spans(self) -> list[Any]:
        with self._changed:
            return [
                span
                for _, _, request in self.requests
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

    def wait_for_spans(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: (
                    sum(
                        len(ss.spans)
                        for _, _, r in self.requests
                        for rs in r.resource_spans
                        for ss in rs.scope_spans
                    )
                    >= count
                ),
                timeout,
            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
