"""Helpers every part of the SDK instrumentation uses: failure isolation (count, log
rate-limited, never raise) and reading SDK objects and arguments."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from ..._manager import CallbackManager
from ...events import EventPayload

logger = logging.getLogger(__name__)

_SENTINEL_TYPES = frozenset({"NotGiven", "Omit"})
_TRANSPORT_KWARGS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})

_failures = 0
_failures_lock = threading.Lock()


def instrumentation_failures() -> int:
    """How many times extracting or reporting a call failed (each was logged, rate-limited)."""
    return _failures


def failed(what: str) -> None:
    """Count and log (the first ten, then every thousandth) a failure of the instrumentation."""
    global _failures
    with _failures_lock:
        _failures += 1
        n = _failures
    if n <= 10 or n % 1000 == 0:
        logger.warning(
            "callbacks: %s failed (failure %d); the SDK call is unaffected", what, n, exc_info=True
        )


def strict(manager: CallbackManager | None) -> bool:
    settings = getattr(manager, "settings", None)
    return bool(getattr(settings, "strict", False))


def given(value: Any) -> bool:
    """False for the SDKs' ``NOT_GIVEN`` / ``omit`` sentinels (and ``None``)."""
    return value is not None and type(value).__name__ not in _SENTINEL_TYPES


def parameters(kwargs: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """Invocation parameters: the request's keyword arguments minus inputs and transport options."""
    return {
        k: v for k, v in kwargs.items() if k not in skip and k not in _TRANSPORT_KWARGS and given(v)
    }


def plain(obj: Any) -> Any:
    """A plain dict of an SDK model (only the fields the provider sent), else ``obj`` itself."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_unset=True)
        except Exception:
            return dump()
    return obj


def get(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` or ``obj.name``: SDK objects and the dicts a stream is assembled into."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def error_payload(error: BaseException) -> dict[str, Any]:
    """The request id an SDK error carries, if any."""
    request_id = getattr(error, "request_id", None)
    return {EventPayload.REQUEST_ID.value: request_id} if request_id else {}
