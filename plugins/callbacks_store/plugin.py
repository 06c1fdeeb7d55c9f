"""The ``store`` plugin: writes every trace and every ended event into a SQLite database."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from callbacks import Event, EventType, Trace, hookimpl
from callbacks.wire import event_record, trace_record

from .schema import connect_write
from .settings import StoreSettings

if TYPE_CHECKING:
    from callbacks import CallbackManager

__all__ = ["StorePlugin"]

logger = logging.getLogger(__name__)

_COMMIT_EVERY_S = 0.2
"""Commits are at most this far apart while events flow, and pending rows wait no longer than
this (a timer asks the worker to commit) before a reader can see them."""
_LOG_EVERY_S = 10.0

_UPSERT_TRACE = """
INSERT INTO traces (id, name, start_ns, end_ns, duration_ns, status, session_id, user_id,
                    attributes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, start_ns = excluded.start_ns, end_ns = excluded.end_ns,
    duration_ns = excluded.duration_ns, status = excluded.status,
    session_id = excluded.session_id, user_id = excluded.user_id,
    attributes = excluded.attributes
"""
_INSERT_EVENT = """
INSERT OR REPLACE INTO events (trace_id, id, parent_id, type, start_ns, end_ns, duration_ns,
                               failed, tokens, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_AGGREGATE = """
UPDATE traces SET
    event_count = (SELECT COUNT(*) FROM events WHERE trace_id = :id),
    llm_tokens = (SELECT COALESCE(SUM(tokens), 0) FROM events WHERE trace_id = :id),
    status = CASE
        WHEN end_ns IS NULL THEN 'running'
        WHEN EXISTS (SELECT 1 FROM events WHERE trace_id = :id AND failed) THEN 'error'
        ELSE 'ok' END
WHERE id = :id
"""


class StorePlugin:
    """Writes traces and events to SQLite (WAL mode) on its own worker, in batches: a commit at
    each trace end, every ``batch_size`` rows, every half second of activity, on flush and at
    shutdown. Off until ``[store] path`` is set. A database that cannot be written (locked,
    read-only, missing folder) never reaches the application: the batch is kept for the next
    commit (up to ``max_pending_rows``), and the failure is counted in
    ``callbacks_stats()`` (``write_errors``, ``rows_lost``)."""

    callbacks_name = "store"
    callbacks_delivery = "background"

    def __init__(self) -> None:
        self.settings = StoreSettings()
        self._conn: sqlite3.Connection | None = None
        self._traces: dict[str, tuple[Any, ...]] = {}
        self._events: list[tuple[Any, ...]] = []
        self._touched: set[str] = set()
        self._last_commit = time.monotonic()
        self._last_log = 0.0
        self._lock = threading.Lock()  # guards the counters read by callbacks_stats
        self._counts = {
            "traces_written": 0,
            "events_written": 0,
            "commits": 0,
            "write_errors": 0,
            "rows_lost": 0,
        }
        self._last_error: str | None = None
        self._manager: CallbackManager | None = None
        self._timer: threading.Timer | None = None
        _plugins.add(self)

    # -- lifecycle -----------------------------------------------------------------------------

    @hookimpl
    def callbacks_settings(self) -> type[StoreSettings]:
        """The ``[store]`` section's model."""
        return StoreSettings

    @hookimpl
    def callbacks_configure(
        self, settings: StoreSettings | None, manager: CallbackManager
    ) -> bool | None:
        """Keep the settings; the database is opened on the worker, at the first commit. With no
        ``path`` the store is off: it asks the host for no events, so it costs nothing."""
        if settings is not None:
            self.settings = settings
        self._manager = manager
        return False if self.settings.path is None else None

    @hookimpl
    def callbacks_flush(self, timeout: float) -> None:
        """Commit everything received so far."""
        self._commit()

    @hookimpl
    def callbacks_shutdown(self, timeout: float) -> None:
        """Commit, then close the database."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._commit()
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    @hookimpl
    def callbacks_commands(self, commands: Any) -> None:
        """``callbacks traces`` (and ``traces show``, ``traces export``), ``callbacks replay``
        and ``callbacks view``."""
        from .commands import add_commands

        add_commands(commands)

    def callbacks_stats(self) -> dict[str, Any]:
        """``path``, ``traces_written``, ``events_written``, ``commits``, ``write_errors``,
        ``rows_lost``, ``pending_rows`` and ``last_error``."""
        with self._lock:
            return {
                "path": self.settings.path,
                **self._counts,
                "pending_rows": len(self._events) + len(self._traces),
                "last_error": self._last_error,
            }

    # -- events --------------------------------------------------------------------------------

    @hookimpl
    def on_trace_start(self, trace: Trace) -> None:
        """Record the trace as running, so the viewer shows it before it ends."""
        if self.settings.path is None:
            return
        self._traces[trace.id] = _trace_row(trace, "running")
        self._maybe_commit()

    @hookimpl
    def on_event_end(self, event: Event) -> None:
        """Queue the event's row (inputs from its start, outputs from its end)."""
        if self.settings.path is None:
            return
        record = event_record(event)
        usage = record["usage"]
        tokens = usage["total"] if usage and event.type is EventType.LLM else 0
        self._events.append(
            (
                record["trace_id"],
                record["id"],
                record["parent_id"],
                record["type"],
                record["start_ns"],
                record["end_ns"],
                record["duration_ns"],
                int(event.exception is not None),
                tokens,
                _dumps(record),
            )
        )
        self._touched.add(event.trace_id)
        self._maybe_commit()

    @hookimpl
    def on_trace_end(self, trace: Trace) -> None:
        """Record the trace's end, then commit."""
        if self.settings.path is None:
            return
        self._traces[trace.id] = _trace_row(trace, "ok")
        self._touched.add(trace.id)
        self._maybe_commit()

    # -- writing -------------------------------------------------------------------------------

    def _maybe_commit(self) -> None:
        if (
            len(self._events) >= self.settings.batch_size
            or time.monotonic() - self._last_commit >= _COMMIT_EVERY_S
        ):
            self._commit()
        elif self._timer is None and self._manager is not None:
            # Nothing may follow these rows for a while: have the worker commit them soon.
            timer = threading.Timer(_COMMIT_EVERY_S, self._timed_flush)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _timed_flush(self) -> None:
        self._timer = None
        manager = self._manager
        if manager is not None and not manager.closed:
            try:
                manager.flush(1.0, plugin=self)
            except Exception:  # strict mode re-raises worker errors; the timer has no caller
                logger.debug("store: timed flush failed", exc_info=True)

    def _commit(self) -> None:
        if self.settings.path is None or not (self._events or self._traces):
            return
        traces, events, touched = list(self._traces.values()), self._events, self._touched
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT_TRACE, traces)
                conn.executemany(_INSERT_EVENT, events)
                conn.executemany(_AGGREGATE, ({"id": t} for t in touched))
                if traces:
                    self._apply_retention(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as error:
            self._failed(error)
            return
        finally:
            self._last_commit = time.monotonic()
        self._traces, self._events, self._touched = {}, [], set()
        with self._lock:
            self._counts["commits"] += 1
            self._counts["traces_written"] += sum(1 for row in traces if row[5] != "running")
            self._counts["events_written"] += len(events)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self.settings.path is not None
            self._conn = connect_write(self.settings.path, self.settings.busy_timeout_s)
        return self._conn

    def _apply_retention(self, conn: sqlite3.Connection) -> None:
        doomed: list[tuple[str]] = []
        if self.settings.max_traces is not None:
            doomed += conn.execute(
                "SELECT id FROM traces ORDER BY start_ns DESC LIMIT -1 OFFSET ?",
                (self.settings.max_traces,),
            ).fetchall()
        if self.settings.max_age_days is not None:
            cutoff = time.time_ns() - int(self.settings.max_age_days * 86_400e9)
            doomed += conn.execute("SELECT id FROM traces WHERE start_ns < ?", (cutoff,)).fetchall()
        if doomed:
            conn.executemany("DELETE FROM events WHERE trace_id = ?", doomed)
            conn.executemany("DELETE FROM traces WHERE id = ?", doomed)

    def _failed(self, error: BaseException) -> None:
        # Keep the batch for the next commit, bounded: a database locked for a while loses only
        # what does not fit, and says how much.
        limit = self.settings.max_pending_rows
        excess = len(self._events) - limit
        if excess > 0:
            del self._events[:excess]
        for trace_id in list(self._traces)[: max(0, len(self._traces) - limit)]:
            del self._traces[trace_id]
            excess = max(0, excess) + 1
        with self._lock:
            self._counts["write_errors"] += 1
            self._counts["rows_lost"] += max(0, excess)
            self._last_error = f"{type(error).__name__}: {error}"
        if self._conn is not None and not isinstance(error, sqlite3.OperationalError):
            self._conn.close()
            self._conn = None
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            logger.error(
                "callbacks store: cannot write %s (%s: %s); %d rows kept for retry",
                self.settings.path,
                type(error).__name__,
                error,
                len(self._events) + len(self._traces),
            )

    def _reinit_after_fork(self) -> None:
        # The parent commits the rows it buffered; the child starts empty, with its own lock and
        # its own connection. The parent's connection is kept, never used or closed here: SQLite
        # connections must not cross a fork, and closing it could disturb the parent's WAL files.
        if self._conn is not None:
            _inherited_connections.append(self._conn)
        self._conn = None
        self._traces, self._events, self._touched = {}, [], set()
        self._timer = None
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._counts, 0)
        self._last_error = None


_plugins: weakref.WeakSet[StorePlugin] = weakref.WeakSet()
_inherited_connections: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    for plugin in list(_plugins):
        plugin._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _trace_row(trace: Trace, status: str) -> tuple[Any, ...]:
    record = trace_record(trace, status=status if trace.end_time_ns is not None else "running")
    attributes = record["attributes"]
    return (
        record["id"],
        record["name"],
        record["start_ns"],
        record["end_ns"],
        record["duration_ns"],
        record["status"],
        _str_or_none(attributes.get("session_id")),
        _str_or_none(attributes.get("user_id")),
        _dumps(attributes),
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
