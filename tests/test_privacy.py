"""Privacy that holds at any depth: hide_inputs/hide_outputs hide every value except the
documented metadata keys (and exception messages); max_payload_chars bounds every string,
whatever holds it; a redaction hook sees every payload first; the application's own objects and
iterators are never changed or consumed.

Payloads are built from real LlamaIndex objects (ChatMessage, ChatResponse, NodeWithScore,
ToolMetadata, StreamingResponse); the check walks everything a plugin received.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from llama_index.core.base.response.schema import StreamingResponse
from llama_index.core.llms import ChatMessage, ChatResponse, CompletionResponse
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.tools import ToolMetadata

from callbacks import CallbackManager, EventPayload, EventType, hookimpl
from callbacks.testing import RecordingPlugin

P = EventPayload
MARK = "MARKER-7f3a"
LONG = MARK + "x" * 500


def strings_in(value: Any, _seen: set[int] | None = None) -> list[str]:
    """Every string reachable from ``value``: containers, mappings (keys too), object attributes,
    pydantic fields, dataclass fields, exception messages and args. Written for the test, not
    shared with the code under test."""
    if isinstance(value, str):
        return [value]
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return []
    seen.add(id(value))
    if value is None or isinstance(value, (int, float, bytes, type)):
        return []
    out: list[str] = []
    if isinstance(value, BaseException):
        out.append(str(value))
        out += strings_in(list(value.args), seen)
        return out
    if isinstance(value, Mapping):
        for k, v in value.items():
            out += strings_in(k, seen) + strings_in(v, seen)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            out += strings_in(v, seen)
        return out
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            out += strings_in(getattr(value, f.name), seen)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        out += strings_in(dump(), seen)
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict):
        out += strings_in(attrs, seen)
    return out


def received(recorder: RecordingPlugin) -> list[str]:
    out: list[str] = []
    for event in recorder.events:
        out += strings_in(dict(event.payload))
        if event.exception is not None:
            out += strings_in(event.exception)
    return out


def rich_payloads() -> tuple[dict[str, Any], dict[str, Any]]:
    """A start and an end payload with the marker in every kind of holder."""
    message = ChatMessage(
        role="user", content=LONG, additional_kwargs={"note": LONG, "nested": [{"deep": LONG}]}
    )
    node = NodeWithScore(node=TextNode(text=LONG, metadata={"title": LONG}), score=0.5)
    start = {
        P.MESSAGES: [message],
        P.PROMPT: LONG,
        P.ADDITIONAL_KWARGS: {"a": (LONG, [LONG])},
        P.SERIALIZED: {"class": LONG},
        P.TOOL: ToolMetadata(name="search", description=LONG),
        P.TOOLS: [{"type": "function", "function": {"name": "lookup", "description": LONG}}],
        P.MODEL_NAME: "gpt-4o-mini",
        P.TOP_K: 3,
        P.INVOCATION_PARAMETERS: {"temperature": 0.2},
        "custom_app_key": {"deep": {"deeper": [LONG]}},
    }
    end = {
        P.RESPONSE: ChatResponse(message=ChatMessage(role="assistant", content=LONG)),
        P.COMPLETION: CompletionResponse(text=LONG),
        P.NODES: [node],
        P.USAGE: {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        P.FUNCTION_OUTPUT: (LONG,),
    }
    return start, end


def run_events(cm: CallbackManager, payloads: tuple[dict, dict] | None = None) -> None:
    start, end = payloads or rich_payloads()
    with cm.event(EventType.LLM, start) as llm:
        llm.on_end(end)
    with pytest.raises(ValueError, match=MARK):
        with cm.event(EventType.FUNCTION_CALL, {P.FUNCTION_CALL: {"args": [LONG]}}):
            raise ValueError(f"bad input {LONG}")
    cm.flush()


def test_control_without_privacy_settings_the_marker_reaches_plugins(make_manager) -> None:
    recorder = RecordingPlugin()
    run_events(make_manager(recorder))
    assert sum(MARK in s for s in received(recorder)) >= 10


@pytest.mark.parametrize("setting", ["hide_inputs", "hide_outputs"])
def test_hiding_hides_every_value_but_metadata_and_exception_messages(
    make_manager, setting
) -> None:
    recorder = RecordingPlugin()
    run_events(make_manager(recorder, config={setting: True}))
    llm_start, llm_end = recorder.events[0], recorder.events[1]
    hidden = llm_start if setting == "hide_inputs" else llm_end
    shown = llm_end if setting == "hide_inputs" else llm_start
    assert not any(MARK in s for s in strings_in(dict(hidden.payload)))
    assert any(MARK in s for s in strings_in(dict(shown.payload)))
    if setting == "hide_inputs":
        payload = hidden.payload
        assert payload[P.MODEL_NAME] == "gpt-4o-mini" and payload[P.TOP_K] == 3
        assert payload[P.INVOCATION_PARAMETERS] == {"temperature": 0.2}
        assert payload[P.TOOL] == "search" and payload[P.TOOLS] == ["lookup"]
        assert payload["custom_app_key"] == payload[P.ADDITIONAL_KWARGS] == "<hidden>"
    else:
        assert hidden.payload[P.USAGE]["total_tokens"] == 9
        assert hidden.payload[P.RESPONSE] == "<hidden>"
    failed = recorder.events[-1]
    assert type(failed.exception).__name__ == "ValueError"
    assert str(failed.exception) == "<hidden>"
    assert failed.exception.__traceback__ is not None


LIMIT = 40


def test_payload_limit_bounds_every_string_at_any_depth(make_manager) -> None:
    recorder = RecordingPlugin()
    start, end = rich_payloads()
    originals = (start[P.MESSAGES][0].content, end[P.NODES][0].node.text)
    run_events(make_manager(recorder, config={"max_payload_chars": LIMIT}), (start, end))
    strings = received(recorder)
    assert strings and max(len(s) for s in strings) <= LIMIT
    # The start of each value survives: truncation, not hiding.
    assert sum(s.startswith(MARK) for s in strings) >= 10
    failed = recorder.events[-1]
    assert type(failed.exception).__name__ == "ValueError" and len(str(failed.exception)) <= LIMIT
    # Rich objects reach plugins as plain data; the application's objects are untouched.
    message = recorder.events[0].payload[P.MESSAGES][0]
    assert isinstance(message, dict) and message["role"] == "user"
    assert start[P.MESSAGES][0].content == originals[0]
    assert end[P.NODES][0].node.text == originals[1]


def test_limit_never_consumes_application_iterators(make_manager) -> None:
    recorder = RecordingPlugin()
    cm = make_manager(recorder, config={"max_payload_chars": LIMIT})
    items = (str(i) for i in range(1000))
    stream = StreamingResponse(response_gen=(f"tok{i}" for i in range(1000)))
    with cm.event(EventType.QUERY, {P.QUERY_STR: items}) as query:
        query.on_end({P.RESPONSE: stream})
    assert recorder.events[0].payload[P.QUERY_STR] == "<generator>"
    assert recorder.events[1].payload[P.RESPONSE]["response_gen"] == "<generator>"
    assert len(list(items)) == 1000
    assert len(list(stream.response_gen)) == 1000


# -- redaction hook -------------------------------------------------------------------------------


class Scrubber:
    """Replaces the marker everywhere it finds it in plain strings and lists."""

    callbacks_name = "scrubber"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def callbacks_redact(self, event_type, phase, payload):
        self.calls += 1

        def scrub(value: Any) -> Any:
            if isinstance(value, str):
                return value.replace(MARK, "[PII]")
            if isinstance(value, (list, tuple)):
                return type(value)(scrub(v) for v in value)
            if isinstance(value, Mapping):
                return {k: scrub(v) for k, v in value.items()}
            return value

        return {key: scrub(value) for key, value in payload.items()}


def test_redaction_hook_transforms_every_payload_before_any_plugin(make_manager) -> None:
    first, background = RecordingPlugin(), RecordingPlugin(delivery="background")
    scrubber = Scrubber()
    # Registered after the recorders: redaction still runs before any of them sees an event.
    cm = make_manager(first, background, scrubber)
    with cm.event(EventType.QUERY, {P.QUERY_STR: f"my name is {MARK}"}) as query:
        query.on_end({P.RESPONSE: [f"hello {MARK}", {"deep": MARK}]})
    cm.flush()
    for recorder in (first, background):
        strings = received(recorder)
        assert "my name is [PII]" in strings and "hello [PII]" in strings
        assert not any(MARK in s for s in strings)
    assert scrubber.calls == 2


def test_redaction_runs_on_the_callers_thread_and_before_host_limits(make_manager) -> None:
    import threading

    threads: list[int] = []

    class Expander:
        @hookimpl
        def callbacks_redact(self, payload):
            threads.append(threading.get_ident())
            return {**payload, "note": "z" * 100}

    recorder = RecordingPlugin()
    cm = make_manager(recorder, Expander(), config={"max_payload_chars": 10})
    with cm.event(EventType.QUERY, {P.QUERY_STR: "q"}) as query:
        query.on_end({P.RESPONSE: "r"})
    assert threads == [threading.get_ident(), threading.get_ident()]
    assert len(recorder.events[0].payload["note"]) == 10


def test_failing_redaction_fails_closed_and_is_counted(make_manager) -> None:
    class Broken:
        callbacks_name = "broken-redactor"

        @hookimpl
        def callbacks_redact(self, payload):
            raise RuntimeError("scrubber bug")

    recorder = RecordingPlugin()
    cm = make_manager(recorder, Broken())
    with cm.event(EventType.QUERY, {P.QUERY_STR: MARK}) as query:
        query.on_end({P.RESPONSE: MARK})
    assert [dict(e.payload) for e in recorder.events] == [
        {P.QUERY_STR: "<redaction failed>"},
        {P.RESPONSE: "<redaction failed>"},
    ]
    assert cm.stats()["broken-redactor"]["errors_by_hook"] == {"callbacks_redact": 2}


def test_without_redactor_or_privacy_settings_the_payload_is_not_touched(make_manager) -> None:
    recorder = RecordingPlugin()
    cm = make_manager(recorder)
    message = ChatMessage(role="user", content=LONG)
    with cm.event(EventType.LLM, {P.MESSAGES: [message]}):
        pass
    assert recorder.events[0].payload[P.MESSAGES][0] is message
