"""Send what only LlamaIndex's instrumentation API reports into ``callbacks``.

llama-index-core 0.14 has two reporting systems. The legacy callback manager (bridged by
:class:`callbacks.integrations.llama_index.CallbacksHandler`) reports queries, retrieval,
synthesis, templating, embeddings and every LLM call. The instrumentation API
(``llama_index.core.instrumentation``: a root dispatcher with span and event handlers) is the only
one that reports workflow and agent runs (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``),
their steps, tool calls, rerankers such as ``LLMRerank``, output parsers and
``IngestionPipeline.run``. :class:`SpanBridge` turns those spans into host events:

=====================================  ==================================================
span                                   host event
=====================================  ==================================================
``Workflow.run`` (agents too)          ``AGENT_STEP`` (one per run; the run's trace)
a step of a workflow                   ``CHAIN``
``BaseTool.call/acall``                ``FUNCTION_CALL`` (tool, arguments, output, error)
``BaseNodePostprocessor`` methods      ``RERANKING`` (query, nodes in and out, model)
``BaseOutputParser.parse``             ``CHAIN``
``IngestionPipeline.run/arun``         ``CHAIN``
an LLM call, only when the LLM's own   ``LLM`` (ended by LlamaIndex's ``LLM*EndEvent``)
callback manager lacks the bridge
=====================================  ==================================================

Spans of work the legacy system already reports (LLM, embedding, retriever, query engine,
synthesizer calls) make no event, so the host gets that work once, from the legacy system, whose
event ids LlamaIndex's own handlers share. Both systems nest through the host's context: a span's
event becomes the parent of the events started inside it, legacy or not.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.instrumentation.span import SimpleSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.tools.types import BaseTool
from llama_index.core.types import BaseOutputParser

from ..events import EventPayload, EventType

if TYPE_CHECKING:
    from .._manager import CallbackManager
    from .llama_index import LegacyEvents

try:  # the workflows package ships with llama-index-core 0.14; older cores have their own
    from workflows import Workflow
except ImportError:  # pragma: no cover - depends on the installed version
    from llama_index.core.workflow import Workflow  # type: ignore[no-redef]

try:
    from llama_index.core.ingestion import IngestionPipeline
except ImportError:  # pragma: no cover - depends on the installed version
    IngestionPipeline = None  # type: ignore[assignment,misc]

__all__ = ["RerankEvents", "SpanBridge", "snapshot_reply"]

logger = logging.getLogger(__name__)

_P = EventPayload
_TOOL_METHODS = frozenset({"call", "acall", "__call__"})
_RERANK_METHODS = frozenset({"postprocess_nodes", "_postprocess_nodes", "apostprocess_nodes"})
_PIPELINE_METHODS = frozenset({"run", "arun"})
_WORKFLOW_METHODS = frozenset({"run"})
_LLM_METHODS = frozenset(
    {
        "chat",
        "achat",
        "stream_chat",
        "astream_chat",
        "complete",
        "acomplete",
        "stream_complete",
        "astream_complete",
    }
)


_UNDECIDED = object()


def _kind_of(instance: Any, method: str) -> str | None:
    """Which event a span of ``instance.method`` makes, if any."""
    if isinstance(instance, Workflow) and method in _WORKFLOW_METHODS:
        return "run"
    if isinstance(instance, BaseLLM) and method in _LLM_METHODS:
        return "llm"
    if isinstance(instance, BaseTool) and method in _TOOL_METHODS:
        return "tool"
    if isinstance(instance, BaseNodePostprocessor) and method in _RERANK_METHODS:
        return "rerank"
    if isinstance(instance, BaseOutputParser) and method == "parse":
        return "parser"
    if (
        IngestionPipeline is not None
        and isinstance(instance, IngestionPipeline)
        and method in _PIPELINE_METHODS
    ):
        return "pipeline"
    return None


def _llm_payload(llm: Any, method: str, args: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if "chat" in method:
        payload[_P.MESSAGES] = args.get("messages")
    else:
        payload[_P.PROMPT] = args.get("prompt")
    try:
        payload[_P.SERIALIZED] = {"model": llm.metadata.model_name, "class": type(llm).__name__}
    except Exception:  # an LLM whose metadata raises
        payload[_P.SERIALIZED] = {"class": type(llm).__name__}
    return payload


class _Open:
    """A span this bridge made an event of."""

    __slots__ = ("event_id", "event_type", "instance", "end")

    def __init__(self, event_id: str, event_type: EventType, instance: Any) -> None:
        self.event_id = event_id
        self.event_type = event_type
        self.instance = instance
        self.end: dict[str, Any] = {}


def _method(span_id: str) -> str:
    # Span ids are "<Class>.<method>-<uuid4>" or "<qualname>-<uuid4>".
    name = span_id[:-37] if len(span_id) > 37 else span_id
    return name.rsplit(".", 1)[-1]


def _step_name(span_id: str) -> str:
    return span_id[:-37] if len(span_id) > 37 else span_id


def _arguments(bound_args: inspect.BoundArguments) -> dict[str, Any]:
    arguments = dict(bound_args.arguments)
    arguments.pop("self", None)
    extra = arguments.pop("kwargs", None)
    if isinstance(extra, Mapping):
        arguments.update(extra)
    args = arguments.pop("args", None)
    if args:
        arguments["args"] = list(args)
    return arguments


def _query_text(arguments: Mapping[str, Any]) -> Any:
    for key in ("query_str", "query_bundle", "query", "user_msg", "input"):
        value = arguments.get(key)
        if value is not None:
            return getattr(value, "query_str", value)
    return None


class _SpanEvents:
    """The span bridge's work and state, in a plain object: on this path (every LlamaIndex span
    of every query) a pydantic private attribute costs about 1-3 µs per read."""

    def __init__(
        self,
        manager: Callable[[], CallbackManager],
        legacy: LegacyEvents,
        target: CallbackManager | None,
        legacy_sees: Callable[[Any], bool],
    ) -> None:
        self.get_manager = manager
        self.legacy = legacy
        self.target = target
        self.legacy_sees = legacy_sees
        self.events: dict[str, _Open] = {}
        self.workflow_runs: set[str] = set()
        self.guard = threading.Lock()
        self.kinds: dict[tuple[type, str], Any] = {}

    # -- which spans become events -------------------------------------------------------------

    def classify(
        self, span_id: str, instance: Any, parent_span_id: str | None
    ) -> tuple[EventType, Callable[[dict[str, Any]], dict[str, Any]]] | None:
        if instance is None:
            if parent_span_id in self.workflow_runs:
                name = _step_name(span_id)
                return EventType.CHAIN, lambda args: {_P.SERIALIZED: {"name": name, "step": name}}
            return None
        method = _method(span_id)
        # Most spans (LLM, embedding, retriever... calls) make no event: decide once per class
        # and method, since isinstance against LlamaIndex's ABCs is slow on this path.
        key = (type(instance), method)
        kind = self.kinds.get(key, _UNDECIDED)
        if kind is _UNDECIDED:
            kind = self.kinds[key] = _kind_of(instance, method)
        if kind is None:
            return None
        if kind == "llm":
            # The callback manager reports LLM calls (with the ids LlamaIndex's own handlers
            # see): an event is made here only for an LLM whose callback manager lacks the
            # bridge, so no call reaches the host twice.
            if self.legacy_sees(getattr(instance, "callback_manager", None)):
                return None
            return EventType.LLM, lambda args: _llm_payload(instance, method, args)
        if kind == "run":
            return EventType.AGENT_STEP, lambda args: _run_payload(instance, args)
        if kind == "tool":
            return EventType.FUNCTION_CALL, lambda args: _tool_payload(instance, args)
        if kind == "rerank":
            return EventType.RERANKING, lambda args: {
                _P.QUERY_STR: _query_text(args),
                _P.NODES: args.get("nodes"),
                _P.SERIALIZED: {"name": type(instance).__name__},
            }
        if kind == "parser":
            return EventType.CHAIN, lambda args: {
                _P.SERIALIZED: {"name": f"{type(instance).__name__}.parse"},
                _P.COMPLETION: args.get("output"),
            }
        return EventType.CHAIN, lambda args: {
            _P.SERIALIZED: {"name": f"IngestionPipeline.{method}"},
            _P.DOCUMENTS: args.get("documents"),
        }

    # -- spans ---------------------------------------------------------------------------------

    def start(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None,
        parent_span_id: str | None,
    ) -> bool:
        """Start a host event for the span if it reports work the legacy system does not;
        True if it did."""
        try:
            kind = self.classify(id_, instance, parent_span_id)
            if kind is None:
                return False
            event_type, payload_of = kind
            parent = self.events.get(parent_span_id) if parent_span_id else None
            if parent is not None and parent.instance is instance and instance is not None:
                return False  # the same tool/reranker calling its own inner method
            manager = self.get_manager()
            anchor = self.legacy.anchor(manager, leaves_only=True)
            event_id = manager.on_event_start(
                event_type, payload_of(_arguments(bound_args)), parent_id=anchor
            )
            if event_type is EventType.LLM:
                self.legacy.started(event_id, event_type, anchor)  # a leaf: never a parent
            with self.guard:
                self.events[id_] = _Open(event_id, event_type, instance)
                if event_type is EventType.AGENT_STEP:
                    self.workflow_runs.add(id_)
            return True
        except Exception:
            logger.exception("callbacks: starting an event for LlamaIndex span %s failed", id_)
            return False

    def finish(self, id_: str, result: Any, error: BaseException | None) -> bool:
        """End the span's event with its result or the exception that left it (an LLM span's
        event ends with LlamaIndex's end event instead); True if the span made an event."""
        record = self.events.get(id_)
        if record is None:
            return False
        if record.event_type is EventType.LLM and error is None:
            # Its end comes with LlamaIndex's LLM*EndEvent (for a stream, once it is read).
            return True
        with self.guard:
            record = self.events.pop(id_, None)
            self.workflow_runs.discard(id_)
        if record is None:
            return True
        try:
            payload = dict(record.end)
            if error is None and result is not None:
                payload.update(_result_payload(record.event_type, result))
                if record.event_type is EventType.FUNCTION_CALL and getattr(
                    result, "is_error", False
                ):
                    error = getattr(result, "exception", None) or RuntimeError(
                        str(getattr(result, "content", "tool error"))
                    )
            self.get_manager().on_event_end(
                record.event_type, payload, event_id=record.event_id, exception=error
            )
        except Exception:
            logger.exception("callbacks: ending the event of LlamaIndex span %s failed", id_)
        return True

    def end_llm(
        self, span_id: str | None, payload: dict[str, Any], error: BaseException | None
    ) -> None:
        """End the LLM event made for ``span_id`` (from LlamaIndex's end or exception event)."""
        record = self.events.get(span_id) if span_id else None
        if record is None or record.event_type is not EventType.LLM:
            return
        with self.guard:
            if self.events.pop(span_id, None) is None:  # type: ignore[arg-type]
                return
        self.get_manager().on_event_end(
            EventType.LLM, payload or None, event_id=record.event_id, exception=error
        )

    def add_to_end(self, span_id: str | None, payload: Mapping[str, Any]) -> None:
        """Add to the end payload of the event made for ``span_id`` (from instrumentation
        events reported inside it)."""
        record = self.events.get(span_id) if span_id else None
        if record is not None:
            record.end.update(payload)


def _run_payload(workflow: Any, args: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        _P.SERIALIZED: {
            "name": getattr(workflow, "name", None) or type(workflow).__name__,
            "class": type(workflow).__name__,
        }
    }
    message = args.get("user_msg")
    if message is None:
        start = args.get("start_event")
        message = getattr(start, "user_msg", None) if start is not None else None
    if message is not None:
        payload[_P.QUERY_STR] = getattr(message, "content", message)
    return payload


def _tool_payload(tool: Any, args: dict[str, Any]) -> dict[str, Any]:
    metadata = tool.metadata
    call = args.get("input") if set(args) == {"input"} else args
    return {
        _P.TOOL: {
            "name": metadata.name,
            "description": metadata.description,
            "parameters": metadata.get_parameters_dict(),
        },
        _P.FUNCTION_CALL: call,
    }


def _result_payload(event_type: EventType, result: Any) -> dict[str, Any]:
    if event_type is EventType.FUNCTION_CALL:
        return {_P.FUNCTION_OUTPUT: getattr(result, "content", result)}
    if event_type is EventType.RERANKING:
        return {_P.NODES: result}
    if event_type is EventType.AGENT_STEP:
        return {_P.RESPONSE: getattr(result, "response", result)}
    return {_P.RESPONSE: result}


class SpanBridge(BaseSpanHandler[SimpleSpan]):
    """A LlamaIndex span handler that makes host events of agent, workflow, step, tool,
    reranker, output-parser and ingestion spans (see the module docstring)."""

    bridge: Any = Field(default=None, exclude=True)
    """The :class:`_SpanEvents` doing the work (a field, read in ~0.1 µs)."""

    def __init__(
        self,
        manager: Callable[[], CallbackManager],
        legacy: LegacyEvents,
        target: CallbackManager | None = None,
        legacy_sees: Callable[[Any], bool] = lambda callback_manager: False,
    ) -> None:
        super().__init__()
        self.bridge = _SpanEvents(manager, legacy, target, legacy_sees)

    @property
    def target(self) -> CallbackManager | None:
        """The manager given to ``install()`` (``None``: the process-wide one)."""
        return self.bridge.target  # type: ignore[no-any-return]

    @classmethod
    def class_name(cls) -> str:
        return "CallbacksSpanBridge"

    # -- span handler interface: LlamaIndex calls these for every span -------------------------

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start a host event for the spans that report work the legacy system does not."""
        if self.bridge.start(id_, bound_args, instance, parent_id):
            with self.lock:
                self.open_spans[id_] = SimpleSpan(id_=id_, parent_id=parent_id, tags=tags or {})

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        """End the span's event with its result."""
        if self.bridge.finish(id_, result, None):
            self._close(id_)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        """End the span's event with the exception that left it."""
        if self.bridge.finish(id_, None, err):
            self._close(id_)

    def _close(self, id_: str) -> None:
        with self.lock:
            self.open_spans.pop(id_, None)

    # The abstract hooks of BaseSpanHandler, for callers that use them directly.

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        """Start the span's host event, if it makes one; the span, or ``None``."""
        if not self.bridge.start(id_, bound_args, instance, parent_span_id):
            return None
        return SimpleSpan(id_=id_, parent_id=parent_span_id, tags=tags or {})

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        """End the span's event with its result."""
        return self.open_spans.get(id_) if self.bridge.finish(id_, result, None) else None

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> SimpleSpan | None:
        """End the span's event with the exception that left it."""
        return self.open_spans.get(id_) if self.bridge.finish(id_, None, err) else None

    def end_llm(
        self, span_id: str | None, payload: dict[str, Any], error: BaseException | None
    ) -> None:
        """End the LLM event made for ``span_id`` (from LlamaIndex's end or exception event)."""
        self.bridge.end_llm(span_id, payload, error)

    def add_to_end(self, span_id: str | None, payload: Mapping[str, Any]) -> None:
        """Add to the end payload of the event made for ``span_id``."""
        self.bridge.add_to_end(span_id, payload)


def snapshot_reply(response: Any) -> Any:
    """An LLM reply (``ChatResponse`` or ``CompletionResponse``) as it is now: agents edit it in
    place after the call (``ReActAgent`` strips "Answer:" from the message's text block), and
    background plugins read the payload later."""
    message = getattr(response, "message", None)
    if message is not None and hasattr(response, "model_copy"):
        return response.model_copy(update={"message": message.model_copy(deep=True)})
    return response.model_copy() if hasattr(response, "model_copy") else response


class RerankEvents(BaseEventHandler):
    """A LlamaIndex event handler that adds what rerank events tell (model, top_n) to the
    ``RERANKING`` event of the span they are reported in, and ends the LLM events made from
    spans (for LLMs whose callback manager lacks the bridge) with their reply."""

    span_bridge: Any = Field(default=None, exclude=True)
    """The :class:`SpanBridge` whose events this handler completes (a field: read per event)."""

    def __init__(self, spans: SpanBridge) -> None:
        super().__init__()
        self.span_bridge = spans

    @property
    def spans(self) -> SpanBridge:
        """The span handler whose events this handler adds to."""
        return self.span_bridge  # type: ignore[no-any-return]

    @classmethod
    def class_name(cls) -> str:
        return "CallbacksRerankEvents"

    def handle(self, event: Any, **kwargs: Any) -> None:
        """Record the reranker's model and ``top_n`` on its event."""
        bridge: _SpanEvents = self.span_bridge.bridge
        # Every instrumentation event of every query comes here; only those reported inside a
        # span this bridge made an event of concern it.
        if not bridge.events or getattr(event, "span_id", None) not in bridge.events:
            return
        try:
            if isinstance(event, ReRankStartEvent):
                bridge.add_to_end(
                    event.span_id, {_P.MODEL_NAME: event.model_name, _P.TOP_K: event.top_n}
                )
            elif isinstance(event, ReRankEndEvent):
                bridge.add_to_end(event.span_id, {_P.NODES: event.nodes})
            elif isinstance(event, LLMChatEndEvent):
                bridge.end_llm(
                    event.span_id,
                    {_P.MESSAGES: event.messages, _P.RESPONSE: snapshot_reply(event.response)},
                    None,
                )
            elif isinstance(event, LLMCompletionEndEvent):
                bridge.end_llm(
                    event.span_id,
                    {_P.PROMPT: event.prompt, _P.COMPLETION: snapshot_reply(event.response)},
                    None,
                )
            elif isinstance(event, ExceptionEvent):
                bridge.end_llm(event.span_id, {}, event.exception)
        except Exception:
            logger.exception("callbacks: reading a LlamaIndex %s failed", type(event).__name__)
