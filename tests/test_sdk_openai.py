"""callbacks.integrations.openai against the real openai client, over HTTP, talking to a loopback
server that answers with the shapes of OpenAI's API reference. The oracle is what the server
sent (usage, text, tool calls, request ids) and what the un-instrumented SDK does."""

from __future__ import annotations

import asyncio
import gc
import json

import openai
import pytest
from sdk_server import (
    OPENAI_MODEL,
    RESPONSES_MODEL,
    LoopbackAPI,
    Reply,
    chat_completion,
    chat_stream,
    embeddings_reply,
    function_call_item,
    message_item,
    openai_error,
    openai_usage,
    response_object,
    responses_stream,
    responses_usage,
    tool_call,
)

import callbacks.integrations.openai as callbacks_openai
from callbacks import EventPayload as P
from callbacks import EventType, hookimpl, payloads
from callbacks.integrations import _sdk

MESSAGES = [
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "Capital of France?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def api():
    with LoopbackAPI() as server:
        yield server


@pytest.fixture
def cm(make_manager, recorder):
    manager = make_manager(recorder)
    callbacks_openai.instrument(manager)
    yield manager
    callbacks_openai.uninstrument()


@pytest.fixture
def client(api):
    with openai.OpenAI(api_key="sk-test", base_url=f"{api.url}/v1", max_retries=0) as c:
        yield c


def _async_client(api: LoopbackAPI) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=f"{api.url}/v1", max_retries=0)


def _only_end(recorder, event_type=EventType.LLM):
    ends = recorder.ends(event_type)
    assert len(ends) == 1, ends
    return ends[0]


def test_chat_completion_is_one_llm_event_with_what_the_server_sent(api, cm, client, recorder):
    usage = openai_usage(19, 10, cached=6, reasoning=2)
    api.queue(Reply(chat_completion("Paris", usage=usage), headers={"x-request-id": "req_123"}))

    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, temperature=0.2, max_tokens=5
    )

    assert isinstance(result, openai.types.chat.ChatCompletion)
    assert result.choices[0].message.content == "Paris"
    end = _only_end(recorder)
    start = end.start
    assert start.payload[P.MESSAGES] == MESSAGES
    assert start.payload[P.MODEL_NAME] == "gpt-4o-mini"
    assert start.payload[P.INVOCATION_PARAMETERS] == {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 5,
    }
    assert end.payload[P.MODEL_NAME] == OPENAI_MODEL
    assert end.payload[P.USAGE] == usage
    assert end.payload[P.REQUEST_ID] == "req_123"
    assert end.payload[P.RESPONSE]["raw"] is result
    assert end.exception is None
    # the readers plugins use
    full = end.full_payload
    assert payloads.usage_of(full) == payloads.TokenUsage(19, 10, 29, "openai", 6, None, 2)
    assert payloads.assistant_message_of(full) == payloads.Message("assistant", "Paris")
    assert payloads.completion_of(full) == "Paris"
    assert [(m.role, m.content) for m in payloads.messages_of(full[P.MESSAGES])] == [
        ("system", "You answer in one word."),
        ("user", "Capital of France?"),
    ]
    # an implicit trace of its own, ended with the event; exactly one request went out
    assert len(recorder.traces) == 1 and recorder.traces[0].implicit
    assert len(api.requests) == 1
    assert api.requests[0].body["messages"] == MESSAGES


def test_chat_completion_with_tools_reports_tools_offered_and_tool_calls(api, cm, client, recorder):
    call = tool_call("call_abc123", "get_weather", {"city": "Paris"})
    api.queue(Reply(chat_completion(None, [call])))
    history = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": "18C"},
    ]

    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=history, tools=[WEATHER_TOOL], tool_choice="auto"
    )

    assert result.choices[0].finish_reason == "tool_calls"
    end = _only_end(recorder)
    assert end.start.payload[P.TOOLS] == [WEATHER_TOOL]
    assert end.start.payload[P.INVOCATION_PARAMETERS]["tool_choice"] == "auto"
    reply = payloads.assistant_message_of(end.full_payload)
    assert reply.content == ""
    assert [dict(c) for c in reply.tool_calls] == [call]
    parsed = payloads.messages_of(end.start.payload[P.MESSAGES])
    assert [m.role for m in parsed] == ["system", "user", "assistant", "tool"]
    assert parsed[2].tool_calls == (call,)
    assert parsed[3].tool_call_id == "call_abc123"
    assert end.payload[P.RESPONSE]["finish_reason"] == "tool_calls"


def test_stream_ends_when_exhausted_with_text_and_final_usage(api, cm, client, recorder):
    usage = openai_usage(11, 3, cached=4)
    api.queue(Reply(events=chat_stream(["Pa", "ri", "s"], usage), headers={"x-request-id": "r9"}))

    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )

    assert type(stream) is openai.Stream  # the SDK's own object
    assert recorder.starts(EventType.LLM) and not recorder.ends(EventType.LLM)
    pieces = [c.choices[0].delta.content for c in stream if c.choices]
    assert "".join(p for p in pieces if p) == "Paris"
    end = _only_end(recorder)
    assert end.payload[P.RESPONSE]["message"]["content"] == "Paris"
    assert end.payload[P.USAGE] == usage
    assert end.payload[P.STREAM_END] == "exhausted"
    assert end.payload[P.REQUEST_ID] == "r9"
    assert end.payload[P.MODEL_NAME] == OPENAI_MODEL
    ttft = end.payload[P.TIME_TO_FIRST_TOKEN]
    assert 0 < ttft <= end.duration_ns
    assert payloads.usage_of(end.payload) == payloads.TokenUsage(11, 3, 14, "openai", 4, None, 0)


def test_streamed_tool_call_is_assembled(api, cm, client, recorder):
    fragments = ['{"ci', 'ty": "Pa', 'ris"}']
    api.queue(Reply(events=chat_stream([], None, ("call_1", "get_weather", fragments))))

    with client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
    ) as stream:
        chunks = list(stream)

    assert len(chunks) == 6  # role, tool call start, three fragments, finish
    end = _only_end(recorder)
    reply = payloads.assistant_message_of(end.payload)
    assert reply.tool_calls == (
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
    )
    assert end.payload[P.RESPONSE]["finish_reason"] == "tool_calls"
    assert P.USAGE.value not in end.payload  # the server sent none


def test_stream_closed_early_ends_with_what_arrived(api, cm, client, recorder):
    api.queue(Reply(events=chat_stream(["Pa", "ri", "s"], openai_usage(5, 3))))

    with client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as stream:
        next(stream)  # the role chunk
        next(stream)  # "Pa"
        assert not recorder.ends(EventType.LLM)

    end = _only_end(recorder)
    assert end.payload[P.STREAM_END] == "closed"
    assert end.payload[P.RESPONSE]["message"]["content"] == "Pa"
    assert end.exception is None


def test_abandoned_stream_ends_when_collected(api, cm, client, recorder):
    api.queue(Reply(events=chat_stream(["Pa", "ri", "s"], openai_usage(5, 3))))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(stream)
    next(stream)
    del stream
    gc.collect()

    end = _only_end(recorder)
    assert end.payload[P.STREAM_END] == "abandoned"
    assert end.payload[P.RESPONSE]["message"]["content"] == "Pa"


def test_chat_completions_stream_helper_is_reported(api, cm, client, recorder):
    api.queue(Reply(events=chat_stream(["Hel", "lo"], openai_usage(5, 2))))

    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "content.delta")

    assert text == "Hello"
    end = _only_end(recorder)
    assert end.payload[P.RESPONSE]["message"]["content"] == "Hello"
    assert end.payload[P.USAGE] == openai_usage(5, 2)


def test_async_client_nests_under_the_current_event(api, cm, recorder):
    usage = openai_usage(7, 1)
    api.queue(Reply(chat_completion("Paris", usage=usage)))
    api.queue(Reply(events=chat_stream(["Par", "is"], usage)))

    async def main():
        async with _async_client(api) as client:
            with cm.as_trace("question"), cm.event(EventType.QUERY) as query:
                result = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES
                )
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                assert type(stream) is openai.AsyncStream
                assert cm.current_event_id() == query.id  # the caller's context is untouched
                text = "".join(
                    [c.choices[0].delta.content or "" async for c in stream if c.choices]
                )
                return query.id, result, text

    query_id, result, text = asyncio.run(main())

    assert result.choices[0].message.content == "Paris" and text == "Paris"
    ends = recorder.ends(EventType.LLM)
    assert len(ends) == 2
    assert {e.parent_id for e in ends} == {query_id}
    assert [e.payload[P.USAGE] for e in ends] == [usage, usage]
    assert ends[1].payload[P.STREAM_END] == "exhausted"
    assert len(recorder.traces) == 1 and not recorder.traces[0].implicit


def test_async_stream_closed_early(api, cm, recorder):
    api.queue(Reply(events=chat_stream(["a", "b", "c"], None)))

    async def main():
        async with _async_client(api) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            async with stream:
                await stream.__anext__()
                await stream.__anext__()

    asyncio.run(main())
    end = _only_end(recorder)
    assert end.payload[P.STREAM_END] == "closed"
    assert end.payload[P.RESPONSE]["message"]["content"] == "a"


def test_responses_api_plain_with_instructions_and_function_calls(api, cm, client, recorder):
    usage = responses_usage(36, 87, cached=12, reasoning=30)
    output = [
        message_item("Checking."),
        function_call_item("call_9", "get_weather", {"city": "Oslo"}),
    ]
    api.queue(Reply(response_object(output, usage), headers={"x-request-id": "req_r"}))
    inputs = [
        {"role": "user", "content": "Weather in Oslo?"},
        function_call_item("call_8", "get_weather", {"city": "Bergen"}),
        {"type": "function_call_output", "call_id": "call_8", "output": "rain"},
    ]

    result = client.responses.create(
        model="gpt-4.1", instructions="Be brief.", input=inputs, tools=[{"type": "web_search"}]
    )

    assert result.output_text == "Checking."
    end = _only_end(recorder)
    parsed = payloads.messages_of(end.start.payload[P.MESSAGES])
    assert [(m.role, m.content) for m in parsed] == [
        ("system", "Be brief."),
        ("user", "Weather in Oslo?"),
        ("assistant", ""),
        ("tool", "rain"),
    ]
    assert parsed[2].tool_calls[0]["function"]["name"] == "get_weather"
    assert parsed[3].tool_call_id == "call_8"
    assert end.start.payload[P.TOOLS] == [{"type": "web_search"}]
    assert end.payload[P.USAGE] == usage
    assert end.payload[P.MODEL_NAME] == RESPONSES_MODEL
    assert end.payload[P.REQUEST_ID] == "req_r"
    reply = payloads.assistant_message_of(end.payload)
    assert reply.content == "Checking."
    assert reply.tool_calls[0]["id"] == "call_9"
    assert json.loads(reply.tool_calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    assert payloads.usage_of(end.payload) == payloads.TokenUsage(
        36, 87, 123, "openai", 12, None, 30
    )


def test_responses_api_stream(api, cm, client, recorder):
    usage = responses_usage(10, 2)
    api.queue(Reply(events=responses_stream(["Hi", " there"], usage)))

    stream = client.responses.create(model="gpt-4.1", input="Hello", stream=True)
    kinds = [event.type for event in stream]

    assert kinds[-1] == "response.completed"
    end = _only_end(recorder)
    assert end.start.payload[P.MESSAGES] == [{"role": "user", "content": "Hello"}]
    assert end.payload[P.RESPONSE]["message"]["content"] == "Hi there"
    assert end.payload[P.USAGE] == usage
    assert end.payload[P.STREAM_END] == "exhausted"
    assert end.payload[P.TIME_TO_FIRST_TOKEN] > 0


def test_embeddings_are_embedding_events(api, cm, client, recorder):
    api.queue(Reply(embeddings_reply))

    result = client.embeddings.create(model="text-embedding-3-small", input=["a b c", "d e"])

    end = _only_end(recorder, EventType.EMBEDDING)
    assert not recorder.ends(EventType.LLM)
    assert end.start.payload[P.CHUNKS] == ["a b c", "d e"]
    assert end.start.payload[P.EMBEDDING_MODEL_NAME] == "text-embedding-3-small"
    assert end.payload[P.EMBEDDINGS] == [d.embedding for d in result.data]
    assert result.data[0].embedding == pytest.approx([0.5, 0.0, -1.5])
    assert end.payload[P.USAGE] == {"prompt_tokens": 5, "total_tokens": 5}
    assert payloads.embedding_texts_of(end.full_payload) == ["a b c", "d e"]


def test_error_status_reaches_the_app_unchanged_and_ends_the_event(api, cm, client, recorder):
    api.queue(openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded"))

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    end = _only_end(recorder)
    assert end.exception is caught.value
    assert end.exception.status_code == 429
    assert end.exception.type == "requests"
    assert end.payload[P.REQUEST_ID] == "req_error_1"
    assert len(recorder.traces) == 1 and recorder.traces[0].ended


def test_uninstrument_restores_the_sdk_exactly(api, make_manager, recorder, client):
    targets = callbacks_openai._targets()
    before = {(owner, name): owner.__dict__[name] for owner, name, _, _ in targets}
    manager = make_manager(recorder)

    callbacks_openai.instrument(manager)
    callbacks_openai.instrument(manager)  # idempotent
    assert callbacks_openai.instrumented()
    assert all(owner.__dict__[name] is not before[(owner, name)] for owner, name in before)
    api.queue(Reply(chat_completion("x")))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(recorder.ends(EventType.LLM)) == 1  # one event, not two

    callbacks_openai.uninstrument()
    assert not callbacks_openai.instrumented()
    assert all(owner.__dict__[name] is before[(owner, name)] for owner, name in before)
    api.queue(Reply(chat_completion("y")))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(recorder.ends(EventType.LLM)) == 1


class _RaisingPlugin:
    callbacks_delivery = "inline"

    @hookimpl
    def on_llm_start(self, event):
        raise RuntimeError("plugin bug at start")

    @hookimpl
    def on_llm_end(self, event):
        raise RuntimeError("plugin bug at end")


def test_raising_plugin_never_affects_the_call(api, make_manager, recorder, client):
    manager = make_manager(_RaisingPlugin(), recorder)
    callbacks_openai.instrument(manager)
    try:
        api.queue(Reply(chat_completion("Paris")))
        api.queue(Reply(events=chat_stream(["Par", "is"], None)))
        result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream)
    finally:
        callbacks_openai.uninstrument()
    assert result.choices[0].message.content == "Paris" and text == "Paris"
    assert len(recorder.ends(EventType.LLM)) == 2
    errors = manager.stats()["_raisingplugin"]["errors"]
    assert errors == 4


def test_a_bug_in_payload_extraction_never_breaks_the_call(api, cm, client, recorder, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("extraction bug")

    monkeypatch.setattr(callbacks_openai, "get", broken)
    failures = _sdk.instrumentation_failures()
    api.queue(Reply(chat_completion("Paris")))
    api.queue(Reply(events=chat_stream(["Par", "is"], openai_usage(1, 1))))

    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert result.choices[0].message.content == "Paris" and text == "Paris"
    ends = recorder.ends(EventType.LLM)
    assert len(ends) == 2  # both events still end
    assert _sdk.instrumentation_failures() > failures


def test_importing_callbacks_does_not_import_the_sdks():
    import subprocess
    import sys

    code = (
        "import sys, callbacks, callbacks.integrations; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'anthropic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sampled_out_trace_reports_nothing_and_counts_no_unmatched_end(
    api, make_manager, recorder, client
):
    manager = make_manager(recorder, config={"sample_rate": 0.0})
    callbacks_openai.instrument(manager)
    try:
        api.queue(Reply(chat_completion("Paris")))
        with manager.as_trace("question"):
            result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        callbacks_openai.uninstrument()
    assert result.choices[0].message.content == "Paris"
    assert recorder.events == []
    assert manager.host_stats()["unmatched_ends"] == 0


def test_stream_never_iterated_ends_when_collected(api, cm, client, recorder):
    api.queue(Reply(events=chat_stream(["Pa", "ris"], None)))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert not recorder.ends(EventType.LLM)
    del stream
    gc.collect()

    end = _only_end(recorder)
    assert end.payload[P.STREAM_END] == "abandoned"
    assert end.payload[P.RESPONSE]["message"]["content"] == ""
    assert P.TIME_TO_FIRST_TOKEN.value not in end.payload


def test_abandoned_async_stream_ends_when_collected(api, cm, recorder):
    api.queue(Reply(events=chat_stream(["Pa", "ris"], None)))

    async def main():
        async with _async_client(api) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            await stream.__anext__()
            await stream.__anext__()
            del stream
            gc.collect()
            return list(recorder.ends(EventType.LLM))

    ends = asyncio.run(main())
    assert len(ends) == 1
    assert ends[0].payload[P.STREAM_END] == "abandoned"
    assert ends[0].payload[P.RESPONSE]["message"]["content"] == "Pa"
