"""Every event type reaches its own hookspec and the generic hooks, with correct ids and parents."""

from __future__ import annotations

import pytest

from callbacks import ROOT, CallbackManager, Event, EventPayload, EventType, hookimpl
from callbacks.events import EventPhase


def _typed_plugin(calls: list[tuple[str, Event]]) -> object:
    """A plugin implementing on_<type>_start/end for all 15 types plus the generic hooks."""
    namespace: dict[str, object] = {"callbacks_delivery": "inline"}
    hook_names = [f"on_{t.value}_{p}" for t in EventType for p in ("start", "end")]
    for name in [*hook_names, "on_event_start", "on_event_end"]:

        def impl(self, event: Event, _name: str = name) -> None:
            calls.append((_name, event))

        impl.__name__ = name
        namespace[name] = hookimpl(impl)
    return type("AllHooks", (), namespace)()


def test_all_fourteen_event_types_exist_with_llamaindex_values() -> None:
    assert len(EventType) == 15
    assert EventType.NODE_PARSING.value == "node_parsing"
    assert EventPayload.PROMPT.value == "formatted_prompt"
    assert EventPayload.FUNCTION_OUTPUT.value == "function_call_response"


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_event_type_reaches_its_own_hook_and_the_generic_hooks(event_type: EventType) -> None:
    calls: list[tuple[str, Event]] = []
    cm = CallbackManager(plugins=[_typed_plugin(calls)])
    with cm.as_trace("q") as trace:
        with cm.event(EventType.QUERY) as outer:
            with cm.event(event_type, payload={EventPayload.QUERY_STR: "x"}) as scope:
                scope.on_end(payload={EventPayload.RESPONSE: "y"})
    cm.shutdown()
    names = [name for name, _ in calls]
    specific_start = f"on_{event_type.value}_start"
    specific_end = f"on_{event_type.value}_end"
    inner = [(n, e) for n, e in calls if e.id == scope.id]
    assert [n for n, _ in inner] == [specific_start, "on_event_start", specific_end, "on_event_end"]
    start, end = inner[0][1], inner[2][1]
    assert start.phase is EventPhase.START and end.phase is EventPhase.END
    assert start.type is end.type is event_type
    assert start.parent_id == end.parent_id == outer.id
    assert start.trace_id == end.trace_id == trace.id
    assert start.payload[EventPayload.QUERY_STR] == "x"
    assert end.payload[EventPayload.RESPONSE] == "y"
    assert end.duration_ns is not None and end.duration_ns >= 0
    assert end.start is start and start.start is None
    assert dict(end.full_payload) == {EventPayload.QUERY_STR: "x", EventPayload.RESPONSE: "y"}
    assert names.count("on_event_start") == 2
    outer_start = next(e for n, e in calls if n == "on_event_start" and e.id == outer.id)
    assert outer_start.parent_id == ROOT
    assert trace.trace_map == {ROOT: [outer.id], outer.id: [scope.id]}


def test_explicit_start_end_api_nests_and_returns_ids(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    cm.start_trace("query")
    outer = cm.on_event_start(EventType.QUERY, payload={EventPayload.QUERY_STR: "q"})
    inner = cm.on_event_start(EventType.RETRIEVE)
    cm.on_event_end(EventType.RETRIEVE, payload={EventPayload.NODES: []}, event_id=inner)
    cm.on_event_end(EventType.QUERY, event_id=outer)
    trace = cm.end_trace("query")
    cm.shutdown()
    assert isinstance(outer, str) and isinstance(inner, str)
    assert trace is not None and trace.trace_map == {ROOT: [outer], outer: [inner]}
    assert [(e.type, e.phase.value) for e in recorder.events] == [
        (EventType.QUERY, "start"),
        (EventType.RETRIEVE, "start"),
        (EventType.RETRIEVE, "end"),
        (EventType.QUERY, "end"),
    ]
    assert recorder.traces == [trace]


def test_nothing_is_built_when_no_plugin_listens() -> None:
    cm = CallbackManager()
    with cm.as_trace("q") as trace:
        with cm.event(EventType.LLM) as scope:
            pass
    assert scope.id is None
    assert trace.trace_map == {}
    cm.shutdown()


def test_a_plugin_listening_only_to_llm_gets_only_llm_events() -> None:
    seen: list[Event] = []

    class OnlyLLM:
        callbacks_delivery = "inline"

        @hookimpl
        def on_llm_end(self, event: Event) -> None:
            seen.append(event)

    cm = CallbackManager(plugins=[OnlyLLM()])
    with cm.as_trace("q"):
        with cm.event(EventType.RETRIEVE):
            pass
        with cm.event(EventType.LLM):
            pass
    cm.shutdown()
    assert [e.type for e in seen] == [EventType.LLM]


def test_misspelled_hook_is_rejected_with_pluggy_validation_error() -> None:
    import pluggy

    class Typo:
        @hookimpl
        def on_llm_strat(self, event: Event) -> None:
            pass

    cm = CallbackManager()
    with pytest.raises(pluggy.PluginValidationError):
        cm.register(Typo())
    assert cm.list_plugins() == {}
    cm.shutdown()


def test_unregister_shuts_the_plugin_down_and_stops_delivery() -> None:
    from callbacks.testing import RecordingPlugin

    class Closing(RecordingPlugin):
        closed = False

        @hookimpl
        def callbacks_shutdown(self, timeout: float) -> None:
            self.closed = True

    plugin = Closing(delivery="background")
    cm = CallbackManager(plugins=[plugin])
    with cm.event(EventType.LLM):
        pass
    assert cm.unregister("recorder") is plugin
    assert plugin.closed and len(plugin.events) == 2
    assert cm.get_plugin("recorder") is None and cm.list_plugins() == {}
    with cm.event(EventType.LLM):
        pass
    assert len(plugin.events) == 2
    assert cm.unregister("recorder") is None
    cm.shutdown()


def test_process_wide_manager_loads_installed_plugins_lazily(monkeypatch, tmp_path) -> None:
    import callbacks

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALLBACKS_PLUGINS", '["example"]')
    callbacks.reset_manager()
    try:
        manager = callbacks.get_manager()
        assert callbacks.get_manager() is manager
        assert list(manager.list_plugins()) == ["example"]
        example = manager.get_plugin("example")
        with manager.event(EventType.LLM):
            pass
        assert example.llm_starts == 1
    finally:
        callbacks.reset_manager()
    assert manager.closed


def test_hook_wrappers_are_rejected_rather_than_silently_skipped() -> None:
    import pluggy

    class Wrapper:
        @hookimpl(wrapper=True)
        def on_llm_start(self, event: Event):
            return (yield)

    cm = CallbackManager()
    with pytest.raises(pluggy.PluginValidationError, match="hook wrapper"):
        cm.register(Wrapper())
    assert cm.list_plugins() == {}
    cm.shutdown()
