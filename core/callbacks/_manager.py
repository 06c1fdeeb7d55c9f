"""The :class:`CallbackManager`: the façade users and plugins hold. It composes the registry
(plugins and routes), the dispatcher (the event path) and lifecycle (flush, shutdown, exit)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from . import _start_end
from ._channel import DeliveryMode
from ._discovery import InstalledPlugin
from ._dispatch import Dispatcher
from ._env import DISABLED_ENV, STRICT_ENV, env_true
from ._errors import ConfigError
from ._lifecycle import (
    call_lifecycle_hook,
    flush_channels,
    report_problems,
    shutdown_at_exit,
    shutdown_channels,
    wait_until_stopped,
)
from ._registry import Registry
from ._scope import NOOP_SCOPE, EventScope, TraceScope, _NoopScope
from ._trace import Trace
from ._traced import traced_function
from .events import ROOT, EventType

if TYPE_CHECKING:
    from ._config import Config, HostSettings

__all__ = ["CallbackManager", "dispatcher_of"]

logger = logging.getLogger(__name__)


class _Off:
    """What the dispatcher and registry read of the settings when callbacks is off (disabled,
    or the configuration failed to load): no plugin, so only these neutral values; built without
    pydantic, so a disabled application does not import it."""

    disabled = True
    strict = False
    sample_rate = 1.0
    hide_inputs = hide_outputs = False
    max_payload_chars = None
    queue_size = 1
    overflow = "drop_newest"
    shutdown_timeout = 0.0

    @property
    def host(self) -> _Off:
        return self


_OFF: Any = _Off()
_OFF_STATS: dict[str, Any] = {
    "mode": None,
    "delivered": 0,
    "errors": 0,
    "errors_by_hook": {},
    "dropped": 0,
    "queue_depth": 0,
    "stuck": False,
    "active": False,
}


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
        config_errors: Literal["raise", "log"] = "raise",
    ) -> None:
        self._config: Config | None = None
        self.config_error: str | None = None
        """With ``config_errors="log"``: the configuration error that turned every plugin off."""
        self.disabled = env_true(DISABLED_ENV)
        """True when ``CALLBACKS_DISABLED`` (or the ``disabled`` key) turned callbacks off: no
        plugin is loaded or registered, and every event is the no-op path."""
        self._config_errors = config_errors
        self.installed: list[InstalledPlugin] = []
        if not self.disabled:
            from ._config import load_config  # pydantic-settings is imported on first use only

            try:
                self._config = load_config(config)
            except ConfigError as error:
                if config_errors == "raise" or env_true(STRICT_ENV):
                    raise
                self._config_failed(error)
            else:
                self.disabled = self._config.host.disabled
        off = self._config is None or self.disabled
        # Switched off, nothing below reads a setting: no pydantic import for a disabled app.
        host: Any = _OFF if off else self.settings
        self._dispatcher = Dispatcher(host)
        self._routes = self._dispatcher.routes  # the same dict, updated in place
        self._registry = Registry(_OFF if off else self.config, self._dispatcher, self)  # type: ignore[arg-type]
        if off:
            return
        try:
            for plugin in plugins:
                self.register(plugin)
            if load_entrypoints:
                self.installed = self._registry.load_entrypoints(self._raises_config_errors())
            self._registry.check_sections()
        except ConfigError as error:
            if self._raises_config_errors():
                self._registry_shutdown()
                raise
            self._config_failed(error)
            self._registry_shutdown()
            for entry in self.installed:
                if entry.active:
                    entry.active, entry.reason, entry.error = (
                        False,
                        "configuration error",
                        str(error),
                    )
            return
        except BaseException:
            self._registry_shutdown()
            raise
        shutdown_at_exit(self)

    @property
    def config(self) -> Config:
        """The merged configuration, with the source of every value."""
        if self._config is None:
            from ._config import Config, HostSettings

            # Disabled, or the configuration did not load: every plugin is off.
            host = HostSettings.model_validate({"disabled": self.disabled, "plugins": []})
            self._config = Config(host)
        return self._config

    @property
    def settings(self) -> HostSettings:
        """The host settings (top-level keys) in effect."""
        return self.config.host

    def _raises_config_errors(self) -> bool:
        return self._config_errors == "raise" or self.settings.strict or env_true(STRICT_ENV)

    def _config_failed(self, error: ConfigError) -> None:
        self.config_error = str(error)
        logger.error("callbacks: configuration error (every plugin is off): %s", error)

    def _registry_shutdown(self) -> None:
        shutdown_channels(self._registry.pm, self._registry.close(), 1.0)

    # -- plugins -------------------------------------------------------------------------------

    @property
    def pluginmanager(self) -> pluggy.PluginManager:
        """The underlying pluggy ``PluginManager`` (hook specs, registrations, blocking)."""
        return self._registry.pm

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object, module or class (instantiated with no arguments); validate its
        hooks and its settings, configure it, and start delivering events to it. Returns its name.

        Raises ``pluggy.PluginValidationError`` for a bad hook and :class:`ConfigError` for bad
        settings; the plugin is then not registered.
        """
        if self.disabled or self.config_error is not None:
            return name or getattr(plugin, "callbacks_name", None) or type(plugin).__name__.lower()
        return self._registry.register(plugin, name)

    def unregister(self, name_or_plugin: str | object, timeout: float = 5.0) -> object | None:
        """Stop delivering to a plugin, let its queue drain and its ``callbacks_shutdown`` run
        (for at most ``timeout`` seconds), then remove it. Returns the plugin object."""
        channel = self._registry.detach(name_or_plugin)
        if channel is None:
            return None
        try:
            shutdown_channels(self._registry.pm, [channel], timeout)
        finally:
            self._registry.forget(channel)
        return channel.plugin

    def get_plugin(self, name: str) -> Any:
        """The registered plugin object called ``name``, or ``None``."""
        channel = self._registry.channels.get(name)
        return channel.plugin if channel is not None else None

    def name_of(self, plugin: object) -> str | None:
        """The name a plugin object is registered under, or ``None``."""
        channel = self._registry.find(plugin)
        return channel.name if channel is not None else None

    def list_plugins(self) -> dict[str, object]:
        """``{name: plugin}`` for every registered plugin."""
        return {name: channel.plugin for name, channel in self._registry.channels.items()}

    def delivery_mode(self, name: str) -> DeliveryMode:
        """``"inline"`` or ``"background"`` for a registered plugin."""
        return self._registry.delivery_mode(name)

    def hooks_of(self, name: str) -> list[str]:
        """The hook names a registered plugin implements."""
        return self._registry.hooks_of(name)

    def plugin_settings(self, name: str) -> Any:
        """The validated settings a registered plugin was configured with, or ``None``."""
        return self._registry.channels[name].settings

    def settings_model(self, name: str) -> Any:
        """The settings model a registered plugin declares, or ``None``."""
        return self._registry.settings_model(self._registry.channels[name].plugin)

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
        return EventScope(self._dispatcher, event_type, payload, event_id, parent_id)

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
        return _start_end.start_pending_event(
            self._dispatcher, event_type, payload, event_id, parent_id
        )

    def on_event_end(
        self,
        event_type: EventType,
        payload: Mapping[Any, Any] | None = None,
        event_id: str | None = None,
        exception: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        """End an event started with :meth:`on_event_start`; an unknown id is counted, ignored."""
        _start_end.end_pending_event(self._dispatcher, event_type, payload, event_id, exception)

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
        dispatcher = self._dispatcher

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            return traced_function(lambda: dispatcher, fn, event_type, payload, output_key)

        return decorate

    # -- traces --------------------------------------------------------------------------------

    def as_trace(self, name: str = "trace", *, trace_id: str | None = None) -> TraceScope:
        """A context manager for one trace; it yields the :class:`Trace`. Inside an active trace
        it joins that trace instead of starting another (as LlamaIndex does)."""
        return TraceScope(self._dispatcher, name, trace_id)

    def start_trace(self, name: str | None = None, *, trace_id: str | None = None) -> Trace:
        """Start a trace in the current context (LlamaIndex style); nested calls are counted and
        only the outermost starts a trace. Pair with :meth:`end_trace`."""
        return _start_end.start_trace(self._dispatcher, name, trace_id)

    def end_trace(self, name: str | None = None, trace_map: Any = None) -> Trace | None:
        """End the trace :meth:`start_trace` started in this context (the outermost call ends it).
        Returns the trace, or ``None`` when no trace is active."""
        return _start_end.end_trace(self._dispatcher)

    def current_trace(self) -> Trace | None:
        """The trace active in this context, if any."""
        frame = self._dispatcher.current()
        return frame[0].trace if frame is not None else None

    def current_event_id(self) -> str | None:
        """The id of the innermost running event in this context, if any."""
        frame = self._dispatcher.frame.get()
        return frame[1] if frame is not None and frame[1] != ROOT else None

    # -- flush, shutdown, stats ----------------------------------------------------------------

    def flush(self, timeout: float = 5.0, *, plugin: str | object | None = None) -> bool:
        """Wait until every event emitted so far has been handled (by ``plugin`` only, given by
        name or as the plugin object; a plugin that is not registered has nothing to wait for)
        and run the plugins' ``callbacks_flush``. Returns False if ``timeout`` ran out or a
        plugin's ``callbacks_flush`` returned False (it lost something). In strict mode, raises
        the first error a background hook raised."""
        if plugin is None:
            channels = list(self._registry.channels.values())
        else:
            channel = self._registry.find(plugin)
            channels = [channel] if channel is not None else []
        return flush_channels(self._registry.pm, channels, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop every plugin within ``timeout`` seconds (default: the
        ``shutdown_timeout`` setting). Warns about drops, errors and stuck plugins. Idempotent;
        events after shutdown are ignored. Returns False if some plugin did not finish."""
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        if not self._registry.closed:
            self._dispatcher.close_stale()  # traces still waiting for a late end
        channels = self._registry.close()
        if not channels:
            # Shut down already, or being shut down right now by another caller (the exit hook
            # a SIGTERM interrupts, say): wait for the workers that shutdown is stopping.
            return wait_until_stopped(self._registry.channels.values(), timeout)
        ok = shutdown_channels(self._registry.pm, channels, timeout)
        report_problems(channels)
        return ok

    @property
    def closed(self) -> bool:
        """True after :meth:`shutdown`."""
        return self._registry.closed

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per plugin: mode, delivered, errors, errors_by_hook, dropped, queue_depth, stuck. An
        installed plugin a configuration error turned off is listed too, with ``active: False``
        and the ``reason``."""
        out = {name: channel.stats() for name, channel in self._registry.channels.items()}
        for entry in self.installed:
            if entry.reason == "configuration error" and entry.name not in out:
                out[entry.name] = {**_OFF_STATS, "reason": f"configuration error: {entry.error}"}
        return out

    def host_stats(self) -> dict[str, int]:
        """The host's own counters: traces, sampled_out, abandoned, unmatched_ends, pending."""
        return self._dispatcher.host_stats()

    def _after_fork_in_child(self) -> None:
        # Called by _lifecycle in a forked child, after the channels got fresh workers.
        self._registry.lock = threading.RLock()
        self._dispatcher.after_fork_in_child()
        for channel in list(self._registry.channels.values()):
            call_lifecycle_hook(self._registry.pm, channel, "callbacks_after_fork_in_child")

    def __repr__(self) -> str:
        return f"<CallbackManager plugins={list(self._registry.channels)}>"


def dispatcher_of(manager: CallbackManager) -> Dispatcher:
    """The event path of ``manager`` (for the host's own modules, such as ``traced``)."""
    return manager._dispatcher
