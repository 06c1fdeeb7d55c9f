"""Host structure: isolation on every delivery path, lifecycle hooks bound by pluggy, ordering,
traces that carry data only, and a host that knows no plugin by name."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pluggy
import pytest

import callbacks
from callbacks import CallbackManager, Event, EventType, Trace, hookimpl
from callbacks.testing import RecordingPlugin


class PluginBug(LookupError):
    """Not a RuntimeError: isolation must catch any Exception, not one family."""


_ARGUMENT = {
    "on_trace_start": "trace",
    "on_trace_end": "trace",
    "callbacks_configure": "settings",
    "callbacks_flush": "timeout",
    "callbacks_shutdown": "timeout",
}


def _raising(argument: str):  # type: ignore[no-untyped-def]
    def event(self, event):  # type: ignore[no-untyped-def]
        raise PluginBug("plugin bug")

    def trace(self, trace):  # type: ignore[no-untyped-def]
        raise PluginBug("plugin bug")

    def settings(self, settings):  # type: ignore[no-untyped-def]
        raise PluginBug("plugin bug")

    def timeout(self, timeout):  # type: ignore[no-untyped-def]
        raise PluginBug("plugin bug")

    return {"event": event, "trace": trace, "settings": settings, "timeout": timeout}[argument]


def _raiser(delivery: str, hook: str) -> object:
    """A plugin whose ``hook`` raises; its ``on_event_start``/``on_event_end`` (called after a
    type-specific hook of the same plugin) record what still arrived."""

    class Raiser:
        callbacks_delivery = delivery
        callbacks_name = "raiser"

        def __init__(self) -> None:
            self.after: list[Event] = []

        @hookimpl
        def on_event_start(self, event: Event) -> None:
            self.after.append(event)

        @hookimpl
        def on_event_end(self, event: Event) -> None:
            self.after.append(event)

    setattr(Raiser, hook, hookimpl(_raising(_ARGUMENT.get(hook, "event"))))
    return Raiser()


def _app(cm: CallbackManager) -> str:
    with cm.as_trace("q"):
        for _ in range(3):
            with cm.event(EventType.LLM) as llm:
                llm.on_end({"completion": "a"})
    return "answer"


EVENT_PATHS = [
    pytest.param("inline", "on_llm_start", id="inline-start"),
    pytest.param("inline", "on_llm_end", id="inline-end"),
    pytest.param("background", "on_llm_start", id="background-start"),
    pytest.param("background", "on_llm_end", id="background-end"),
]


@pytest.mark.parametrize(("delivery", "hook"), EVENT_PATHS)
def test_raising_event_hook_is_isolated_on_every_path(delivery: str, hook: str) -> None:
    raiser, recorder = _raiser(delivery, hook), RecordingPlugin()
    cm = CallbackManager(plugins=[raiser, recorder])
    assert _app(cm) == "answer"
    assert cm.flush(5.0)
    stats = cm.stats()["raiser"]
    assert stats["errors_by_hook"] == {hook: 3}
    # The same plugin's next hook for that event still ran, and so did the other plugin.
    phase = "start" if hook.endswith("start") else "end"
    assert len([e for e in raiser.after if e.phase.value == phase]) == 3  # type: ignore[attr-defined]
    assert len(recorder.events) == 6
    assert stats["delivered"] == 6
    cm.shutdown()


@pytest.mark.parametrize("delivery", ["inline", "background"])
@pytest.mark.parametrize("hook", ["on_trace_start", "on_trace_end"])
def test_raising_trace_hook_is_isolated(delivery: str, hook: str) -> None:
    raiser, recorder = _raiser(delivery, hook), RecordingPlugin()
    cm = CallbackManager(plugins=[raiser, recorder])
    assert _app(cm) == "answer"
    assert _app(cm) == "answer"
    assert cm.flush(5.0)
    assert cm.stats()["raiser"]["errors_by_hook"] == {hook: 2}
    assert len(recorder.traces) == 2
    assert len(raiser.after) == 12  # type: ignore[attr-defined]
    cm.shutdown()


@pytest.mark.parametrize("delivery", ["inline", "background"])
@pytest.mark.parametrize("hook", ["callbacks_configure", "callbacks_flush", "callbacks_shutdown"])
def test_raising_lifecycle_hook_is_isolated(delivery: str, hook: str) -> None:
    raiser = _raiser(delivery, hook)
    cm = CallbackManager(plugins=[raiser])
    assert _app(cm) == "answer"
    assert cm.flush(5.0) is True
    assert cm.shutdown(5.0) is True
    stats = cm.stats()["raiser"]
    assert stats["errors_by_hook"] == {hook: 1}
    assert len(raiser.after) == 6  # type: ignore[attr-defined]


def test_lifecycle_hooks_may_declare_any_subset_of_their_arguments() -> None:
    calls: list[tuple[str, tuple[object, ...]]] = []

    class Terse:
        callbacks_delivery = "background"

        @hookimpl
        def callbacks_configure(self, manager):  # no settings
            calls.append(("configure", (manager,)))

        @hookimpl
        def callbacks_flush(self):  # no timeout
            calls.append(("flush", ()))

        @hookimpl
        def callbacks_shutdown(self):  # no timeout
            calls.append(("shutdown", (threading.current_thread().name,)))

        @hookimpl
        def on_llm_start(self, event):
            calls.append(("event", ()))

    cm = CallbackManager(plugins=[Terse()])
    with cm.event(EventType.LLM):
        pass
    assert cm.flush(5.0)
    assert cm.shutdown(5.0)
    assert [name for name, _ in calls] == ["configure", "event", "flush", "shutdown"]
    assert calls[0][1] == (cm,)
    assert calls[3][1] == ("callbacks-terse",), "shutdown runs on the plugin's own worker"
    assert cm.stats()["terse"]["errors"] == 0


def test_unregister_runs_a_shutdown_hook_that_takes_no_arguments() -> None:
    seen: list[str] = []

    class Closer:
        callbacks_delivery = "background"

        @hookimpl
        def on_llm_end(self, event):
            seen.append("event")

        @hookimpl
        def callbacks_shutdown(self):
            seen.append("shutdown")

    plugin = Closer()
    cm = CallbackManager(plugins=[plugin])
    for _ in range(5):
        with cm.event(EventType.LLM):
            pass
    assert cm.unregister("closer") is plugin
    assert seen == ["event"] * 5 + ["shutdown"], "queued events first, then the shutdown hook"
    assert not cm.pluginmanager.is_registered(plugin)
    assert cm.get_plugin("closer") is None
    cm.shutdown()
    assert seen.count("shutdown") == 1


def _order_plugin(name: str, log: list[str], marker: dict[str, bool]) -> object:
    class Ordered:
        callbacks_delivery = "inline"
        callbacks_name = name

        @hookimpl(**marker)
        def on_llm_start(self, event):
            log.append(name)

    return Ordered()


def test_tryfirst_and_trylast_order_inline_plugins_and_the_rest_keep_registration_order() -> None:
    log: list[str] = []
    plugins = [
        _order_plugin("plain-1", log, {}),
        _order_plugin("last", log, {"trylast": True}),
        _order_plugin("first", log, {"tryfirst": True}),
        _order_plugin("plain-2", log, {}),
    ]
    cm = CallbackManager(plugins=plugins)
    with cm.event(EventType.LLM):
        pass
    assert log == ["first", "plain-1", "plain-2", "last"]
    # pluggy groups the markers the same way (it runs plain hooks newest first).
    log.clear()
    cm.pluginmanager.hook.on_llm_start(event=None)
    assert (log[0], log[-1]) == ("first", "last")
    cm.shutdown()


def test_trace_handed_to_plugins_carries_data_only(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    with cm.as_trace("q") as trace:
        with cm.event(EventType.LLM):
            pass
    ended = recorder.traces[0]
    assert ended is trace and isinstance(ended, Trace)
    bookkeeping = {"_nesting", "_previous_frame", "nesting", "previous", "frame", "pending"}
    assert not bookkeeping & set(dir(Trace))
    with pytest.raises(AttributeError):
        ended.name = "renamed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ended.end_time_ns = 0  # type: ignore[misc]
    assert ended.counts == {EventType.LLM: 1} and ended.name == "q"
    cm.shutdown()


def test_wrappers_are_rejected_and_markers_are_not() -> None:
    class Marked:
        callbacks_delivery = "inline"

        @hookimpl(tryfirst=True)
        def on_llm_start(self, event):
            pass

    class Wrapper:
        @hookimpl(wrapper=True)
        def on_llm_start(self, event):
            return (yield)

    cm = CallbackManager(plugins=[Marked()])
    with pytest.raises(pluggy.PluginValidationError, match="hook wrapper"):
        cm.register(Wrapper())
    cm.shutdown()


CORE = Path(callbacks.__file__).parent
PLUGIN_NAMES = {"tokens", "debug", "finetuning", "demo", "wandb", "aim", "openinference"}


def _code_strings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    }


def test_the_host_knows_no_plugin_by_name() -> None:
    found = {
        (path.name, text)
        for path in CORE.rglob("*.py")
        for text in _code_strings(path)
        if text.lower() in PLUGIN_NAMES or any(f"{n}_" in text.lower() for n in ("wandb", "aim_"))
    }
    assert found == set()
    assert not (CORE / "demo").exists()


def test_internal_modules_are_private_and_the_api_comes_from_the_package() -> None:
    public = {p.stem for p in CORE.glob("*.py") if not p.stem.startswith("_")}
    assert public == {
        "collect",
        "encodings",
        "events",
        "hookspecs",
        "kinds",
        "payloads",
        "testing",
        "tokencount",
        "wire",
    }
    for name in callbacks.__all__:
        assert getattr(callbacks, name) is not None


@pytest.mark.parametrize("delivery", ["inline", "background"])
def test_flush_returns_false_when_a_plugin_says_it_lost_data(delivery: str) -> None:
    class Lossy:
        callbacks_delivery = delivery

        def __init__(self) -> None:
            self.lost = False

        @hookimpl
        def callbacks_flush(self):
            return False if self.lost else None

    lossy = Lossy()
    cm = CallbackManager(plugins=[lossy, RecordingPlugin()])
    try:
        assert cm.flush(timeout=5.0) is True
        lossy.lost = True
        assert cm.flush(timeout=5.0) is False
        assert cm.flush(timeout=5.0, plugin="recorder") is True
    finally:
        cm.shutdown()


@pytest.mark.parametrize("delivery", ["inline", "background"])
def test_a_plugin_whose_configure_returns_false_gets_no_events(delivery: str) -> None:
    class Dormant(RecordingPlugin):
        callbacks_name = "dormant"
        callbacks_delivery = delivery

        @hookimpl
        def callbacks_configure(self):
            return False

    dormant, awake = Dormant(), RecordingPlugin()
    cm = CallbackManager(plugins=[dormant, awake])
    try:
        with cm.as_trace("t"), cm.event(EventType.LLM):
            pass
        assert cm.flush(timeout=5.0)
        assert len(awake.events) == 2 and dormant.events == [] and dormant.traces == []
        stats = cm.stats()
        assert stats["dormant"]["listening"] is False and stats["dormant"]["delivered"] == 0
        assert stats["recorder"]["listening"] is True
    finally:
        cm.shutdown()


def test_nothing_listens_when_the_only_plugin_is_dormant() -> None:
    class Dormant:
        @hookimpl
        def callbacks_configure(self):
            return False

        @hookimpl
        def on_event_start(self, event):
            raise AssertionError("a dormant plugin got an event")

    cm = CallbackManager(plugins=[Dormant()])
    try:
        assert cm.event(EventType.LLM) is cm.event(EventType.EMBEDDING)  # the shared no-op
    finally:
        cm.shutdown()
