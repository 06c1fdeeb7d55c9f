"""callbacks: debug, track and trace an LLM application's inner workings through plugins."""

from . import payloads
from .config import ConfigError, HostSettings
from .delivery import HandlerError
from .events import ROOT, Event, EventAbandoned, EventPayload, EventPhase, EventType
from .hookspecs import hookimpl, hookspec
from .manager import CallbackManager
from .process import get_manager, reset_manager, traced
from .trace import ContextThreadPoolExecutor, Trace, current_attributes, using_attributes, wrap

__version__ = "0.1.0"

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
