"""What ``callbacks demo`` needs to turn the store on: its settings and the line it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEMO_DB_NAME", "demo_defaults", "view_hint"]

DEMO_DB_NAME = "traces.db"


def demo_defaults(out_dir: str | Path) -> dict[str, Any]:
    """The configuration the demo passes to its ``CallbackManager`` (merged under the keys the
    user did not set): ``{"store": {"path": "<out_dir>/traces.db"}}``."""
    return {"store": {"path": str(Path(out_dir) / DEMO_DB_NAME)}}


def view_hint(db_path: str | Path) -> str:
    """The line the demo prints after its run: how to look at the stored traces."""
    return f"Traces stored in {db_path}; see them with: callbacks view --db {db_path}\n"
