"""callbacks-debug: print each trace's tree and inspect recent events and timings."""

from .plugin import DebugPlugin
from .settings import DebugSettings
from .store import EventTimeInfo, TraceLog

__all__ = ["DebugPlugin", "DebugSettings", "EventTimeInfo", "TraceLog"]
