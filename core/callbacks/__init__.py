"""callbacks: debug, track and trace an LLM application's inner workings through plugins."""

from . import payloads
from .delivery import HandlerError
from .errors import ConfigError
from .events import ROOT, Event, EventAbandoned, EventPayload, EventPhase, EventType
from .hookspecs import hookimpl, hookspec
from .manager import CallbackManager
from .process import get_manager, reset_manager, traced
from .trace import ContextThreadPoolExecutor, Trace, current_attributes, using_attributes, wrap

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # HostSettings needs pydantic-settings, which is imported on first use only.
    if name == "HostSettings":
        from .config import HostSettings

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
