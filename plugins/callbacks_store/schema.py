"""The SQLite schema of the trace store, and opening a database for writing or reading."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "StoreMissingError", "connect_read", "connect_write"]

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS traces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER,
    duration_ns INTEGER,
    status TEXT NOT NULL,
    event_count INTEGER NOT NULL DEFAULT 0,
    llm_tokens INTEGER NOT NULL DEFAULT 0,
    session_id TEXT,
    user_id TEXT,
    attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ns DESC);
CREATE INDEX IF NOT EXISTS traces_name_start ON traces (name, start_ns DESC);
CREATE INDEX IF NOT EXISTS traces_status_start ON traces (status, start_ns DESC);
CREATE INDEX IF NOT EXISTS traces_session_start ON traces (session_id, start_ns DESC);
CREATE TABLE IF NOT EXISTS events (
    trace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    type TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL,
    PRIMARY KEY (trace_id, id)
);
CREATE INDEX IF NOT EXISTS events_trace_start ON events (trace_id, start_ns);
"""


class StoreMissingError(FileNotFoundError):
    """There is no trace database at the given path."""


def connect_write(path: str | Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (creating it and its folder) the database for the store's worker: WAL mode,
    ``synchronous=NORMAL`` (durable at each checkpoint, safe against application crashes)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(target, timeout=busy_timeout_s, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_DDL)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read(path: str | Path) -> sqlite3.Connection:
    """Open an existing database read-only (never creates a file); raises
    :class:`StoreMissingError` when there is none."""
    target = Path(path)
    if not target.is_file():
        raise StoreMissingError(f"no trace database at {target}")
    conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    conn.row_factory = sqlite3.Row
    return conn
