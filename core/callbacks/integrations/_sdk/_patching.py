"""Patching an SDK's resource methods, and undoing it exactly; the ``instrument`` setting."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from typing import Any

from ..._manager import CallbackManager
from ._guard import guard_for
from ._wrapping import CallSpec, wrap_method, wrap_stream_manager


class Instrumentor:
    """Patches a set of resource methods for one SDK and restores them exactly.

    ``targets`` returns ``(class, method name, spec, kind)`` tuples, where ``kind`` is
    ``"method"`` or ``"stream_manager"``; it imports the SDK, on :meth:`instrument` only.
    """

    def __init__(self, sdk: str, targets: Callable[[], list[tuple[Any, str, CallSpec, str]]]):
        self.sdk = sdk
        self._targets = targets
        self._lock = threading.Lock()
        self._originals: list[tuple[Any, str, Any]] = []
        self._manager: CallbackManager | None = None

    @property
    def instrumented(self) -> bool:
        """True between :meth:`instrument` and :meth:`uninstrument`."""
        return bool(self._originals)

    def _resolve(self) -> CallbackManager | None:
        manager = self._manager
        if manager is not None:
            return manager
        from ..._process import get_manager

        return get_manager()

    def instrument(
        self, manager: CallbackManager | None = None, *, guard_on: CallbackManager | None = None
    ) -> None:
        """Patch the SDK so every request reports to ``manager`` (``None``: the process-wide
        manager, resolved at each request). Idempotent; a second call only changes the manager.
        Raises ``ImportError`` when the SDK is not installed."""
        if importlib.util.find_spec(self.sdk) is None:
            raise ImportError(
                f"callbacks.integrations.{self.sdk} needs the {self.sdk} SDK; "
                f"install it with: pip install 'callbacks-core[{self.sdk}]'"
            )
        with self._lock:
            self._manager = manager
            target = manager or guard_on
            if target is None:
                from ..._process import get_manager

                target = get_manager()
            guard_for(target)
            if self._originals:
                return
            resolve = self._resolve
            for owner, attribute, spec, kind in self._targets():
                original = owner.__dict__[attribute]
                factory = wrap_stream_manager if kind == "stream_manager" else wrap_method
                wrapper = factory(original, spec, resolve)
                wrapper.__callbacks_original__ = original  # type: ignore[attr-defined]
                setattr(owner, attribute, wrapper)
                self._originals.append((owner, attribute, original))

    def uninstrument(self) -> None:
        """Put back the SDK's own methods (the very same function objects)."""
        with self._lock:
            while self._originals:
                owner, attribute, original = self._originals.pop()
                setattr(owner, attribute, original)
            self._manager = None


SDKS = ("openai", "anthropic")
"""SDKs the ``instrument`` setting accepts."""


def instrument_configured(manager: CallbackManager) -> None:
    """Apply the ``instrument`` setting of a newly built process-wide ``manager``: instrument each
    SDK named there, following the process-wide manager. A name that is not a known SDK, or an
    SDK that is not installed, is a :class:`ConfigError` naming it (``manager`` is then shut
    down)."""
    import importlib
    import importlib.util

    from ..._errors import ConfigError

    names = list(manager.settings.instrument)
    origin = manager.config.host_origins.get("instrument")
    where = origin.describe() if origin is not None else "the instrument setting"
    try:
        for name in names:
            if name not in SDKS:
                raise ConfigError(
                    f"{where} names {name!r}, which is not an SDK callbacks can instrument; "
                    f"expected some of: {', '.join(SDKS)}"
                )
            if importlib.util.find_spec(name) is None:
                raise ConfigError(
                    f"{where} asks to instrument {name!r}, but the {name} SDK is not installed; "
                    f"install it (pip install 'callbacks-core[{name}]') or remove it from the list"
                )
            module = importlib.import_module(f"callbacks.integrations.{name}")
            module._instrumentor.instrument(None, guard_on=manager)
    except BaseException:
        manager.shutdown()
        raise
