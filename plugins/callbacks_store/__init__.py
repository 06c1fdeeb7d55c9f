"""callbacks-store: every trace and event in a local SQLite database, a trace viewer in the
browser (``callbacks view``), export to JSON Lines and replay into any plugin."""

from .demo import demo_defaults, view_hint
from .plugin import StorePlugin
from .reader import TraceNotFoundError, TracePage, export_records, get_trace, list_traces
from .replay import ReplayedError, ReplayResult, replay
from .settings import StoreSettings

__all__ = [
    "ReplayResult",
    "ReplayedError",
    "StorePlugin",
    "StoreSettings",
    "TraceNotFoundError",
    "TracePage",
    "demo_defaults",
    "export_records",
    "get_trace",
    "list_traces",
    "make_server",
    "replay",
    "view_hint",
]


def __getattr__(name: str) -> object:
    # The web server (http.server and its imports) loads only for `callbacks view`.
    if name == "make_server":
        from .viewer import make_server

        return make_server
    raise AttributeError(f"module 'callbacks_store' has no attribute {name!r}")
