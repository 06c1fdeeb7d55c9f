"""Traced functions: sync, async, generators and async generators, including failures."""

from __future__ import annotations

import asyncio

import pytest

from callbacks import CallbackManager, EventPayload, EventType


@pytest.fixture
def cm(recorder):
    manager = CallbackManager(plugins=[recorder])
    yield manager
    manager.shutdown()


def _phases(recorder, event_type=EventType.LLM):
    return [e.phase.value for e in recorder.events if e.type is event_type]


def test_sync_function_records_input_and_output(cm, recorder) -> None:
    @cm.traced(EventType.LLM)
    def complete(prompt: str) -> str:
        return prompt.upper()

    assert complete("hi") == "HI"
    start, end = recorder.events
    assert start.payload[EventPayload.PROMPT] == "hi"
    assert end.payload[EventPayload.COMPLETION] == "HI"


def test_async_function_is_traced(cm, recorder) -> None:
    @cm.traced(EventType.RETRIEVE)
    async def retrieve(query: str) -> list[str]:
        await asyncio.sleep(0)
        return ["a", "b"]

    assert asyncio.run(retrieve("q")) == ["a", "b"]
    assert recorder.events[1].payload[EventPayload.NODES] == ["a", "b"]


def test_generator_event_ends_when_exhausted_not_when_returned(cm, recorder) -> None:
    @cm.traced(EventType.LLM)
    def stream(prompt: str):
        yield "hel"
        with cm.event(EventType.TEMPLATING):
            pass
        yield "lo"

    gen = stream("p")
    assert _phases(recorder) == []
    assert next(gen) == "hel"
    # The consumer's own events do not nest under the open stream.
    with cm.event(EventType.RETRIEVE):
        pass
    assert _phases(recorder) == ["start"]
    assert list(gen) == ["lo"]
    assert _phases(recorder) == ["start", "end"]
    llm_start = next(e for e in recorder.events if e.type is EventType.LLM)
    inner = next(e for e in recorder.events if e.type is EventType.TEMPLATING)
    consumer = next(e for e in recorder.events if e.type is EventType.RETRIEVE)
    assert inner.parent_id == llm_start.id
    assert consumer.trace_id != llm_start.trace_id
    assert recorder.ends()[-1].payload[EventPayload.COMPLETION] == "hello"


def test_generator_event_ends_when_closed_early(cm, recorder) -> None:
    @cm.traced(EventType.LLM)
    def stream(prompt: str):
        yield from ("a", "b", "c")

    gen = stream("p")
    assert next(gen) == "a"
    gen.close()
    end = recorder.ends()[-1]
    assert end.type is EventType.LLM and end.exception is None
    assert end.payload[EventPayload.COMPLETION] == "a"


def test_generator_exception_is_attached_and_reaches_caller(cm, recorder) -> None:
    @cm.traced(EventType.LLM)
    def stream(prompt: str):
        yield "a"
        raise ValueError("model failed")

    with pytest.raises(ValueError, match="model failed"):
        list(stream("p"))
    end = recorder.ends()[-1]
    assert isinstance(end.exception, ValueError)


def test_generator_send_and_return_value_pass_through(cm) -> None:
    @cm.traced(EventType.AGENT_STEP)
    def echo(_):
        received = yield "ready"
        yield f"got {received}"
        return "done"

    gen = echo(None)
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"


def test_async_generator_ends_when_exhausted_or_closed(cm, recorder) -> None:
    @cm.traced(EventType.LLM)
    async def stream(prompt: str):
        for token in ("a", "b", "c"):
            await asyncio.sleep(0)
            yield token

    async def main() -> list[str]:
        got = [t async for t in stream("p")]
        agen = stream("q")
        await agen.__anext__()
        assert _phases(recorder) == ["start", "end", "start"]
        await agen.aclose()
        return got

    assert asyncio.run(main()) == ["a", "b", "c"]
    assert _phases(recorder) == ["start", "end", "start", "end"]


def test_async_generator_exception_is_attached(cm, recorder) -> None:
    @cm.traced(EventType.LLM)
    async def stream(prompt: str):
        yield "a"
        raise KeyError("boom")

    async def main() -> None:
        async for _ in stream("p"):
            pass

    with pytest.raises(KeyError):
        asyncio.run(main())
    assert isinstance(recorder.ends()[-1].exception, KeyError)


def test_exception_in_event_block_is_attached_and_propagates(cm, recorder) -> None:
    with pytest.raises(ZeroDivisionError):
        with cm.event(EventType.FUNCTION_CALL):
            raise ZeroDivisionError
    assert isinstance(recorder.ends()[0].exception, ZeroDivisionError)
    assert recorder.ends()[0].failed


def test_process_wide_traced_resolves_manager_at_call_time(monkeypatch, recorder) -> None:
    import callbacks
    from callbacks import _process as process

    @callbacks.traced(EventType.QUERY)
    def answer(q: str) -> str:
        return "a"

    manager = CallbackManager(plugins=[recorder])
    monkeypatch.setattr(process, "_manager", manager)
    assert answer("q") == "a"
    assert [e.type for e in recorder.events] == [EventType.QUERY, EventType.QUERY]
    manager.shutdown()
