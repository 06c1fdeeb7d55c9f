"""Turn event payloads into OpenInference span attributes (before masking).

Every function here is pure: payloads in, a flat ``{attribute: value}`` dict out. Values are
OpenTelemetry attribute values, or zero-argument callables producing one for values that are
costly to build and may be masked anyway (embedding vectors): OpenInference's ``TraceConfig.mask``
resolves them only when they are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from openinference.semconv.trace import (
    DocumentAttributes,
    EmbeddingAttributes,
    MessageAttributes,
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    RerankerAttributes,
    SpanAttributes,
    ToolAttributes,
    ToolCallAttributes,
)

from callbacks import payloads
from callbacks.events import Event, EventPayload, EventType
from callbacks.kinds import span_kind as _kind_of
from callbacks.tokencount import llm_token_count

__all__ = [
    "TOKEN_COUNT_SOURCE",
    "AttributeInput",
    "Attributes",
    "event_attributes",
    "span_kind",
    "template_attributes",
    "tool_definition",
    "trace_attributes",
]

AttributeInput = str | bool | int | float | tuple[Any, ...] | Callable[[], Any]
Attributes = dict[str, AttributeInput]

TOKEN_COUNT_SOURCE = "llm.token_count.source"
"""Where the ``llm.token_count.*`` figures come from: ``provider`` (reported by the provider) or
``estimate`` (counted with tiktoken); not part of the OpenInference conventions."""

_TEXT = OpenInferenceMimeTypeValues.TEXT.value
_JSON = OpenInferenceMimeTypeValues.JSON.value
_EMPTY: Mapping[str, Any] = {}


def span_kind(event_type: EventType) -> str:
    """The ``openinference.span.kind`` of an event type (the host's table,
    :mod:`callbacks.kinds`: CHAIN for anything not listed)."""
    kind = _SPAN_KINDS.get(event_type)
    if kind is None:
        kind = _SPAN_KINDS[event_type] = OpenInferenceSpanKindValues(
            _kind_of(event_type).value
        ).value
    return kind


_SPAN_KINDS: dict[EventType, str] = {}


# json.dumps(value, ensure_ascii=False, default=str), without a new encoder per call.
_JSON_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str).encode


def _dumps(value: Any) -> str:
    return _JSON_ENCODE(payloads.to_jsonable(value))


class _Payload:
    """The start and end payloads of one event, read together (start first for inputs)."""

    __slots__ = ("_json", "_nodes", "end", "end_event", "start")

    def __init__(
        self,
        start: Mapping[str, Any] | None,
        end: Mapping[str, Any] | None,
        end_event: Event | None = None,
    ) -> None:
        self.start = start if start is not None else _EMPTY
        self.end = end if end is not None else _EMPTY
        self.end_event = end_event
        # Keyed by id(), holding the value: an id is not reused while its value is alive.
        self._nodes: dict[tuple[int, int], tuple[Any, Any, list[payloads.NodeView]]] = {}
        self._json: dict[int, tuple[Any, str]] = {}

    def input(self, key: str) -> Any:
        value = self.start.get(key)
        return value if value is not None else self.end.get(key)

    def output(self, key: str) -> Any:
        return self.end.get(key)

    def merged(self) -> dict[str, Any]:
        return {**self.start, **self.end}

    def dumps(self, value: Any) -> str:
        """``_dumps(value)``, once per event (a templating event's variables are both its
        ``input.value`` and its ``llm.prompt_template.variables``)."""
        known = self._json.get(id(value))
        if known is None:
            known = self._json[id(value)] = (value, _dumps(value))
        return known[1]

    def nodes(self, value: Any, scores: Any = None) -> list[payloads.NodeView]:
        """``payloads.nodes_of(value, scores)``, read once per event (a retriever's nodes give
        both ``output.value`` and ``retrieval.documents``)."""
        key = (id(value), id(scores))
        known = self._nodes.get(key)
        if known is None:
            known = self._nodes[key] = (value, scores, payloads.nodes_of(value, scores))
        return known[2]


def _put_value(out: Attributes, keys: tuple[str, str], value: Any, p: _Payload) -> None:
    """``keys`` = (``input.value``, ``input.mime_type``) or the output's."""
    if value is None:
        return
    if isinstance(value, str):
        out[keys[0]], out[keys[1]] = value, _TEXT
    elif isinstance(value, bytes):
        out[keys[0]], out[keys[1]] = payloads.text_of(value), _TEXT
    else:
        out[keys[0]], out[keys[1]] = p.dumps(value), _JSON


_INPUT = (SpanAttributes.INPUT_VALUE, SpanAttributes.INPUT_MIME_TYPE)
_OUTPUT = (SpanAttributes.OUTPUT_VALUE, SpanAttributes.OUTPUT_MIME_TYPE)


def _texts(p: _Payload, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [node.text for node in p.nodes(value)]


def _sub_question(value: Any) -> tuple[str | None, str | None]:
    """(question, answer) of a LlamaIndex ``SubQuestionAnswerPair``, a dict or a plain string."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    get = value.get if isinstance(value, Mapping) else (lambda k: getattr(value, k, None))
    sub_q = get("sub_q")
    question = None
    if sub_q is not None:
        question = (
            sub_q.get("sub_question")
            if isinstance(sub_q, Mapping)
            else getattr(sub_q, "sub_question", None)
        )
    question = question or get("sub_question") or get("question")
    answer = get("answer")
    return (
        payloads.text_of(question) if question is not None else None,
        payloads.text_of(answer) if answer is not None else None,
    )


def _input_value(event_type: EventType, p: _Payload) -> Any:
    if event_type is EventType.TEMPLATING:
        variables = p.start.get(EventPayload.TEMPLATE_VARS)
        if variables is not None:
            return variables
        template = p.start.get(EventPayload.TEMPLATE)
        return payloads.text_of(getattr(template, "template", template)) if template else None
    if event_type is EventType.EMBEDDING:
        texts = payloads.embedding_texts_of(p.start) or payloads.embedding_texts_of(p.end)
        if texts:
            return texts[0] if len(texts) == 1 else texts
    query = p.input(EventPayload.QUERY_STR)
    if query is not None:
        return payloads.text_of(query)
    if event_type is EventType.SUB_QUESTION:
        question, _ = _sub_question(p.input(EventPayload.SUB_QUESTION))
        if question is not None:
            return question
    call = p.input(EventPayload.FUNCTION_CALL)
    if call is not None:
        return _function_arguments(call)
    prompt = p.input(EventPayload.PROMPT)
    if prompt is not None:
        return payloads.text_of(prompt)
    messages = p.input(EventPayload.MESSAGES)
    if messages is not None:
        parsed = payloads.messages_of(messages)
        if event_type is EventType.AGENT_STEP and parsed:
            return parsed[0].content
        return [{"role": m.role, "content": m.content} for m in parsed]
    variables = p.input(EventPayload.TEMPLATE_VARS)
    if variables is not None:
        return variables
    for key in (EventPayload.DOCUMENTS, EventPayload.CHUNKS, EventPayload.NODES):
        value = p.start.get(key)
        if value is not None:
            return _texts(p, value)
    return None


def _output_value(event_type: EventType, p: _Payload) -> Any:
    if event_type is EventType.TEMPLATING:
        prompt = p.end.get(EventPayload.PROMPT)
        if prompt is not None:
            return payloads.text_of(prompt)
        messages = p.end.get(EventPayload.MESSAGES)
        if messages is not None:
            return [{"role": m.role, "content": m.content} for m in payloads.messages_of(messages)]
    if event_type is EventType.LLM:
        reply = payloads.assistant_message_of(p.end)
        if reply is not None and not reply.content and reply.tool_calls:
            return {"tool_calls": list(reply.tool_calls)}
    completion = payloads.completion_of(p.end)
    if completion is not None:
        return completion
    if event_type is EventType.SUB_QUESTION:
        _, answer = _sub_question(p.output(EventPayload.SUB_QUESTION))
        if answer is not None:
            return answer
    result = p.output(EventPayload.FUNCTION_OUTPUT)
    if result is not None:
        return (
            result if isinstance(result, (str, Mapping, list, tuple)) else payloads.text_of(result)
        )
    if event_type is not EventType.EMBEDDING:
        for key in (EventPayload.NODES, EventPayload.CHUNKS, EventPayload.DOCUMENTS):
            value = p.end.get(key)
            if value is not None:
                return _texts(p, value)
    return None


def _documents(out: Attributes, p: _Payload, prefix: str, nodes: Any, scores: Any = None) -> None:
    for i, node in enumerate(p.nodes(nodes, scores)):
        base = f"{prefix}.{i}."
        if node.id is not None:
            out[base + DocumentAttributes.DOCUMENT_ID] = node.id
        out[base + DocumentAttributes.DOCUMENT_CONTENT] = node.text
        if node.score is not None:
            out[base + DocumentAttributes.DOCUMENT_SCORE] = node.score
        if node.metadata:
            out[base + DocumentAttributes.DOCUMENT_METADATA] = _dumps(node.metadata)


def _tool_call_parts(call: Mapping[str, Any]) -> tuple[str | None, str | None, Any]:
    """(id, function name, arguments) of an OpenAI-, Anthropic- or LlamaIndex-shaped tool call."""
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    call_id = call.get("id") or call.get("tool_id") or call.get("call_id")
    name = function.get("name") or call.get("name") or call.get("tool_name")
    arguments = function.get("arguments")
    for key in ("arguments", "input", "tool_kwargs", "args", "kwargs"):
        if arguments is None:
            arguments = call.get(key)
    return (
        str(call_id) if call_id is not None else None,
        str(name) if name is not None else None,
        arguments,
    )


def _messages(out: Attributes, prefix: str, messages: Iterable[payloads.Message]) -> None:
    for i, message in enumerate(messages):
        base = f"{prefix}.{i}."
        out[base + MessageAttributes.MESSAGE_ROLE] = message.role
        out[base + MessageAttributes.MESSAGE_CONTENT] = message.content
        if message.name:
            out[base + MessageAttributes.MESSAGE_NAME] = message.name
        for j, call in enumerate(message.tool_calls):
            if not isinstance(call, Mapping):
                continue
            call_id, name, arguments = _tool_call_parts(call)
            call_base = f"{base}{MessageAttributes.MESSAGE_TOOL_CALLS}.{j}."
            if call_id is not None:
                out[call_base + ToolCallAttributes.TOOL_CALL_ID] = call_id
            if name is not None:
                out[call_base + ToolCallAttributes.TOOL_CALL_FUNCTION_NAME] = name
            if arguments is not None:
                out[call_base + ToolCallAttributes.TOOL_CALL_FUNCTION_ARGUMENTS_JSON] = (
                    arguments if isinstance(arguments, str) else _dumps(arguments)
                )


def _response_message(p: _Payload) -> list[payloads.Message]:
    for key in (EventPayload.RESPONSE, EventPayload.COMPLETION):
        response = p.end.get(key)
        if response is None:
            continue
        message = (
            response.get("message")
            if isinstance(response, Mapping)
            else getattr(response, "message", None)
        )
        if message is not None and not isinstance(message, str):
            return payloads.messages_of([message])
        text = payloads.text_of(response)
        calls = tuple(payloads.tool_calls_of(p.end))
        return [payloads.Message("assistant", text, calls)]
    return []


def _invocation_parameters(p: _Payload, model: str | None) -> dict[str, Any] | None:
    explicit = p.input(EventPayload.INVOCATION_PARAMETERS)
    if isinstance(explicit, Mapping):
        return dict(payloads.to_jsonable(explicit))
    serialized = p.input(EventPayload.SERIALIZED)
    params: dict[str, Any] = {}
    if isinstance(serialized, Mapping):
        extra = serialized.get("additional_kwargs")
        if isinstance(extra, Mapping):
            params.update(payloads.to_jsonable(extra))
        for key in ("temperature", "max_tokens", "top_p", "context_window", "num_output"):
            if serialized.get(key) is not None:
                params[key] = payloads.to_jsonable(serialized[key])
    if not params:
        return None
    if model:
        params.setdefault("model", model)
    return params


def _llm(out: Attributes, p: _Payload) -> None:
    model = payloads.model_of(p.end) or payloads.model_of(p.start)
    if model:
        out[SpanAttributes.LLM_MODEL_NAME] = model
    params = _invocation_parameters(p, model)
    if params is not None:
        out[SpanAttributes.LLM_INVOCATION_PARAMETERS] = _dumps(params)
    messages = p.input(EventPayload.MESSAGES)
    if messages is not None:
        _messages(out, SpanAttributes.LLM_INPUT_MESSAGES, payloads.messages_of(messages))
    else:
        prompt = p.input(EventPayload.PROMPT)
        if prompt is not None:
            _messages(
                out,
                SpanAttributes.LLM_INPUT_MESSAGES,
                [payloads.Message("user", payloads.text_of(prompt))],
            )
    _messages(out, SpanAttributes.LLM_OUTPUT_MESSAGES, _response_message(p))
    _token_counts(out, p)
    provider, system = _provider_of(p, model)
    if provider is not None:
        out[SpanAttributes.LLM_PROVIDER] = provider
    if system is not None:
        out[SpanAttributes.LLM_SYSTEM] = system
    tools = p.input(EventPayload.TOOLS)
    if tools is not None:
        for i, tool in enumerate(tools if isinstance(tools, (list, tuple)) else [tools]):
            out[f"{SpanAttributes.LLM_TOOLS}.{i}.{ToolAttributes.TOOL_JSON_SCHEMA}"] = _dumps(
                tool_definition(tool)
            )


def _token_counts(out: Attributes, p: _Payload) -> None:
    if p.end_event is not None:
        count = llm_token_count(p.end_event)
        if count is None:
            return
        prompt, completion, total, source = (
            count.prompt,
            count.completion,
            count.total,
            count.source,
        )
    else:
        usage = payloads.usage_of(p.end) or payloads.usage_of(p.start)
        if usage is None:
            return
        prompt, completion, total, source = usage.prompt, usage.completion, usage.total, "provider"
    out[SpanAttributes.LLM_TOKEN_COUNT_PROMPT] = prompt
    out[SpanAttributes.LLM_TOKEN_COUNT_COMPLETION] = completion
    out[SpanAttributes.LLM_TOKEN_COUNT_TOTAL] = total
    out[TOKEN_COUNT_SOURCE] = source


# (model name prefix, llm.provider, llm.system)
_MODEL_FAMILIES: tuple[tuple[str, str, str | None], ...] = (
    ("gpt-", "openai", "openai"),
    ("o1", "openai", "openai"),
    ("o3", "openai", "openai"),
    ("o4", "openai", "openai"),
    ("text-embedding-", "openai", "openai"),
    ("claude", "anthropic", "anthropic"),
    ("gemini", "google", "vertexai"),
    ("mistral", "mistralai", "mistralai"),
    ("mixtral", "mistralai", "mistralai"),
    ("command", "cohere", "cohere"),
)
_USAGE_PROVIDERS = {
    "openai": ("openai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "gemini": ("google", "vertexai"),
}


def _provider_of(p: _Payload, model: str | None) -> tuple[str | None, str | None]:
    """``(llm.provider, llm.system)`` from the model's name, else from the usage's shape."""
    name = (model or "").lower().rsplit("/", 1)[-1]
    for prefix, provider, system in _MODEL_FAMILIES:
        if name.startswith(prefix):
            return provider, system
    usage = payloads.usage_of(p.end) or payloads.usage_of(p.start)
    if usage is not None and usage.source in _USAGE_PROVIDERS:
        return _USAGE_PROVIDERS[usage.source]
    return None, None


def _embedding(out: Attributes, p: _Payload) -> None:
    model = (
        p.input(EventPayload.EMBEDDING_MODEL_NAME)
        or payloads.model_of(p.start)
        or payloads.model_of(p.end)
    )
    if model:
        out[SpanAttributes.EMBEDDING_MODEL_NAME] = str(model)
    texts = payloads.embedding_texts_of(p.end) or payloads.embedding_texts_of(p.start)
    vectors = p.output(EventPayload.EMBEDDINGS)
    vector_list = list(vectors) if isinstance(vectors, (list, tuple)) else []
    prefix = SpanAttributes.EMBEDDING_EMBEDDINGS
    for i in range(max(len(texts), len(vector_list))):
        base = f"{prefix}.{i}."
        if i < len(texts):
            out[base + EmbeddingAttributes.EMBEDDING_TEXT] = texts[i]
        if i < len(vector_list):
            out[base + EmbeddingAttributes.EMBEDDING_VECTOR] = _lazy_vector(vector_list[i])


def _lazy_vector(vector: Any) -> Callable[[], tuple[float, ...]]:
    return lambda: tuple(float(x) for x in vector)


def _reranking(out: Attributes, p: _Payload) -> None:
    query = p.input(EventPayload.QUERY_STR)
    if query is not None:
        out[RerankerAttributes.RERANKER_QUERY] = payloads.text_of(query)
    model = payloads.model_of(p.start) or payloads.model_of(p.end)
    if model:
        out[RerankerAttributes.RERANKER_MODEL_NAME] = model
    top_k = p.input(EventPayload.TOP_K)
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        out[RerankerAttributes.RERANKER_TOP_K] = top_k
    if p.start.get(EventPayload.NODES) is not None:
        _documents(
            out,
            p,
            RerankerAttributes.RERANKER_INPUT_DOCUMENTS,
            p.start[EventPayload.NODES],
            p.start.get(EventPayload.SCORES),
        )
    if p.end.get(EventPayload.NODES) is not None:
        _documents(
            out,
            p,
            RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS,
            p.end[EventPayload.NODES],
            p.end.get(EventPayload.SCORES),
        )


def _function_arguments(call: Any) -> Any:
    """The arguments of a ``function_call`` payload: an OpenAI ``{"name", "arguments"}`` call's
    arguments, else the value itself."""
    if isinstance(call, Mapping) and "arguments" in call and ("name" in call or len(call) == 1):
        return call["arguments"]
    return call


def _tool_schema(tool: Any) -> Any:
    """The JSON schema of a tool's parameters: LlamaIndex ``ToolMetadata``/``BaseTool``, an
    OpenAI tool dict, or a dict with ``parameters``."""
    if tool is None or isinstance(tool, str):
        return None
    if isinstance(tool, Mapping):
        function = tool.get("function")
        if isinstance(function, Mapping) and function.get("parameters") is not None:
            return function["parameters"]
        for key in ("parameters", "input_schema", "json_schema", "fn_schema"):
            if tool.get(key) is not None:
                return tool[key]
        return None
    metadata = getattr(tool, "metadata", None)
    if metadata is not None and not isinstance(metadata, Mapping):
        tool = metadata
    get_parameters = getattr(tool, "get_parameters_dict", None)
    if callable(get_parameters):
        try:
            return get_parameters()
        except Exception:
            return None
    return None


def tool_definition(tool: Any) -> Any:
    """A tool's full definition in OpenAI's shape, as the OpenInference spec wants it in
    ``llm.tools.N.tool.json_schema``: ``{"type": "function", "function": {"name",
    "description", "parameters"}}``. An OpenAI-shaped dict is kept as is; an Anthropic-shaped
    one (``input_schema``) and LlamaIndex tools are converted."""
    if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping):
        return payloads.to_jsonable(tool)
    name, description = _tool_name(tool, None)
    parameters = _tool_schema(tool)
    if name is None and parameters is None:
        return payloads.to_jsonable(tool)
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = payloads.to_jsonable(parameters)
    return {"type": "function", "function": function}


def _tool_name(tool: Any, call: Any) -> tuple[str | None, str | None]:
    if isinstance(tool, str):
        return tool, None
    source: Any = tool
    if tool is not None and not isinstance(tool, Mapping):
        metadata = getattr(tool, "metadata", None)
        if metadata is not None and not isinstance(metadata, Mapping):
            source = metadata
    name = description = None
    if isinstance(source, Mapping):
        function = source.get("function")
        function = function if isinstance(function, Mapping) else source
        name, description = function.get("name"), function.get("description")
    elif source is not None:
        name, description = getattr(source, "name", None), getattr(source, "description", None)
    if name is None and isinstance(call, Mapping):
        name = call.get("name") or call.get("tool_name")
    return (str(name) if name else None, str(description) if description else None)


def _function_call(out: Attributes, p: _Payload) -> None:
    tool = p.input(EventPayload.TOOL)
    call = p.input(EventPayload.FUNCTION_CALL)
    name, description = _tool_name(tool, call)
    if name:
        out[SpanAttributes.TOOL_NAME] = name
    if description:
        out[SpanAttributes.TOOL_DESCRIPTION] = description
    # tool.parameters is the parameters' schema when the tool has one; otherwise the call's
    # arguments, so the span still says what the tool was called with.
    parameters = _tool_schema(tool)
    if parameters is None and call is not None:
        parameters = _function_arguments(call)
    if parameters is not None:
        out[SpanAttributes.TOOL_PARAMETERS] = (
            parameters if isinstance(parameters, str) else _dumps(parameters)
        )


def template_attributes(
    start: Mapping[str, Any] | None, end: Mapping[str, Any] | None = None
) -> Attributes:
    """``llm.prompt_template.*`` from a templating (or LLM) event's payload."""
    return _template_attributes(_Payload(start, end))


def _template_attributes(p: _Payload) -> Attributes:
    out: Attributes = {}
    template = p.input(EventPayload.TEMPLATE)
    if template is not None:
        out[SpanAttributes.LLM_PROMPT_TEMPLATE] = payloads.text_of(
            getattr(template, "template", template)
        )
    variables = p.input(EventPayload.TEMPLATE_VARS)
    if variables is not None:
        out[SpanAttributes.LLM_PROMPT_TEMPLATE_VARIABLES] = p.dumps(variables)
    return out


_TYPE_SPECIFIC: dict[EventType, Callable[[Attributes, _Payload], None]] = {
    EventType.LLM: _llm,
    EventType.EMBEDDING: _embedding,
    EventType.RERANKING: _reranking,
    EventType.FUNCTION_CALL: _function_call,
}


def event_attributes(
    event_type: EventType,
    start: Mapping[str, Any] | None,
    end: Mapping[str, Any] | None,
    end_event: Event | None = None,
) -> Attributes:
    """OpenInference attributes of one event from its start and end payloads (either may be
    missing, e.g. when the start was dropped). Includes ``openinference.span.kind``. With the
    ``end_event`` of an LLM call, token counts are estimated when the provider reported none."""
    p = _Payload(start, end, end_event)
    out: Attributes = {SpanAttributes.OPENINFERENCE_SPAN_KIND: span_kind(event_type)}
    _put_value(out, _INPUT, _input_value(event_type, p), p)
    _put_value(out, _OUTPUT, _output_value(event_type, p), p)
    specific = _TYPE_SPECIFIC.get(event_type)
    if specific is not None:
        specific(out, p)
    if event_type is EventType.RETRIEVE:
        nodes = p.output(EventPayload.NODES)
        if nodes is not None:
            _documents(
                out, p, SpanAttributes.RETRIEVAL_DOCUMENTS, nodes, p.output(EventPayload.SCORES)
            )
    out.update(_template_attributes(p))
    return out


def trace_attributes(attributes: Mapping[str, Any] | None) -> Attributes:
    """``session.id``, ``user.id``, ``metadata`` and ``tag.tags`` from a trace's attributes."""
    out: Attributes = {}
    if not attributes:
        return out
    session_id = attributes.get("session_id")
    if session_id is not None:
        out[SpanAttributes.SESSION_ID] = str(session_id)
    user_id = attributes.get("user_id")
    if user_id is not None:
        out[SpanAttributes.USER_ID] = str(user_id)
    metadata = attributes.get("metadata")
    if metadata:
        out[SpanAttributes.METADATA] = metadata if isinstance(metadata, str) else _dumps(metadata)
    tags = attributes.get("tags")
    if tags:
        out[SpanAttributes.TAG_TAGS] = (
            (str(tags),) if isinstance(tags, str) else tuple(str(t) for t in tags)
        )
    return out
