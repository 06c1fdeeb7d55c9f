"""The event vocabulary: event types, payload keys and the immutable :class:`Event` record."""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "EMPTY_PAYLOAD",
    "INPUT_KEYS",
    "OUTPUT_KEYS",
    "ROOT",
    "Event",
    "EventAbandoned",
    "EventPayload",
    "EventPhase",
    "EventType",
]

ROOT = "root"
"""Parent id of the outermost events of a trace, as in LlamaIndex's ``trace_map``."""


class EventType(str, Enum):
    """What happened. The values are LlamaIndex's ``CBEventType`` values, plus ``chain``."""

    CHUNKING = "chunking"
    NODE_PARSING = "node_parsing"
    EMBEDDING = "embedding"
    LLM = "llm"
    QUERY = "query"
    RETRIEVE = "retrieve"
    SYNTHESIZE = "synthesize"
    TREE = "tree"
    SUB_QUESTION = "sub_question"
    TEMPLATING = "templating"
    FUNCTION_CALL = "function_call"
    RERANKING = "reranking"
    EXCEPTION = "exception"
    AGENT_STEP = "agent_step"
    CHAIN = "chain"
    """A generic step that is none of the above (a LangChain chain, a graph node); not a
    LlamaIndex type. OpenInference calls this span kind CHAIN."""

    def __str__(self) -> str:
        return self.value


class EventPhase(str, Enum):
    """Whether an :class:`Event` opens or closes its span of work."""

    START = "start"
    END = "end"

    def __str__(self) -> str:
        return self.value


class EventPayload(str, Enum):
    """Payload keys. The values are LlamaIndex's ``EventPayload`` values, plus a few more."""

    DOCUMENTS = "documents"
    CHUNKS = "chunks"
    NODES = "nodes"
    PROMPT = "formatted_prompt"
    MESSAGES = "messages"
    COMPLETION = "completion"
    RESPONSE = "response"
    QUERY_STR = "query_str"
    SUB_QUESTION = "sub_question"
    EMBEDDINGS = "embeddings"
    TOP_K = "top_k"
    ADDITIONAL_KWARGS = "additional_kwargs"
    SERIALIZED = "serialized"
    FUNCTION_CALL = "function_call"
    FUNCTION_OUTPUT = "function_call_response"
    TOOL = "tool"
    MODEL_NAME = "model_name"
    TEMPLATE = "template"
    TEMPLATE_VARS = "template_vars"
    SYSTEM_PROMPT = "system_prompt"
    QUERY_WRAPPER_PROMPT = "query_wrapper_prompt"
    EXCEPTION = "exception"
    # Not in LlamaIndex: what production users asked for.
    USAGE = "usage"
    """Token usage as the provider reported it (OpenAI, Anthropic or Gemini shaped)."""
    TOOLS = "tools"
    """Tool (function) definitions offered to the LLM."""
    INVOCATION_PARAMETERS = "invocation_parameters"
    """Model call parameters such as temperature or max_tokens."""
    SCORES = "scores"
    """Scores of the nodes, when they are not carried by the nodes themselves."""
    EMBEDDING_MODEL_NAME = "embedding_model_name"
    REQUEST_ID = "request_id"
    """The provider's id of the request (from its response headers), for support tickets."""
    TIME_TO_FIRST_TOKEN = "time_to_first_token_ns"
    """Nanoseconds from the request to the first streamed token."""
    STREAM_END = "stream_end"
    """How a streamed reply ended: ``exhausted``, ``closed``, ``failed`` or ``abandoned``."""

    def __str__(self) -> str:
        return self.value


INPUT_KEYS: frozenset[str] = frozenset(
    k.value
    for k in (
        EventPayload.DOCUMENTS,
        EventPayload.CHUNKS,
        EventPayload.PROMPT,
        EventPayload.MESSAGES,
        EventPayload.QUERY_STR,
        EventPayload.SUB_QUESTION,
        EventPayload.TEMPLATE,
        EventPayload.TEMPLATE_VARS,
        EventPayload.SYSTEM_PROMPT,
        EventPayload.QUERY_WRAPPER_PROMPT,
        EventPayload.FUNCTION_CALL,
    )
)
"""Payload keys that carry what went into a step; hidden by the ``hide_inputs`` setting."""

OUTPUT_KEYS: frozenset[str] = frozenset(
    k.value
    for k in (
        EventPayload.NODES,
        EventPayload.COMPLETION,
        EventPayload.RESPONSE,
        EventPayload.EMBEDDINGS,
        EventPayload.FUNCTION_OUTPUT,
    )
)
"""Payload keys that carry what came out of a step; hidden by the ``hide_outputs`` setting."""

EMPTY_PAYLOAD: Mapping[str, Any] = MappingProxyType({})

# One clock pair per process lets every event carry only a monotonic reading; wall-clock times
# (for exporters such as OpenTelemetry) are derived from it without a second clock call.
_WALL_ANCHOR_NS = time.time_ns()
_MONO_ANCHOR_NS = time.monotonic_ns()


class EventAbandoned(Exception):
    """Attached to the end of an event that never ended before its trace did."""


class Event(NamedTuple):
    """One immutable record handed to hooks: the start or the end of a span of work.

    It is a tuple underneath, so it is cheap to make and cannot be changed by a handler.
    ``payload`` is a read-only mapping; its keys are plain strings (``EventPayload`` values).
    """

    id: str
    """Unique in the process; the same for the start and the end of one event."""
    type: EventType
    phase: EventPhase
    trace_id: str
    parent_id: str
    """Id of the enclosing event, or :data:`ROOT` for the outermost events of a trace."""
    time_ns: int
    """``time.monotonic_ns()`` when the event started (start) or ended (end)."""
    payload: Mapping[str, Any]
    duration_ns: int | None = None
    """Nanoseconds between start and end; ``None`` on a start event."""
    exception: BaseException | None = None
    """The exception that ended the event, if it failed."""
    thread_id: int = 0
    """``threading.get_ident()`` of the thread that emitted the event."""
    task_name: str | None = None
    """Name of the asyncio task that emitted the event, if any."""
    start: Event | None = None
    """On an end event, the start event it closes (its payload holds the inputs), so a plugin
    never has to pair starts with ends itself; ``None`` on a start event."""

    @property
    def is_start(self) -> bool:
        """True for the start of an event."""
        return self.phase is EventPhase.START

    @property
    def start_time_ns(self) -> int:
        """Monotonic start time, also for an end event."""
        return self.time_ns - (self.duration_ns or 0)

    @property
    def wall_time_ns(self) -> int:
        """Wall-clock time (ns since the epoch) matching :attr:`time_ns`."""
        return _WALL_ANCHOR_NS + (self.time_ns - _MONO_ANCHOR_NS)

    @property
    def start_wall_time_ns(self) -> int:
        """Wall-clock start time (ns since the epoch), also for an end event."""
        return _WALL_ANCHOR_NS + (self.start_time_ns - _MONO_ANCHOR_NS)

    @property
    def failed(self) -> bool:
        """True when the event ended with an exception."""
        return self.exception is not None

    @property
    def full_payload(self) -> Mapping[str, Any]:
        """On an end event, the start's payload updated with this end's payload (inputs and
        outputs together); on a start event, its own payload."""
        start = self.start
        if start is None or not start.payload:
            return self.payload
        if not self.payload:
            return start.payload
        return MappingProxyType({**start.payload, **self.payload})

    def get(self, key: str | EventPayload, default: Any = None) -> Any:
        """Shorthand for ``event.payload.get(key, default)``."""
        return self.payload.get(key, default)


def wall_time_ns(monotonic_ns: int) -> int:
    """Wall-clock ns since the epoch for a ``time.monotonic_ns()`` reading of this process."""
    return _WALL_ANCHOR_NS + (monotonic_ns - _MONO_ANCHOR_NS)
