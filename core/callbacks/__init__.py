"""callbacks: debug, track and trace an LLM application's inner workings through plugins."""

from . import payloads
from ._channel import HandlerError
from ._context import ContextThreadPoolExecutor, current_attributes, using_attributes, wrap
from ._errors import ConfigError
from ._manager import CallbackManager
from ._process import get_manager, reset_manager, traced
from ._trace import Trace
from .events import ROOT, Event, EventAbandoned, EventPayload, EventPhase, EventType
from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # HostSettings needs pydantic-settings, which is imported on first use only.
    if name == "HostSettings":
        from ._config import HostSettings

        return HostSettings
    raise AttributeError(f"module 'callbacks' has no attribute {name!r}")


__all__ = [
    "ROOT",
    "CallbackManager",
    "ConfigError",
    "ContextThreadPoolExecutor",
    "Event",
    "EventAbandoned",
    "EventPayload",
    "EventPhase",
    "EventType",
    "HandlerError",
    "HostSettings",
    "Trace",
    "current_attributes",
    "get_manager",
    "hookimpl",
    "hookspec",
    "payloads",
    "reset_manager",
    "traced",
    "using_attributes",
    "wrap",
]
