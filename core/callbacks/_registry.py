"""The registry: plugins, their names and channels, and the routes compiled from their hooks.

Routes are compiled from pluggy's hook implementations whenever a plugin comes or goes and
handed to the :class:`~._dispatch.Dispatcher`, so the hot path never pays for pluggy's generic
call. Inline plugins run in registration order, except that a hook marked ``tryfirst`` runs
before the others' and one marked ``trylast`` after (pluggy's markers; background plugins each
run on their own thread, where order between plugins does not apply).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from ._channel import Calls, DeliveryMode, PluginChannel
from ._discovery import InstalledPlugin, discover, instantiate, select
from ._dispatch import EMPTY_ROUTE, Dispatcher, Route
from ._errors import ConfigError
from ._lifecycle import call_lifecycle_hook, plugin_hook
from ._privacy import PayloadPolicy
from ._process_channel import in_sidecar, open_process_channel
from .events import EventPhase, EventType

if TYPE_CHECKING:
    from ._config import Config

__all__ = ["Registry"]

logger = logging.getLogger(__name__)

_HOOKS = {
    phase: {t: (f"on_{t.value}_{phase.value}", f"on_event_{phase.value}") for t in EventType}
    for phase in EventPhase
}
"""The hooks that hear an event of each type and phase, in the order one plugin's run."""


class Registry:
    """Registered plugins and their channels; compiles the dispatcher's routes."""

    def __init__(self, config: Config, dispatcher: Dispatcher, manager: object) -> None:
        self.config = config
        self.settings = config.host
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.channels: dict[str, PluginChannel] = {}
        self.lock = threading.RLock()
        self.closed = False
        self._dispatcher = dispatcher
        self._manager = manager

    # -- plugins -------------------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str:
        """Validate, configure and start delivering to ``plugin``; return its name."""
        plugin = instantiate(plugin)
        mode = getattr(plugin, "callbacks_delivery", "background")
        mode = self.settings.delivery.get(name or _default_name(plugin), mode)
        if mode not in ("inline", "background", "process"):
            raise ConfigError(
                f"plugin {name or plugin!r} has callbacks_delivery={mode!r}; "
                f"expected 'inline', 'background' or 'process'"
            )
        if mode == "process" and in_sidecar():
            mode = "inline"  # this is the sidecar: its receiving thread calls the hooks
        with self.lock:
            name = self._unique_name(name or _default_name(plugin))
            self.pm.register(plugin, name)
            try:
                self.pm.check_pending()
                self._reject_wrappers(plugin)
                settings = self.config.settings_for(name, self.settings_model(plugin))
            except Exception:
                self.pm.unregister(plugin, name)
                raise
            channel: PluginChannel | None = None
            if mode == "process":  # configured in the sidecar; None: it runs here instead
                channel = open_process_channel(self, name, plugin)
                mode = "background"
            if channel is None:
                channel = PluginChannel(
                    name,
                    plugin,
                    mode,  # type: ignore[arg-type]
                    queue_size=self.settings.queue_size,
                    overflow=self.settings.overflow,
                    strict=self.settings.strict,
                )
                configured = call_lifecycle_hook(
                    self.pm,
                    channel,
                    "callbacks_configure",
                    settings=settings,
                    manager=self._manager,
                )
                channel.listening = False not in configured
            channel.settings = settings
            self.channels[name] = channel
            self.compile()
        return name

    def load_entrypoints(self, raise_config_errors: bool = True) -> list[InstalledPlugin]:
        """Register the installed plugins the configuration selects; one that fails to load is
        reported in the returned list (and logged), the others still load. A section that
        names no installed plugin, or an unknown name in ``plugins``/``disable``, raises
        :class:`ConfigError`; so does a bad plugin section, unless ``raise_config_errors`` is
        False: that plugin is then off (``reason`` ``"configuration error"``, logged at ERROR)."""
        installed = discover()
        self.config.check_sections({*self.channels, *(entry.name for entry in installed)})
        origins = self.config.host_origins
        select(
            installed,
            self.settings,
            origins["plugins"].describe() if "plugins" in origins else "",
            disable_origin=origins["disable"].describe() if "disable" in origins else "",
        )
        for entry in installed:
            if not entry.active:
                continue
            try:
                self.register(entry.load(), entry.name)
            except ConfigError as error:
                if raise_config_errors:
                    raise
                # One plugin's bad section turns that plugin off, not the others.
                entry.active, entry.reason, entry.error = False, "configuration error", str(error)
                logger.error(
                    "callbacks: configuration error (plugin %r is off): %s", entry.name, error
                )
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # sys.exit() in a plugin's import stops only it
                entry.active = False
                entry.reason = "failed to load"
                entry.error = f"{type(error).__name__}: {error}"
                logger.warning("callbacks plugin %r failed to load: %s", entry.name, entry.error)
        return installed

    def detach(self, name_or_plugin: str | object) -> PluginChannel | None:
        """Stop routing events to a plugin (it stays registered with pluggy until
        :meth:`forget`, so its shutdown hook can still run)."""
        with self.lock:
            channel = self.find(name_or_plugin)
            if channel is not None:
                del self.channels[channel.name]
                self.compile()
            return channel

    def forget(self, channel: PluginChannel) -> None:
        """Remove a detached plugin from pluggy."""
        with self.lock:
            self.pm.unregister(channel.plugin, channel.name)

    def close(self) -> list[PluginChannel]:
        """Stop building events for good; return the channels to shut down (empty if already
        closed)."""
        with self.lock:
            if self.closed:
                return []
            self.closed = True
            self.compile()
            return list(self.channels.values())

    def find(self, name_or_plugin: str | object) -> PluginChannel | None:
        """The channel of a plugin given by name or as the object."""
        if isinstance(name_or_plugin, str) and name_or_plugin in self.channels:
            return self.channels[name_or_plugin]
        for channel in list(self.channels.values()):
            if channel.plugin is name_or_plugin:
                return channel
        return None

    def settings_model(self, plugin: object) -> Any:
        """The settings model the plugin declares (``callbacks_settings``), or ``None``. Not
        isolated: a plugin whose declaration raises is not registered."""
        declare = plugin_hook(self.pm, plugin, "callbacks_settings")
        return declare() if declare is not None else None

    def hooks_of(self, name: str) -> list[str]:
        """The hook names a registered plugin implements."""
        plugin = self.channels[name].plugin
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ())

    def delivery_mode(self, name: str) -> DeliveryMode:
        """``"inline"``, ``"background"`` or ``"process"`` (in the sidecar process)."""
        return self.channels[name].mode

    def _unique_name(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.channels or self.pm.has_plugin(candidate):
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def _reject_wrappers(self, plugin: object) -> None:
        # Hooks are called straight from the dispatch table, so a wrapper would never run.
        for caller in self.pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.hookwrapper or getattr(impl, "wrapper", False)):
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"{caller.name} is declared as a hook wrapper; callbacks calls each hook "
                        f"directly, so implement it as a plain hook",
                    )

    def check_sections(self) -> None:
        """Raise :class:`ConfigError` for a section that names no registered or installed
        plugin (a typo must not be ignored). Looks installed plugins up only when needed."""
        unclaimed = set(self.config.sections) - {name.lower() for name in self.channels}
        if unclaimed:
            installed = {entry.name for entry in discover()}
            self.config.check_sections({*self.channels, *installed})

    def payload_policy(self) -> PayloadPolicy:
        """The redaction hooks of the registered plugins (registration order), then the
        host's hide and size settings."""
        by_plugin = {impl.plugin: impl for impl in self.pm.hook.callbacks_redact.get_hookimpls()}
        redactors = []
        for channel in self.channels.values():
            impl = by_plugin.get(channel.plugin)
            if impl is not None:
                redactors.append((channel.name, _positional(impl.function, impl.argnames)))
        settings = self.settings
        return PayloadPolicy(
            hide_inputs=settings.hide_inputs,
            hide_outputs=settings.hide_outputs,
            max_payload_chars=settings.max_payload_chars,
            redactors=redactors,
            on_error=self._redaction_failed,
        )

    def _redaction_failed(self, name: str, error: BaseException) -> None:
        channel = self.channels.get(name)
        if channel is not None:
            channel.record_error("callbacks_redact", error)
        if self.settings.strict:
            raise error

    # -- routes --------------------------------------------------------------------------------

    def compile(self) -> None:
        """Rebuild every route from the registered hook implementations."""
        impls: dict[str, dict[str, Any]] = {name: {} for name in self.channels}
        for hook_name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, hook_name)
            if not isinstance(caller, pluggy.HookCaller):
                continue
            for impl in caller.get_hookimpls():
                if (
                    impl.plugin_name in impls
                    and self.channels[impl.plugin_name].plugin is impl.plugin
                ):
                    impls[impl.plugin_name][hook_name] = impl
        channels = list(self.channels.values())

        def calls(channel: PluginChannel, hook_names: tuple[str, ...]) -> Calls:
            if not channel.listening:
                return ()
            own = impls[channel.name]
            return tuple((h, own[h].function) for h in hook_names if h in own)

        def rank(channel: PluginChannel, hook_names: tuple[str, ...]) -> int:
            own = [impls[channel.name][h] for h in hook_names if h in impls[channel.name]]
            if any(impl.tryfirst for impl in own):
                return 0
            return 2 if all(impl.trylast for impl in own) else 1

        def route(
            hook_names: tuple[str, ...], queue: Callable[[PluginChannel, Calls], Any]
        ) -> Route:
            inline: list[tuple[PluginChannel, Calls]] = []
            background = []
            for channel in channels:
                found = calls(channel, hook_names)
                if not found:
                    continue
                if channel.mode == "inline":
                    inline.append((channel, found))
                elif (enqueue := queue(channel, found)) not in background:
                    background.append(enqueue)  # the sidecar's plugins share one queue
            inline.sort(key=lambda entry: rank(entry[0], hook_names))  # stable: registration order
            return tuple((c.call, found) for c, found in inline), tuple(background)

        for channel in channels:
            channel.event_calls = {
                phase: {t: found for t, names in table.items() if (found := calls(channel, names))}
                for phase, table in _HOOKS.items()
            }
        trace_routes = (
            route(("on_trace_start",), _trace_queue),
            route(("on_trace_end",), _trace_queue),
        )
        heard = trace_routes != (EMPTY_ROUTE, EMPTY_ROUTE)
        routes: dict[EventType, tuple[Route, Route] | None] = {}
        for event_type in EventType:
            start = route(_HOOKS[EventPhase.START][event_type], _event_queue)
            end = route(_HOOKS[EventPhase.END][event_type], _event_queue)
            listened = heard or start != EMPTY_ROUTE or end != EMPTY_ROUTE
            routes[event_type] = (start, end) if listened and not self.closed else None
        self._dispatcher.install(routes, trace_routes)
        self._dispatcher.use_policy(self.payload_policy())


def _event_queue(channel: PluginChannel, calls: Calls) -> Callable[[Any], None]:
    # The worker looks an event's calls up by type and phase, so only the event is queued.
    return channel.enqueue


def _trace_queue(channel: PluginChannel, calls: Calls) -> Callable[[Any], None]:
    if channel.mode == "process":
        return channel.trace_queue(calls[0][0])  # type: ignore[attr-defined, no-any-return]
    enqueue = channel.enqueue
    return lambda trace: enqueue((calls, trace))


def _default_name(plugin: object) -> str:
    # Lower case, as the settings section it matches ([myplugin], CALLBACKS_MYPLUGIN__...).
    explicit = getattr(plugin, "callbacks_name", None)
    if isinstance(explicit, str):
        return explicit
    if isinstance(plugin, ModuleType):
        return plugin.__name__.rpartition(".")[2].lower()
    return type(plugin).__name__.lower()


def _positional(
    function: Callable[..., Any], argnames: tuple[str, ...]
) -> Callable[[EventType, EventPhase, Any], Any]:
    """A ``callbacks_redact`` implementation called as ``(event_type, phase, payload)`` with only
    the arguments it declares (as pluggy does), without keyword dicts on the hot path."""
    order = {"event_type": 0, "phase": 1, "payload": 2}
    picks = tuple(order[name] for name in argnames)
    if picks == (2,):
        return lambda t, ph, p: function(p)
    if picks == (0, 1, 2):
        return function
    return lambda *args: function(*(args[i] for i in picks))
