"""The :class:`CallbackManager`: times events, keeps each trace's map, hands events to plugins."""

from __future__ import annotations

import atexit
import contextvars
import itertools
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .delivery import Calls, DeliveryMode, PluginChannel, count_value
from .errors import ConfigError
from .events import (
    EMPTY_PAYLOAD,
    INPUT_KEYS,
    OUTPUT_KEYS,
    ROOT,
    Event,
    EventAbandoned,
    EventPhase,
    EventType,
)
from .plugins import InstalledPlugin, discover, instantiate, select
from .trace import Trace

if TYPE_CHECKING:
    from .config import Config, HostSettings
from .tracing import NOOP_SCOPE, EventScope, TraceScope, _NoopScope, new_event_id, traced_function

__all__ = ["CallbackManager"]

logger = logging.getLogger(__name__)

_START = EventPhase.START
_END = EventPhase.END
_monotonic_ns = time.monotonic_ns
_get_ident = threading.get_ident
_HIDDEN = "<hidden>"
_MAX_PENDING = 100_000

Route = tuple[
    tuple[tuple[PluginChannel, Calls], ...],
    tuple[PluginChannel, ...],
]
"""(inline deliveries, background channels) for one kind of event. A background channel looks
its calls up on its worker (``PluginChannel.event_calls``), so only the event is queued."""

_EMPTY_ROUTE: Route = ((), ())
_managers: weakref.WeakSet[CallbackManager] = weakref.WeakSet()


class CallbackManager:
    """Times and counts events, keeps one trace map per trace, and delivers events to plugins.

    ``plugins`` are registered as given (objects, modules or classes). With
    ``load_entrypoints=True`` the installed plugins of the ``callbacks`` entry-point group are
    loaded too, as selected by the configuration. ``config`` holds settings given in code, the
    highest-priority source (host keys, and one mapping per plugin section).
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        load_entrypoints: bool = False,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from .config import load_config  # pydantic-settings is imported on first use only

        self.config: Config = load_config(config)
        self.settings: HostSettings = self.config.host
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._channels: dict[str, PluginChannel] = {}
        self._routes: dict[EventType, tuple[Route, Route] | None] = dict.fromkeys(EventType)
        self._trace_routes: tuple[Route, Route] = (_EMPTY_ROUTE, _EMPTY_ROUTE)
        self._frame: contextvars.ContextVar[tuple[Trace, str] | None] = contextvars.ContextVar(
            "callbacks_frame", default=None
        )
        self._pending: dict[str, tuple[EventScope, Any]] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._masking = bool(
            self.settings.hide_inputs
            or self.settings.hide_outputs
            or self.settings.max_payload_chars
        )
        # itertools.count increments atomically under the GIL, so these stay exact across threads.
        self._host_counts = {
            name: itertools.count()
            for name in ("traces", "sampled_out", "abandoned", "unmatched_ends")
        }
        self.installed: list[InstalledPlugin] = []
        for plugin in plugins:
            self.register(plugin)
        if load_entrypoints:
            self._load_entrypoints()
        _managers.add(self)

    # -- plugins -------------------------------------------------------------------------------

    @property
    def pluginmanager(self) -> pluggy.PluginManager:
        """The underlying pluggy ``PluginManager`` (hook specs, registrations, blocking)."""
        return self._pm

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object, module or class (instantiated with no arguments); validate its
        hooks and its settings, configure it, and start delivering events to it. Returns its name.

        Raises ``pluggy.PluginValidationError`` for a bad hook and :class:`ConfigError` for bad
        settings; the plugin is then not registered.
        """
        plugin = instantiate(plugin)
        mode = getattr(plugin, "callbacks_delivery", "background")
        if mode not in ("inline", "background"):
            raise ConfigError(
                f"plugin {name or plugin!r} has callbacks_delivery={mode!r}; "
                f"expected 'inline' or 'background'"
            )
        with self._lock:
            name = self._unique_name(name or self._default_name(plugin))
            self._pm.register(plugin, name)
            try:
                self._pm.check_pending()
                self._reject_wrappers(plugin)
                settings = self._plugin_settings(name, plugin)
            except Exception:
                self._pm.unregister(plugin, name)
                raise
            channel = PluginChannel(
                name,
                plugin,
                mode,  # type: ignore[arg-type]
                queue_size=self.settings.queue_size,
                overflow=self.settings.overflow,
                strict=self.settings.strict,
            )
            channel.settings = settings
            self._channels[name] = channel
            configure = self._impl(plugin, "callbacks_configure")
            if configure is not None:
                channel.call_hook("callbacks_configure", configure, settings=settings, manager=self)
            self._rebuild_routes()
        return name

    def unregister(self, name_or_plugin: str | object, timeout: float = 5.0) -> object | None:
        """Shut a plugin down (its ``callbacks_shutdown`` runs, its queue drains for at most
        ``timeout`` seconds) and stop delivering to it. Returns the plugin object."""
        with self._lock:
            channel = self._find_channel(name_or_plugin)
            if channel is None:
                return None
            del self._channels[channel.name]
            self._rebuild_routes()
            self._pm.unregister(channel.plugin, channel.name)
        self._shutdown_channel(channel, time.monotonic() + timeout, timeout)
        return channel.plugin

    def get_plugin(self, name: str) -> Any:
        """The registered plugin object called ``name``, or ``None``."""
        channel = self._channels.get(name)
        return channel.plugin if channel is not None else None

    def name_of(self, plugin: object) -> str | None:
        """The name a plugin object is registered under, or ``None``."""
        channel = self._find_channel(plugin)
        return channel.name if channel is not None else None

    def list_plugins(self) -> dict[str, object]:
        """``{name: plugin}`` for every registered plugin."""
        return {name: channel.plugin for name, channel in self._channels.items()}

    def delivery_mode(self, name: str) -> DeliveryMode:
        """``"inline"`` or ``"background"`` for a registered plugin."""
        return self._channels[name].mode

    def hooks_of(self, name: str) -> list[str]:
        """The hook names a registered plugin implements."""
        plugin = self._channels[name].plugin
        return sorted(caller.name for caller in self._pm.get_hookcallers(plugin) or ())

    def _load_entrypoints(self) -> None:
        self.installed = discover()
        origin = self.config.host_origins.get("plugins")
        select(self.installed, self.settings, origin.describe() if origin is not None else "")
        for entry in self.installed:
            if not entry.active:
                continue
            try:
                self.register(entry.load(), entry.name)
            except ConfigError:
                raise
            except Exception as error:
                entry.active = False
                entry.reason = "failed to load"
                entry.error = f"{type(error).__name__}: {error}"
                logger.warning("callbacks plugin %r failed to load: %s", entry.name, entry.error)

    @staticmethod
    def _default_name(plugin: object) -> str:
        explicit = getattr(plugin, "callbacks_name", None)
        if isinstance(explicit, str):
            return explicit
        if isinstance(plugin, ModuleType):
            return plugin.__name__
        return type(plugin).__name__

    def _unique_name(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self._channels or self._pm.has_plugin(candidate):
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def _find_channel(self, name_or_plugin: str | object) -> PluginChannel | None:
        if isinstance(name_or_plugin, str) and name_or_plugin in self._channels:
            return self._channels[name_or_plugin]
        for channel in self._channels.values():
            if channel.plugin is name_or_plugin:
                return channel
        return None

    def _reject_wrappers(self, plugin: object) -> None:
        # Hooks are called straight from the dispatch table, so a wrapper would never run.
        for caller in self._pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.hookwrapper or getattr(impl, "wrapper", False)):
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"{caller.name} is declared as a hook wrapper; callbacks calls each hook "
                        f"directly, so implement it as a plain hook",
                    )

    def _impl(self, plugin: object, hook_name: str) -> Callable[..., Any] | None:
        """The plugin's implementation of a lifecycle hook, called with keyword arguments of
        which it receives only those it declares (as pluggy does)."""
        caller = getattr(self._pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                function, argnames = impl.function, impl.argnames
                return lambda **kwargs: function(*(kwargs[name] for name in argnames))
        return None

    def _plugin_settings(self, name: str, plugin: object) -> Any:
        declare = self._impl(plugin, "callbacks_settings")
        model = declare() if declare is not None else None
        return self.config.settings_for(name, model)

    def plugin_settings(self, name: str) -> Any:
        """The validated settings a registered plugin was configured with, or ``None``."""
        return self._channels[name].settings

    def settings_model(self, name: str) -> Any:
        """The settings model a registered plugin declares, or ``None``."""
        declare = self._impl(self._channels[name].plugin, "callbacks_settings")
        return declare() if declare is not None else None

    def _rebuild_routes(self) -> None:
        functions: dict[str, dict[str, Callable[..., Any]]] = {}
        for channel in self._channels.values():
            functions[channel.name] = {}
        for hook_name in dir(self._pm.hook):
            caller = getattr(self._pm.hook, hook_name)
            if not isinstance(caller, pluggy.HookCaller):
                continue
            for impl in caller.get_hookimpls():
                for channel in self._channels.values():
                    if impl.plugin is channel.plugin:
                        functions[channel.name][hook_name] = impl.function

        def route(*hook_names: str) -> Route:
            inline: list[tuple[PluginChannel, Calls]] = []
            background: list[PluginChannel] = []
            for channel in self._channels.values():
                fns = functions[channel.name]
                calls = tuple((h, fns[h]) for h in hook_names if h in fns)
                if calls:
                    if channel.mode == "inline":
                        inline.append((channel, calls))
                    else:
                        background.append(channel)
            return tuple(inline), tuple(background)

        def calls_of(channel: PluginChannel, phase: str) -> dict[EventType, Calls]:
            fns = functions[channel.name]
            table = {}
            for event_type in EventType:
                names = (f"on_{event_type.value}_{phase}", f"on_event_{phase}")
                calls = tuple((h, fns[h]) for h in names if h in fns)
                if calls:
                    table[event_type] = calls
            return table

        for channel in self._channels.values():
            channel.event_calls = {
                _START: calls_of(channel, "start"),
                _END: calls_of(channel, "end"),
            }
        self._trace_calls = {
            hook: {
                c.name: tuple((h, functions[c.name][h]) for h in (hook,) if h in functions[c.name])
                for c in self._channels.values()
            }
            for hook in ("on_trace_start", "on_trace_end")
        }
        trace_routes = (route("on_trace_start"), route("on_trace_end"))
        traces_heard = trace_routes != (_EMPTY_ROUTE, _EMPTY_ROUTE)
        routes: dict[EventType, tuple[Route, Route] | None] = {}
        for event_type in EventType:
            start = route(f"on_{event_type.value}_start", "on_event_start")
            end = route(f"on_{event_type.value}_end", "on_event_end")
            heard = traces_heard or start != _EMPTY_ROUTE or end != _EMPTY_ROUTE
            routes[event_type] = (start, end) if heard and not self._closed else None
        self._routes = routes
        self._trace_routes = trace_routes

    # -- delivery ------------------------------------------------------------------------------

    def _deliver(self, route: Route, item: Any, trace_hook: str | None = None) -> None:
        """Deliver an event, or with ``trace_hook`` a trace, off the hot path."""
        inline, background = route
        for channel, calls in inline:
            channel.call(calls, item)
        for channel in background:
            if trace_hook is None:
                channel.enqueue(item)
            else:
                channel.enqueue((self._trace_calls[trace_hook][channel.name], item))

    def _freeze(self, payload: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if not payload:
            return EMPTY_PAYLOAD
        if not self._masking:
            return MappingProxyType(dict(payload))
        settings = self.settings
        limit = settings.max_payload_chars
        frozen: dict[str, Any] = {}
        for key, value in payload.items():
            if (settings.hide_inputs and key in INPUT_KEYS) or (
                settings.hide_outputs and key in OUTPUT_KEYS
            ):
                value = _HIDDEN
            elif limit is not None:
                value = _truncate(value, limit)
            frozen[key] = value
        return MappingProxyType(frozen)

    # -- events --------------------------------------------------------------------------------

    def event(
        self,
        event_type: EventType,
        payload: Mapping[Any, Any] | None = None,
        *,
        event_id: str | None = None,
        parent_id: str | None = None,
    ) -> EventScope | _NoopScope:
        """A context manager for one event: it starts on entry and ends on exit, with the
        exception attached if the block raised. Call ``scope.on_end(payload=...)`` inside the
        block to set the end payload. When no plugin listens, this costs next to nothing."""
        if self._routes[event_type] is None:
            return NOOP_SCOPE
        return EventScope(self, event_type, payload, event_id, parent_id)

    def on_event_start(
        self,
        event_type: EventType,
        payload: Mapping[Any, Any] | None = None,
        event_id: str | None = None,
        parent_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Start an event (LlamaIndex style); later events in this context nest under it until
        :meth:`on_event_end`. Returns the event id."""
        event_id = event_id or new_event_id()
        if self._routes[event_type] is None:
            return event_id
        previous = self._frame.get()
        scope = EventScope(self, event_type, payload, event_id, parent_id)
        scope.__enter__()
        if scope._start is None and not scope._implicit:
            return event_id  # sampled out
        scope._token = None  # the event stays the parent in this context until its end
        pending = self._pending
        pending[event_id] = (scope, previous)
        if len(pending) > _MAX_PENDING:
            oldest, _ = pending.pop(next(iter(pending)))
            if oldest._start is not None and oldest._trace is not None:
                self._abandon(oldest._start, oldest._trace)
        return event_id

    def on_event_end(
        self,
        event_type: EventType,
        payload: Mapping[Any, Any] | None = None,
        event_id: str | None = None,
        exception: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        """End an event started with :meth:`on_event_start`; an unknown id is counted, ignored."""
        entry = self._pending.pop(event_id, None) if event_id is not None else None
        if entry is None:
            if self._routes[event_type] is not None:
                next(self._host_counts["unmatched_ends"])
            return
        scope, previous = entry
        frame = self._frame.get()
        if frame is not None and frame[1] == event_id:
            self._frame.set(previous)
        scope.finish(payload, exception)

    def _abandon(self, start: Event, trace: Trace) -> None:
        if trace._open.pop(start.id, None) is None:
            return
        next(self._host_counts["abandoned"])
        now = _monotonic_ns()
        duration = now - start.time_ns
        end = Event(
            start.id,
            start.type,
            _END,
            start.trace_id,
            start.parent_id,
            now,
            EMPTY_PAYLOAD,
            duration,
            EventAbandoned(f"{start.type.value} event {start.id} never ended"),
            _get_ident(),
            None,
            start,
        )
        trace._durations.setdefault(start.type, []).append(duration)
        routes = self._routes[start.type]
        if routes is not None:
            self._deliver(routes[1], end)

    # -- traces --------------------------------------------------------------------------------

    def _open_trace(self, name: str, *, implicit: bool, trace_id: str | None = None) -> Trace:
        rate = self.settings.sample_rate
        sampled = rate >= 1.0 or random.random() < rate
        trace = Trace(name, _monotonic_ns(), trace_id=trace_id, implicit=implicit, sampled=sampled)
        next(self._host_counts["traces"])
        if sampled:
            self._deliver(self._trace_routes[0], trace, "on_trace_start")
        else:
            next(self._host_counts["sampled_out"])
        return trace

    def _close_trace(self, trace: Trace) -> None:
        if trace.end_time_ns is not None:
            return
        if trace._open:
            for event_id in list(trace._open):
                self._pending.pop(event_id, None)
                start = trace._open.get(event_id)
                if start is not None:
                    self._abandon(start, trace)
        trace.end_time_ns = _monotonic_ns()
        if trace.sampled:
            self._deliver(self._trace_routes[1], trace, "on_trace_end")

    def as_trace(self, name: str = "trace", *, trace_id: str | None = None) -> TraceScope:
        """A context manager for one trace; it yields the :class:`Trace`. Inside an active trace
        it joins that trace instead of starting another (as LlamaIndex does)."""
        return TraceScope(self, name, trace_id)

    def start_trace(self, name: str | None = None, *, trace_id: str | None = None) -> Trace:
        """Start a trace in the current context (LlamaIndex style); nested calls are counted and
        only the outermost starts a trace. Pair with :meth:`end_trace`."""
        frame = self._frame.get()
        if frame is not None and frame[0].end_time_ns is None and not frame[0].implicit:
            trace = frame[0]
            trace._nesting += 1
            return trace
        trace = self._open_trace(name or "trace", implicit=False, trace_id=trace_id)
        trace._previous_frame = frame
        trace._nesting = 1
        self._frame.set((trace, ROOT))
        return trace

    def end_trace(self, name: str | None = None, trace_map: Any = None) -> Trace | None:
        """End the trace :meth:`start_trace` started in this context (the outermost call ends it).
        Returns the trace, or ``None`` when no trace is active."""
        frame = self._frame.get()
        if frame is None or frame[0].end_time_ns is not None:
            return None
        trace = frame[0]
        trace._nesting -= 1
        if trace._nesting > 0:
            return trace
        self._frame.set(trace._previous_frame)
        self._close_trace(trace)
        return trace

    def current_trace(self) -> Trace | None:
        """The trace active in this context, if any."""
        frame = self._frame.get()
        return frame[0] if frame is not None and frame[0].end_time_ns is None else None

    def current_event_id(self) -> str | None:
        """The id of the innermost running event in this context, if any."""
        frame = self._frame.get()
        return frame[1] if frame is not None and frame[1] != ROOT else None

    def traced(
        self,
        event_type: EventType,
        *,
        payload: Callable[..., Mapping[str, Any]] | None = None,
        output_key: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function (sync, async, generator or async generator) so each call is one
        event of ``event_type``. ``payload(*args, **kwargs)`` builds the start payload (default:
        the first argument under the type's usual input key); the result goes under
        ``output_key`` (default: the type's usual output key). A stream's event ends when the
        stream is exhausted or closed."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            return traced_function(lambda: self, fn, event_type, payload, output_key)

        return decorate

    # -- flush, shutdown, stats ----------------------------------------------------------------

    def flush(self, timeout: float = 5.0, *, plugin: str | object | None = None) -> bool:
        """Wait until every event emitted so far has been handled (by ``plugin`` only, given by
        name or as the plugin object; a plugin that is not registered has nothing to wait for)
        and run the plugins' ``callbacks_flush``. Returns False if ``timeout`` ran out. In
        strict mode, raises the first error a background hook raised."""
        deadline = time.monotonic() + timeout
        if plugin is None:
            channels = list(self._channels.values())
        else:
            channel = self._find_channel(plugin)
            channels = [channel] if channel is not None else []
        ok = True
        for channel in channels:
            if threading.current_thread() is getattr(channel, "_thread", None):
                continue
            remaining = max(0.0, deadline - time.monotonic())
            fn = self._impl(channel.plugin, "callbacks_flush")
            action = (
                (lambda c=channel, f=fn, r=remaining: c.call_hook("callbacks_flush", f, timeout=r))
                if fn is not None
                else None
            )
            ok = channel.run_on_worker(action, remaining) and ok
        for channel in channels:
            channel.raise_pending_strict_error()
        return ok

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop every plugin within ``timeout`` seconds (default: the
        ``shutdown_timeout`` setting). Warns about drops, errors and stuck plugins. Idempotent;
        events after shutdown are ignored. Returns False if some plugin did not finish."""
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            self._rebuild_routes()
            channels = list(self._channels.values())
        deadline = time.monotonic() + timeout
        ok = True
        for channel in channels:
            ok = self._shutdown_channel(channel, deadline, timeout) and ok
        problems = [
            f"{c.name}: {c.dropped} dropped, {c.errors} errors{', stuck' if c.stuck else ''}"
            for c in channels
            if c.dropped or c.errors or c.stuck
        ]
        if problems:
            logger.warning("callbacks shutdown: %s", "; ".join(problems))
        return ok

    def _shutdown_channel(self, channel: PluginChannel, deadline: float, timeout: float) -> bool:
        fn = (
            self._impl(channel.plugin, "callbacks_shutdown")
            if self._pm.is_registered(channel.plugin)
            else getattr(channel.plugin, "callbacks_shutdown", None)
        )
        action = None
        if fn is not None:

            def action(c: PluginChannel = channel, f: Callable[..., Any] = fn) -> None:
                c.call_hook("callbacks_shutdown", f, timeout=max(0.0, deadline - time.monotonic()))

        finished = channel.run_on_worker(action, max(0.0, deadline - time.monotonic()))
        stopped = channel.stop(max(0.0, deadline - time.monotonic()))
        if not (finished and stopped):
            logger.warning(
                "callbacks plugin %r did not finish within %.1fs (stuck)", channel.name, timeout
            )
        return finished and stopped

    @property
    def closed(self) -> bool:
        """True after :meth:`shutdown`."""
        return self._closed

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per plugin: mode, delivered, errors, errors_by_hook, dropped, queue_depth, stuck."""
        return {name: channel.stats() for name, channel in self._channels.items()}

    def host_stats(self) -> dict[str, int]:
        """The host's own counters: traces, sampled_out, abandoned, unmatched_ends."""
        counts = {name: count_value(counter) for name, counter in self._host_counts.items()}
        return {**counts, "pending": len(self._pending)}

    def __repr__(self) -> str:
        return f"<CallbackManager plugins={list(self._channels)}>"


def _truncate(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    if isinstance(value, (list, tuple)):
        return type(value)(_truncate(v, limit) for v in value)
    return value


def _shutdown_all_at_exit() -> None:
    for manager in list(_managers):
        try:
            manager.shutdown()
        except Exception:  # pragma: no cover - never fail interpreter exit
            logger.exception("callbacks: shutdown at exit failed")


# Sinks register their own exit teardown later (wandb does at its first init), and atexit runs
# last-in first-out, so a plain atexit handler would flush into an already finished run.
# threading's exit hooks run before any atexit handler, as concurrent.futures relies on.
_register_exit = getattr(threading, "_register_atexit", None)
try:
    if _register_exit is None:
        raise RuntimeError
    _register_exit(_shutdown_all_at_exit)
except RuntimeError:  # pragma: no cover - interpreter already shutting down, or no hook
    atexit.register(_shutdown_all_at_exit)
