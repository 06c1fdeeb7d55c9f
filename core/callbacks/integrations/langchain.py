"""Send LangChain's and LangGraph's runs into ``callbacks``.

One line routes every run of a LangChain or LangGraph app to the installed ``callbacks``
plugins::

    import callbacks.integrations.langchain as callbacks_langchain
    callbacks_langchain.install()     # every run in this process reports; no callbacks=[...]

or attach a handler to one call::

    chain.invoke(inputs, config={"callbacks": [CallbacksHandler(manager)]})

Each root run (one invoked with no parent run) is one host trace named after the run; nested runs
nest by LangChain's ``parent_run_id``, so ``trace.trace_map`` has the shape of LangChain's run
tree. Chat models and LLMs become ``llm`` events, retrievers ``retrieve``, tools
``function_call``, prompt templates ``templating``, LangGraph agent nodes and agent actions
``agent_step``, and any other chain or graph node ``chain``. Payload values stay LangChain objects
(``BaseMessage``, ``AIMessage``, ``Document``, ``ToolMessage``...), keyed by ``EventPayload``
strings; read them with :mod:`callbacks.payloads`.

The host's position (trace, parent event) is kept per root run, not taken from the context the
callback happens to run in, so runs that LangChain starts in its thread pools, in ``abatch``
tasks or in ``astream_events`` join the right trace. A root run started inside a trace the
application opened (``manager.as_trace(...)``) joins that trace under its current event.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers.context import register_configure_hook
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "callbacks.integrations.langchain needs langchain-core; "
        "install it with: pip install 'callbacks-core[langchain]'"
    ) from error

from .._manager import CallbackManager
from .._process import get_manager
from ..events import EventPayload, EventType

__all__ = ["AGENT_NODES", "CallbacksHandler", "install", "uninstall"]

logger = logging.getLogger(__name__)

AGENT_NODES: frozenset[str] = frozenset({"agent", "model"})
"""Names of LangGraph nodes reported as ``agent_step`` (the model-calling node of
``create_react_agent`` and of ``langchain.agents.create_agent``); other nodes are ``chain``."""

TIME_TO_FIRST_TOKEN = "time_to_first_token_ns"
"""Key, in a streamed LLM end's ``additional_kwargs``, of the nanoseconds from the call's start
to its first streamed token."""

STREAM_CHUNKS = "stream_chunks"
"""Key, in a streamed LLM end's ``additional_kwargs``, of how many chunks were streamed."""

_MAX_RUNS = 100_000
_P = EventPayload
_CHAIN_TYPES = {"prompt": EventType.TEMPLATING}


class _Tree:
    """One root run's tree: the context its trace lives in, and how many of its runs are open.

    LangChain can end a root run before its children (closing a stream early ends the outer
    generator first), so the trace ends when the root and every run under it have ended."""

    __slots__ = ("context", "lock", "open", "opens_trace", "root_ended", "sampled")

    def __init__(self, context: contextvars.Context, opens_trace: bool, sampled: bool) -> None:
        # A copy of the context in which the root run's trace was started: every host call for
        # this tree runs in a copy of it, so the tree lands in its own trace whichever thread or
        # task LangChain calls back from.
        self.context = context
        self.opens_trace = opens_trace
        self.sampled = sampled
        self.lock = threading.Lock()
        self.open = 0
        self.root_ended = False


class _Run:
    """What the handler keeps about one open LangChain run."""

    __slots__ = (
        "chunks",
        "event_id",
        "extra",
        "first_token_ns",
        "manager",
        "root",
        "start_ns",
        "tree",
        "type",
    )

    def __init__(
        self,
        manager: CallbackManager,
        tree: _Tree,
        event_type: EventType,
        root: bool,
        extra: dict[str, Any],
    ) -> None:
        self.manager = manager
        self.tree = tree
        self.type = event_type
        self.root = root
        self.extra = extra
        self.event_id = ""
        self.start_ns = time.monotonic_ns()
        self.first_token_ns: int | None = None
        self.chunks = 0


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    """The run's name as LangChain's tracers compute it."""
    name = kwargs.get("name")
    if name:
        return str(name)
    if isinstance(serialized, Mapping):
        if serialized.get("name"):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, Sequence) and ids and not isinstance(ids, str):
            return str(ids[-1])
    return "Unnamed"


def _extra(run_type: str, name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {"run_type": run_type, "run_name": name}
    if kwargs.get("tags"):
        extra["tags"] = list(kwargs["tags"])
    if kwargs.get("metadata"):
        extra["metadata"] = dict(kwargs["metadata"])
    return extra


def _template_text(serialized: Any) -> str | None:
    """The template strings found in a serialized prompt template, one per line."""
    found: list[str] = []

    def walk(value: Any, depth: int) -> None:
        if depth > 8:
            return
        if isinstance(value, Mapping):
            template = value.get("template")
            if isinstance(template, str):
                found.append(template)
            for key, inner in value.items():
                if key != "template":
                    walk(inner, depth + 1)
        elif isinstance(value, (list, tuple)):
            for inner in value:
                walk(inner, depth + 1)

    walk(serialized, 0)
    return "\n".join(found) if found else None


def _model_name(params: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> Any:
    for source, keys in (
        (params, ("model", "model_name", "model_id", "deployment_name")),
        (metadata, ("ls_model_name",)),
    ):
        if isinstance(source, Mapping):
            for key in keys:
                if source.get(key):
                    return source[key]
    return None


def _llm_end_payload(response: Any) -> dict[str, Any]:
    """Completion or reply message, usage and model name from an ``LLMResult``."""
    payload: dict[str, Any] = {}
    generations = getattr(response, "generations", None) or []
    generation = generations[0][0] if generations and generations[0] else None
    message = getattr(generation, "message", None)
    if message is not None:
        payload[_P.RESPONSE] = message
    elif generation is not None:
        payload[_P.COMPLETION] = getattr(generation, "text", "")
    usage = getattr(message, "usage_metadata", None) if message is not None else None
    llm_output = getattr(response, "llm_output", None) or {}
    if not usage and isinstance(llm_output, Mapping):
        usage = llm_output.get("token_usage") or llm_output.get("usage")
    if usage:
        payload[_P.USAGE] = usage
    metadata = getattr(message, "response_metadata", None) if message is not None else None
    model = None
    if isinstance(metadata, Mapping):
        model = metadata.get("model_name") or metadata.get("model")
    if not model and isinstance(llm_output, Mapping):
        model = llm_output.get("model_name") or llm_output.get("model")
    if model:
        payload[_P.MODEL_NAME] = model
    return payload


class CallbacksHandler(BaseCallbackHandler):
    """A LangChain callback handler that reports every run to a :class:`callbacks.CallbackManager`.

    ``manager=None`` follows the process-wide manager (:func:`callbacks.get_manager`), resolved
    when each root run starts. It works for sync and async runs alike: LangChain calls it inline
    (``run_inline``), never through its thread pool, so it sees runs in the order they happen.
    """

    run_inline = True
    raise_error = False

    def __init__(self, manager: CallbackManager | None = None) -> None:
        super().__init__()
        self._manager = manager
        self._runs: dict[UUID, _Run] = {}
        self._enabled = True

    @property
    def manager(self) -> CallbackManager:
        """The :class:`callbacks.CallbackManager` runs go to."""
        return self._manager if self._manager is not None else get_manager()

    # LangChain skips a handler whose ignore_* flag is set, so an uninstalled handler that
    # LangChain still holds costs nothing per event once its open runs have ended.
    @property
    def ignore_llm(self) -> bool:
        return not self._enabled and not self._runs

    @property
    def ignore_chat_model(self) -> bool:
        return not self._enabled and not self._runs

    @property
    def ignore_chain(self) -> bool:
        return not self._enabled and not self._runs

    @property
    def ignore_agent(self) -> bool:
        return not self._enabled and not self._runs

    @property
    def ignore_retriever(self) -> bool:
        return not self._enabled and not self._runs

    @property
    def ignore_retry(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    # -- the two operations everything maps to -------------------------------------------------

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        event_type: EventType,
        name: str,
        payload: dict[str, Any],
        extra: dict[str, Any],
    ) -> None:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is None:
            if not self._enabled:
                return  # uninstalled: only runs already started go on reporting
            manager = self.manager
            context = contextvars.copy_context()
            # Inside a trace the application opened, join it (under its current event) and
            # leave ending it to the application; otherwise this run opens and ends its own.
            trace = context.run(manager.current_trace)
            opens = trace is None
            if trace is None:
                trace = context.run(manager.start_trace, name)
            run = _Run(manager, _Tree(context, opens, trace.sampled), event_type, True, extra)
            parent_event = None  # the trace's root, or the application's current event
        else:
            run = _Run(parent.manager, parent.tree, event_type, False, extra)
            parent_event = parent.event_id
        tree = run.tree
        with tree.lock:
            tree.open += 1
        if tree.sampled:
            if extra:
                payload[_P.ADDITIONAL_KWARGS] = extra
            run.event_id = tree.context.copy().run(
                run.manager.on_event_start,
                event_type,
                payload,
                event_id=str(run_id),
                parent_id=parent_event,
            )
        runs = self._runs
        runs[run_id] = run
        if len(runs) > _MAX_RUNS:
            # LangChain never ended these (an abandoned stream); the host abandons their events
            # when their traces end or its own bound is reached.
            runs.pop(next(iter(runs)), None)

    def _end(
        self,
        run_id: UUID,
        payload: dict[str, Any] | None,
        exception: BaseException | None = None,
    ) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        manager = run.manager
        tree = run.tree
        if tree.sampled:
            manager.on_event_end(run.type, payload, event_id=run.event_id, exception=exception)
        with tree.lock:
            tree.open -= 1
            if run.root:
                tree.root_ended = True
            last = tree.root_ended and tree.open == 0
        if last and tree.opens_trace:
            tree.context.copy().run(manager.end_trace)

    def _safely(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("callbacks: reporting a LangChain %s failed", what)

    # -- chains, graph nodes, prompt templates -------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A chain, graph, graph node, prompt template or output parser started."""
        self._safely(
            "chain start", self._chain_start, serialized, inputs, run_id, parent_run_id, kwargs
        )

    def _chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        kwargs: dict[str, Any],
    ) -> None:
        name = _run_name(serialized, kwargs)
        run_type = kwargs.get("run_type") or "chain"
        event_type = _CHAIN_TYPES.get(run_type, EventType.CHAIN)
        tags = kwargs.get("tags") or ()
        if name in AGENT_NODES and any(str(t).startswith("graph:step:") for t in tags):
            event_type = EventType.AGENT_STEP
        payload: dict[str, Any] = {}
        if event_type is EventType.TEMPLATING:
            template = _template_text(serialized)
            if template is not None:
                payload[_P.TEMPLATE] = template
            payload[_P.TEMPLATE_VARS] = inputs
        elif inputs is not None and inputs != "":
            payload[_P.QUERY_STR] = inputs
        self._start(
            run_id, parent_run_id, event_type, name, payload, _extra(run_type, name, kwargs)
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain ended; its outputs are the end's ``response``."""
        payload: dict[str, Any] = {}
        run = self._runs.get(run_id)
        if run is not None and run.type is EventType.TEMPLATING:
            to_string = getattr(outputs, "to_string", None)
            payload[_P.RESPONSE] = to_string() if callable(to_string) else outputs
        else:
            payload[_P.RESPONSE] = outputs
        inputs = kwargs.get("inputs")
        if inputs is not None and inputs != "" and run is not None:
            # Streamed chains learn their input only at the end.
            key = _P.TEMPLATE_VARS if run.type is EventType.TEMPLATING else _P.QUERY_STR
            payload[key] = inputs
        self._safely("chain end", self._end, run_id, payload)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain raised (or an exception propagated through it)."""
        self._safely("chain error", self._end, run_id, None, error)

    def on_agent_action(
        self, action: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """An agent chose a tool: an instant ``agent_step`` under the agent's run."""
        payload = {
            _P.FUNCTION_CALL: {
                "name": getattr(action, "tool", None),
                "arguments": getattr(action, "tool_input", None),
            },
            _P.TOOL: getattr(action, "tool", None),
            _P.ADDITIONAL_KWARGS: {"log": getattr(action, "log", None)},
        }
        self._safely("agent action", self._instant, run_id, payload, None)

    def on_agent_finish(
        self, finish: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """An agent gave its final answer: an instant ``agent_step`` under the agent's run."""
        payload = {
            _P.ADDITIONAL_KWARGS: {"log": getattr(finish, "log", None)},
        }
        end = {_P.RESPONSE: getattr(finish, "return_values", None)}
        self._safely("agent finish", self._instant, run_id, payload, end)

    def _instant(self, run_id: UUID, payload: dict[str, Any], end: dict[str, Any] | None) -> None:
        run = self._runs.get(run_id)
        if run is None or not run.tree.sampled:
            return
        manager = run.manager
        event_id = run.tree.context.copy().run(
            manager.on_event_start, EventType.AGENT_STEP, payload, parent_id=run.event_id
        )
        manager.on_event_end(EventType.AGENT_STEP, end, event_id=event_id)

    # -- models --------------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model was called with ``messages``."""
        first = messages[0] if messages else []
        self._safely(
            "chat model start",
            self._llm_start,
            serialized,
            {_P.MESSAGES: first},
            run_id,
            parent_run_id,
            kwargs,
            "chat_model",
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A (completion) LLM was called with ``prompts``."""
        prompt = prompts[0] if len(prompts) == 1 else "\n".join(prompts)
        self._safely(
            "llm start",
            self._llm_start,
            serialized,
            {_P.PROMPT: prompt},
            run_id,
            parent_run_id,
            kwargs,
            "llm",
        )

    def _llm_start(
        self,
        serialized: dict[str, Any] | None,
        payload: dict[str, Any],
        run_id: UUID,
        parent_run_id: UUID | None,
        kwargs: dict[str, Any],
        run_type: str,
    ) -> None:
        name = _run_name(serialized, kwargs)
        params = kwargs.get("invocation_params")
        metadata = kwargs.get("metadata")
        model = _model_name(params, metadata)
        if model:
            payload[_P.MODEL_NAME] = model
        if isinstance(params, Mapping):
            params = dict(params)
            tools = params.pop("tools", None)
            if tools:
                payload[_P.TOOLS] = tools
            payload[_P.INVOCATION_PARAMETERS] = params
        if serialized:
            payload[_P.SERIALIZED] = serialized
        self._start(
            run_id, parent_run_id, EventType.LLM, name, payload, _extra(run_type, name, kwargs)
        )

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A streamed chunk arrived: the first one times the time to first token."""
        run = self._runs.get(run_id)
        if run is not None:
            if run.first_token_ns is None:
                run.first_token_ns = time.monotonic_ns()
            run.chunks += 1

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The model answered: the reply (with its tool calls), usage and model name."""
        self._safely("llm end", self._llm_end, response, run_id, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The model call failed (with what was streamed before, when LangChain has it)."""
        self._safely("llm error", self._llm_end, kwargs.get("response"), run_id, error)

    def _llm_end(self, response: Any, run_id: UUID, error: BaseException | None) -> None:
        payload = _llm_end_payload(response) if response is not None else {}
        run = self._runs.get(run_id)
        if run is not None and run.first_token_ns is not None:
            payload[_P.ADDITIONAL_KWARGS] = {
                **run.extra,
                TIME_TO_FIRST_TOKEN: run.first_token_ns - run.start_ns,
                STREAM_CHUNKS: run.chunks,
            }
        self._end(run_id, payload, error)

    # -- retrievers and tools ------------------------------------------------------------------

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A retriever was asked ``query``."""
        name = _run_name(serialized, kwargs) if kwargs.get("name") or serialized else "Retriever"
        self._safely(
            "retriever start",
            self._start,
            run_id,
            parent_run_id,
            EventType.RETRIEVE,
            name,
            {_P.QUERY_STR: query},
            _extra("retriever", name, kwargs),
        )

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The retriever returned ``documents`` (the end's ``nodes``)."""
        self._safely("retriever end", self._end, run_id, {_P.NODES: list(documents)})

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The retriever raised."""
        self._safely("retriever error", self._end, run_id, None, error)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool was called: its name and description, and its input."""
        name = _run_name(serialized, kwargs)
        tool: dict[str, Any] = {"name": name}
        if isinstance(serialized, Mapping) and serialized.get("description"):
            tool["description"] = serialized["description"]
        payload: dict[str, Any] = {
            _P.TOOL: tool,
            _P.FUNCTION_CALL: inputs if inputs is not None else input_str,
        }
        self._safely(
            "tool start",
            self._start,
            run_id,
            parent_run_id,
            EventType.FUNCTION_CALL,
            name,
            payload,
            _extra("tool", name, kwargs),
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The tool returned ``output`` (the end's ``function_call_response``)."""
        self._safely("tool end", self._end, run_id, {_P.FUNCTION_OUTPUT: output})

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The tool raised."""
        self._safely("tool error", self._end, run_id, None, error)


# -- process-wide installation ---------------------------------------------------------------

_lock = threading.Lock()
_installed: dict[int | None, CallbacksHandler] = {}


def _key(manager: CallbackManager | None) -> int | None:
    return None if manager is None else id(manager)


def install(manager: CallbackManager | None = None) -> CallbacksHandler:
    """Report every LangChain and LangGraph run in this process to ``manager``; returns the
    handler. Idempotent: a second call for the same manager returns the handler installed.

    ``manager=None`` means the process-wide :func:`callbacks.get_manager` (loaded now, so a bad
    configuration raises here). It uses LangChain's configure hook on a context variable whose
    default is the handler, so every thread and task sees it and no ``callbacks=[...]`` is needed.
    """
    if manager is None:
        get_manager()
    with _lock:
        handler = _installed.get(_key(manager))
        if handler is not None and (manager is None or handler._manager is manager):
            handler._enabled = True
            return handler
        handler = CallbacksHandler(manager)
        # LangChain has no way to unregister a hook: uninstall() disables the handler instead,
        # and install() enables it again, so each manager registers one hook at most.
        var: contextvars.ContextVar[CallbacksHandler | None] = contextvars.ContextVar(
            f"callbacks_langchain_{id(handler):x}", default=handler
        )
        register_configure_hook(var, True)
        _installed[_key(manager)] = handler
        return handler


def uninstall(manager: CallbackManager | None = None) -> bool:
    """Stop reporting LangChain runs to ``manager``; True if :func:`install` had been called
    for it. Runs already started still end in their traces."""
    with _lock:
        handler = _installed.get(_key(manager))
        if handler is None or not handler._enabled:
            return False
        if manager is not None and handler._manager is not manager:
            return False
        handler._enabled = False
        return True
