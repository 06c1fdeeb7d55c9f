"""The process-wide manager: entry-point plugins and configuration, loaded on first use."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from ._env import STRICT_ENV, env_true
from ._errors import ConfigError
from ._manager import CallbackManager, dispatcher_of
from ._traced import traced_function
from .events import EventType

__all__ = ["get_manager", "peek_manager", "reset_manager", "traced"]

logger = logging.getLogger(__name__)

_manager: CallbackManager | None = None
_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def get_manager() -> CallbackManager:
    """The process-wide :class:`CallbackManager`. The first call reads the configuration (once
    per process) and loads the installed plugins (entry-point group ``callbacks``).

    A configuration error never raises into the application: it is logged once at ERROR with
    the full message; a bad plugin section turns that plugin off, a bad host key or unknown
    section turns every plugin off. With ``CALLBACKS_STRICT=1`` it raises
    :class:`callbacks.ConfigError` instead. ``CALLBACKS_DISABLED=1`` gives a manager that loads
    nothing."""
    global _manager
    manager = _manager
    if manager is None:
        with _lock:
            if _manager is None:
                built = CallbackManager(load_entrypoints=True, config_errors="log")
                if not built.disabled and built.config_error is None and built.settings.instrument:
                    _instrument(built)
                _manager = built
            manager = _manager
    return manager


def _instrument(manager: CallbackManager) -> None:
    """Instrument the SDKs the ``instrument`` setting names. An SDK that cannot be instrumented
    is a configuration error: logged (no SDK is instrumented), raised only in strict mode."""
    from .integrations._sdk import instrument_configured

    try:
        instrument_configured(manager)
    except ConfigError as error:
        if manager.settings.strict or env_true(STRICT_ENV):
            manager.shutdown(1.0)
            raise
        manager.config_error = str(error)
        logger.error("callbacks: configuration error (no SDK is instrumented): %s", error)


def peek_manager() -> CallbackManager | None:
    """The process-wide manager if it was built, without building it."""
    return _manager


def reset_manager(timeout: float = 5.0) -> None:
    """Shut the process-wide manager down; the next :func:`get_manager` builds a new one."""
    global _manager
    with _lock:
        manager, _manager = _manager, None
    if manager is not None:
        manager.shutdown(timeout)


def traced(
    event_type: EventType,
    *,
    payload: Callable[..., Any] | None = None,
    output_key: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """:meth:`CallbackManager.traced` on the process-wide manager, resolved at call time (so
    decorating at import time loads nothing)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return traced_function(
            lambda: dispatcher_of(get_manager()), fn, event_type, payload, output_key
        )

    return decorate
