"""Lifecycle: lifecycle hooks (through pluggy's own argument binding), flush, shutdown, and the
shutdown of every manager at interpreter exit."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import pluggy

from ._channel import PluginChannel
from ._process_channel import SIDECAR_EXIT_WAIT_S
from ._signals import flush_on_sigterm

__all__ = [
    "call_lifecycle_hook",
    "flush_channels",
    "plugin_hook",
    "shutdown_channels",
    "wait_seconds",
    "wait_until_stopped",
]

logger = logging.getLogger(__name__)


class _ShutsDown(Protocol):
    def shutdown(self) -> bool: ...


def plugin_hook(pm: pluggy.PluginManager, plugin: object, name: str) -> pluggy.HookCaller | None:
    """A hook caller that runs only ``plugin``'s implementation of hook ``name`` (``None`` if it
    has none). pluggy binds the arguments, so the implementation may declare any subset of the
    spec's."""
    caller: pluggy.HookCaller = getattr(pm.hook, name)
    if not any(impl.plugin is plugin for impl in caller.get_hookimpls()):
        return None
    others = [other for other in pm.get_plugins() if other is not plugin]
    return pm.subset_hook_caller(name, others)


def call_lifecycle_hook(
    pm: pluggy.PluginManager, channel: PluginChannel, name: str, **kwargs: Any
) -> list[Any]:
    """Run one plugin's lifecycle hook here and now, isolated like every hook call. Returns what
    it returned, as pluggy does (``[]`` for no implementation, ``None`` or a raised error)."""
    caller = plugin_hook(pm, channel.plugin, name)
    results: list[Any] = []
    if caller is not None:
        channel.call(
            ((name, lambda arguments: results.extend(caller(**arguments))),), kwargs, count=False
        )
    return results


def wait_seconds(timeout: float) -> float:
    """``timeout`` as a wait that threads accept: NaN or negative is 0, and infinity (or any
    huge value) is capped at a year, which ``threading`` waits can represent."""
    if not timeout >= 0:
        return 0.0
    return min(float(timeout), _LONGEST_WAIT_S)


_LONGEST_WAIT_S = 365 * 24 * 3600.0


def flush_channels(
    pm: pluggy.PluginManager, channels: Iterable[PluginChannel], timeout: float
) -> bool:
    """Wait until each channel has handled what was queued so far, then run its plugin's
    ``callbacks_flush`` on its worker. Every worker is asked at once, so each has the whole
    ``timeout``. False if ``timeout`` ran out. In strict mode, raises the first error a
    background hook raised."""
    deadline = time.monotonic() + wait_seconds(timeout)
    channels = list(channels)
    lost: list[str] = []

    def action_for(channel: PluginChannel) -> Callable[[], None]:
        def action() -> None:
            remaining = max(0.0, deadline - time.monotonic())
            if False in call_lifecycle_hook(pm, channel, "callbacks_flush", timeout=remaining):
                lost.append(channel.name)  # the plugin says it could not push everything out

        return action

    posted: list[threading.Event | None] = []
    for channel in channels:
        if channel.is_worker_thread():
            continue  # a plugin flushing itself from its own hook: everything before is handled
        if channel.mode == "inline":
            action_for(channel)()
        else:
            posted.append(channel.post(action_for(channel)))
    ok = True
    for done in posted:
        ok = done is not None and done.wait(max(0.0, deadline - time.monotonic())) and ok
    for channel in channels:
        channel.raise_pending_strict_error()
    return ok and not lost


def shutdown_channels(
    pm: pluggy.PluginManager, channels: Iterable[PluginChannel], timeout: float
) -> bool:
    """Run every plugin's ``callbacks_shutdown`` on its worker once its queue drains, then stop
    the workers. All plugins shut down at once, so each has the whole ``timeout`` and the total
    stays within it; only a plugin that did not finish is reported stuck. The plugins must
    still be registered with ``pm``."""
    timeout = wait_seconds(timeout)
    deadline = time.monotonic() + timeout
    channels = list(channels)

    def action_for(channel: PluginChannel) -> Callable[[], None]:
        def action() -> None:
            remaining = max(0.0, deadline - time.monotonic())
            call_lifecycle_hook(pm, channel, "callbacks_shutdown", timeout=remaining)

        return action

    posted = []
    for channel in channels:
        posted.append((channel, channel.post(action_for(channel))))
        channel.request_stop()  # the stop marker queues behind the shutdown call
    finished = {
        channel.name: done is not None and done.wait(max(0.0, deadline - time.monotonic()))
        for channel, done in posted
    }
    ok = True
    for channel in channels:
        stopped = channel.wait_stopped(max(0.0, deadline - time.monotonic()))
        if not (finished[channel.name] and stopped):
            channel.unfinished = True
            ok = False
            if channel.mode == "process":
                # Not stuck: the sidecar is alive and finishing what it was sent (a cold Aim
                # start takes seconds), and the interpreter's exit waits for it.
                logger.warning(
                    "callbacks plugin %r is still finishing in the sidecar after %.1fs; the "
                    "program's exit waits for it (at most %.0fs)",
                    channel.name,
                    timeout,
                    SIDECAR_EXIT_WAIT_S,
                )
            else:
                logger.warning(
                    "callbacks plugin %r did not finish within %.1fs (stuck)", channel.name, timeout
                )
    return ok


def wait_until_stopped(channels: Iterable[PluginChannel], timeout: float) -> bool:
    """Wait (within ``timeout``) for the workers of channels being shut down to stop; plugins
    already reported stuck are not waited for again."""
    deadline = time.monotonic() + wait_seconds(timeout)
    ok = True
    for channel in list(channels):
        if not channel.unfinished:
            ok = channel.wait_stopped(max(0.0, deadline - time.monotonic())) and ok
    return ok


def report_problems(channels: Iterable[PluginChannel]) -> None:
    """Warn about drops, errors and stuck plugins (nothing is lost silently)."""
    problems = [
        f"{c.name}: {c.dropped} dropped, {c.errors} errors{', stuck' if c.stuck else ''}"
        for c in channels
        if c.dropped or c.errors or c.stuck
    ]
    if problems:
        logger.warning("callbacks shutdown: %s", "; ".join(problems))


_managers: weakref.WeakSet[Any] = weakref.WeakSet()


def shutdown_at_exit(manager: _ShutsDown) -> None:
    """Shut ``manager`` down at interpreter exit (unless it was shut down before), and on
    SIGTERM when the application handles no SIGTERM itself (see :mod:`._signals`)."""
    _managers.add(manager)
    flush_on_sigterm(_shutdown_all_at_exit)


def _shutdown_all_at_exit() -> None:
    for manager in list(_managers):
        try:
            manager.shutdown()
        except BaseException:  # pragma: no cover - never fail interpreter exit
            logger.exception("callbacks: shutdown at exit failed")


def _after_fork_in_child() -> None:
    for manager in list(_managers):
        after_fork = getattr(manager, "_after_fork_in_child", None)
        if after_fork is not None:
            after_fork()


if hasattr(os, "register_at_fork"):
    # Registered after _channel's own handler (imported above), so workers are fresh by then.
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
