"""Reading the trace store: the trace list (filtered, paginated), one trace with its events,
and every record for export."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from callbacks.wire import header_record

__all__ = ["TraceNotFoundError", "TracePage", "export_records", "get_trace", "list_traces"]

_LIST_COLUMNS = (
    "id, name, start_ns, end_ns, duration_ns, status, event_count, llm_tokens, session_id, user_id"
)


class TraceNotFoundError(LookupError):
    """No trace with that id (or id prefix) in the database."""


@dataclass
class TracePage:
    """One page of the trace list, newest first."""

    traces: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    filters: dict[str, str] = field(default_factory=dict)


def list_traces(
    conn: sqlite3.Connection,
    *,
    limit: int = 50,
    offset: int = 0,
    name: str | None = None,
    status: str | None = None,
    session: str | None = None,
) -> TracePage:
    """The newest traces matching the filters (exact name, status and session id)."""
    where, params = [], []
    for column, value in (("name", name), ("status", status), ("session_id", session)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_LIST_COLUMNS} FROM traces{clause} ORDER BY start_ns DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    total = conn.execute(f"SELECT COUNT(*) FROM traces{clause}", params).fetchone()[0]
    filters = {k: v for k, v in (("name", name), ("status", status), ("session", session)) if v}
    return TracePage([dict(r) for r in rows], total, offset, limit, filters)


def resolve_id(conn: sqlite3.Connection, trace_id: str) -> str:
    """The full id of a trace given its id or a unique prefix of it."""
    row = conn.execute("SELECT id FROM traces WHERE id = ?", (trace_id,)).fetchone()
    if row is not None:
        return str(row[0])
    if trace_id:
        rows = conn.execute(
            "SELECT id FROM traces WHERE id >= ? AND id < ? LIMIT 2",
            (trace_id, trace_id + "\U0010ffff"),
        ).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        if len(rows) > 1:
            raise TraceNotFoundError(f"trace id prefix {trace_id!r} is ambiguous")
    raise TraceNotFoundError(f"no trace with id {trace_id!r}")


def get_trace(
    conn: sqlite3.Connection, trace_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The trace's record (wire format plus ``event_count`` and ``llm_tokens``) and its event
    records in start order. Raises :class:`TraceNotFoundError`."""
    full_id = resolve_id(conn, trace_id)
    row = conn.execute("SELECT * FROM traces WHERE id = ?", (full_id,)).fetchone()
    return _trace_record(row), _events_of(conn, full_id)


def _trace_record(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "kind": "trace",
        "id": row["id"],
        "name": row["name"],
        "start_ns": row["start_ns"],
        "end_ns": row["end_ns"],
        "duration_ns": row["duration_ns"],
        "status": row["status"],
        "attributes": json.loads(row["attributes"]),
        "event_count": row["event_count"],
        "llm_tokens": row["llm_tokens"],
    }


def _events_of(conn: sqlite3.Connection, trace_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT record FROM events WHERE trace_id = ? ORDER BY start_ns, end_ns DESC",
        (trace_id,),
    ).fetchall()
    return [json.loads(r[0]) for r in rows]


def export_records(
    conn: sqlite3.Connection, *, since_ns: int | None = None
) -> Iterator[dict[str, Any]]:
    """The header, then for each ended trace (oldest first) its record followed by its events'
    records in start order."""
    yield header_record()
    rows = conn.execute(
        "SELECT * FROM traces WHERE end_ns IS NOT NULL AND start_ns >= ? ORDER BY start_ns",
        (since_ns or 0,),
    ).fetchall()
    for row in rows:
        yield _trace_record(row)
        yield from _events_of(conn, row["id"])
