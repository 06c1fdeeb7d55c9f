"""A handler that raises, hangs or tries to mutate cannot change the application's result."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from callbacks import CallbackManager, Event, EventPayload, EventType, hookimpl


class Raiser:
    callbacks_delivery = "inline"

    @hookimpl
    def on_llm_start(self, event: Event) -> None:
        raise RuntimeError("handler bug")


def test_handler_exception_does_not_reach_caller_and_is_counted(recorder, caplog) -> None:
    cm = CallbackManager(plugins=[Raiser(), recorder])

    def app() -> str:
        with cm.as_trace("q"):
            for _ in range(50):
                with cm.event(EventType.LLM):
                    pass
        return "answer"

    with caplog.at_level(logging.ERROR, logger="callbacks"):
        assert app() == "answer"
    cm.shutdown()
    assert len([e for e in recorder.events if e.type is EventType.LLM]) == 100
    stats = cm.stats()["raiser"]
    assert stats["errors"] == 50
    assert stats["errors_by_hook"] == {"on_llm_start": 50}
    logged = [r for r in caplog.records if "handler bug" in r.getMessage()]
    assert len(logged) == 1, "errors are rate-limited to one log line per hook per interval"
    assert "raiser" in logged[0].getMessage()


def test_background_handler_exception_is_counted_and_isolated(recorder) -> None:
    class BackgroundRaiser(Raiser):
        callbacks_delivery = "background"

    cm = CallbackManager(plugins=[BackgroundRaiser(), recorder])
    with cm.event(EventType.LLM):
        pass
    assert cm.flush(2.0)
    assert cm.stats()["backgroundraiser"]["errors"] == 1
    assert len(recorder.events) == 2
    cm.shutdown()


def test_strict_mode_reraises_for_plugin_authors(monkeypatch) -> None:
    monkeypatch.setenv("CALLBACKS_STRICT", "1")
    cm = CallbackManager(plugins=[Raiser()])
    with pytest.raises(RuntimeError, match="handler bug"):
        with cm.event(EventType.LLM):
            pass
    cm.shutdown()


def test_strict_mode_raises_background_errors_at_flush(monkeypatch) -> None:
    from callbacks import HandlerError

    class BackgroundRaiser(Raiser):
        callbacks_delivery = "background"

    monkeypatch.setenv("CALLBACKS_STRICT", "true")
    cm = CallbackManager(plugins=[BackgroundRaiser()])
    with cm.event(EventType.LLM):
        pass
    with pytest.raises(HandlerError, match="handler bug"):
        cm.flush(2.0)
    cm.shutdown()


def test_handler_cannot_change_the_payload_another_handler_sees() -> None:
    seen: list[dict] = []

    class Mutator:
        callbacks_delivery = "inline"

        @hookimpl
        def on_llm_start(self, event: Event) -> None:
            event.payload["formatted_prompt"] = "tampered"  # type: ignore[index]

        @hookimpl
        def on_event_start(self, event: Event) -> None:
            event.type = EventType.QUERY  # type: ignore[misc]

    class Reader:
        callbacks_delivery = "inline"

        @hookimpl
        def on_llm_start(self, event: Event) -> None:
            seen.append(dict(event.payload))

    original = {EventPayload.PROMPT: "hi"}
    cm = CallbackManager(plugins=[Mutator(), Reader()])
    with cm.event(EventType.LLM, payload=original):
        original[EventPayload.PROMPT] = "changed by the app after start"
    cm.shutdown()
    assert seen == [{EventPayload.PROMPT: "hi"}]
    assert cm.stats()["mutator"]["errors"] == 2


class Blocker:
    """A background plugin that blocks forever (until the test releases it)."""

    callbacks_delivery = "background"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    @hookimpl
    def on_event_start(self, event: Event) -> None:
        self.entered.set()
        self.release.wait()


def test_blocked_background_handler_does_not_block_the_caller(caplog) -> None:
    blocker = Blocker()
    cm = CallbackManager(plugins=[blocker], config={"queue_size": 100})
    try:
        with cm.event(EventType.LLM):
            pass
        assert blocker.entered.wait(5)
        for _ in range(10_000):
            with cm.event(EventType.LLM):
                pass
        stats = cm.stats()["blocker"]
        assert stats["queue_depth"] == 100
        assert stats["dropped"] == 10_000 - 100
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="callbacks"):
            finished = cm.shutdown(timeout=0.5)
        elapsed = time.monotonic() - started
        assert not finished
        assert elapsed < 1.5
        assert cm.stats()["blocker"]["stuck"] is True
        warning = " ".join(r.getMessage() for r in caplog.records)
        assert "9900 dropped" in warning and "stuck" in warning
    finally:
        blocker.release.set()


def test_drop_oldest_policy_keeps_the_newest_events() -> None:
    blocker = Blocker()
    seen: list[int] = []

    class Keeper(Blocker):
        @hookimpl
        def on_event_start(self, event: Event) -> None:
            super().on_event_start(event)
            seen.append(event.payload["n"])

    keeper = Keeper()
    cm = CallbackManager(plugins=[keeper], config={"queue_size": 10, "overflow": "drop_oldest"})
    with cm.event(EventType.LLM, payload={"n": -1}):
        pass
    assert keeper.entered.wait(5)
    for n in range(100):
        with cm.event(EventType.LLM, payload={"n": n}):
            pass
    assert cm.stats()["keeper"]["dropped"] == 90
    keeper.release.set()
    assert cm.flush(5)
    assert seen == [-1, *range(90, 100)]
    cm.shutdown()
    blocker.release.set()
