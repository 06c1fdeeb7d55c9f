"""The ``store`` plugin, checked by reading its SQLite file with plain ``sqlite3`` queries and
comparing with a ``RecordingPlugin`` registered alongside."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from callbacks import ROOT, CallbackManager, EventPayload, EventType, using_attributes
from callbacks.payloads import usage_of
from callbacks.testing import RecordingPlugin
from callbacks_store import StorePlugin

try:  # the demo is moving out of the host into its own built-in plugin
    from callbacks_demo import run_demo  # type: ignore[import-not-found]
except ImportError:
    from callbacks.demo import run_demo

P = EventPayload


def rows(db: Path, sql: str, *params: object) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def store_manager(db: Path, *plugins: object, **store: object) -> CallbackManager:
    return CallbackManager([*plugins, StorePlugin()], config={"store": {"path": str(db), **store}})


def assert_store_matches(db: Path, recorder: RecordingPlugin) -> None:
    """Every ended event is one row with the recorder's trace, parent and type; every trace is
    one row with its name, event count and provider-reported LLM tokens."""
    ends = recorder.ends()
    stored = rows(db, "SELECT trace_id, id, parent_id, type FROM events")
    assert len(stored) == len(ends)
    assert sorted(stored) == sorted((e.trace_id, e.id, e.parent_id, e.type.value) for e in ends)
    tokens: dict[str, int] = {}
    for e in recorder.ends(EventType.LLM):
        usage = usage_of(e.full_payload)
        tokens[e.trace_id] = tokens.get(e.trace_id, 0) + (usage.total if usage else 0)
    traces = rows(db, "SELECT id, name, event_count, llm_tokens, status FROM traces")
    assert sorted(traces) == sorted(
        (
            t.id,
            t.name,
            t.event_count,
            tokens.get(t.id, 0),
            "error" if any(e.failed for e in ends if e.trace_id == t.id) else "ok",
        )
        for t in recorder.traces
    )


def test_every_demo_event_lands_once_with_its_parent(tmp_path, monkeypatch):
    db = tmp_path / "traces.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALLBACKS_STORE__PATH", str(db))  # the way a user turns it on
    recorder = RecordingPlugin()
    manager = CallbackManager([recorder], load_entrypoints=True, config={"plugins": ["store"]})
    run_demo(
        questions=3, concurrency=3, out_dir=tmp_path / "out", manager=manager, stream=io.StringIO()
    )
    manager.shutdown()
    assert {e.type.value for e in recorder.ends()} == {t.value for t in EventType}
    assert_store_matches(db, recorder)
    assert rows(db, "SELECT SUM(llm_tokens) > 0 FROM traces") == [(1,)]
    stats = manager.stats()["store"]
    assert stats["errors"] == 0 and stats["plugin"]["write_errors"] == 0
    assert stats["plugin"]["events_written"] == len(recorder.ends())


async def _query(cm: CallbackManager, i: int) -> str:
    with using_attributes(session_id=f"s{i % 3}", user_id=f"u{i}"):
        async with cm.as_trace(f"q{i % 4}"):
            with cm.event(EventType.QUERY, {P.QUERY_STR: f"question {i}"}) as query:
                with cm.event(EventType.RETRIEVE, {P.QUERY_STR: f"question {i}"}) as retrieve:
                    await asyncio.sleep(0)
                    retrieve.on_end({P.NODES: [{"id": f"n{i}", "text": "t", "score": 0.5}]})
                # Two LLM calls at once in one trace: their starts and ends interleave.
                await asyncio.gather(_llm(cm, i, 0), _llm(cm, i, 1))
                if i % 5 == 0:
                    try:
                        with cm.event(EventType.FUNCTION_CALL, {P.FUNCTION_CALL: "{}"}):
                            await asyncio.sleep(0)
                            raise ValueError(f"tool {i} failed")
                    except ValueError:
                        pass
                query.on_end({P.RESPONSE: f"answer {i}"})
    return f"answer {i}"


async def _llm(cm: CallbackManager, i: int, turn: int) -> None:
    with cm.event(EventType.LLM, {P.PROMPT: f"p{i}.{turn}"}) as llm:
        await asyncio.sleep(0)
        usage = {"prompt_tokens": i, "completion_tokens": turn + 1}
        llm.on_end({P.COMPLETION: f"c{i}.{turn}", P.USAGE: usage})


def run_queries(cm: CallbackManager, n: int = 20) -> list[str]:
    async def main() -> list[str]:
        return await asyncio.gather(*(_query(cm, i) for i in range(n)))

    return asyncio.run(main())


def test_twenty_concurrent_queries_land_once_with_parents_sessions_and_status(tmp_path):
    db = tmp_path / "traces.db"
    recorder = RecordingPlugin()
    cm = store_manager(db, recorder)
    assert run_queries(cm) == [f"answer {i}" for i in range(20)]
    cm.flush()
    assert_store_matches(db, recorder)
    assert len(recorder.traces) == 20
    assert rows(db, "SELECT COUNT(*) FROM events WHERE parent_id = ?", ROOT) == [(20,)]
    sessions = dict(rows(db, "SELECT user_id, session_id FROM traces"))
    assert sessions == {f"u{i}": f"s{i % 3}" for i in range(20)}
    assert rows(db, "SELECT COUNT(*) FROM traces WHERE status = 'error'") == [(4,)]
    cm.shutdown()
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]


def test_nothing_is_written_until_a_path_is_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALLBACKS_STORE__PATH", raising=False)
    plugin = StorePlugin()
    cm = CallbackManager([plugin])
    run_queries(cm, 3)
    stats = cm.stats()["store"]
    cm.shutdown()
    assert list(tmp_path.iterdir()) == []
    assert plugin.callbacks_stats()["events_written"] == 0
    # Off, the store asks for no events at all: installed, it costs the application nothing.
    assert stats["listening"] is False and stats["delivered"] == 0


def test_max_traces_keeps_the_newest_and_their_events_only(tmp_path):
    db = tmp_path / "traces.db"
    recorder = RecordingPlugin()
    cm = store_manager(db, recorder, max_traces=5)
    for i in range(12):
        with cm.as_trace(f"t{i}"), cm.event(EventType.QUERY, {P.QUERY_STR: str(i)}):
            with cm.event(EventType.LLM, {P.PROMPT: str(i)}):
                pass
    cm.shutdown()
    kept = rows(db, "SELECT name FROM traces ORDER BY start_ns")
    assert kept == [(f"t{i}",) for i in range(7, 12)]
    newest = {t.id for t in recorder.traces[-5:]}
    assert {r[0] for r in rows(db, "SELECT DISTINCT trace_id FROM events")} == newest
    assert rows(db, "SELECT COUNT(*) FROM events") == [(10,)]


def test_max_age_days_deletes_old_traces(tmp_path):
    db = tmp_path / "traces.db"
    cm = store_manager(db)
    with cm.as_trace("old"), cm.event(EventType.QUERY):
        pass
    cm.shutdown()
    two_days_ns = 2 * 86_400 * 10**9
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE traces SET start_ns = start_ns - ?", (two_days_ns,))
        conn.execute("UPDATE events SET start_ns = start_ns - ?", (two_days_ns,))
    conn.close()
    cm = store_manager(db, max_age_days=1)
    with cm.as_trace("new"), cm.event(EventType.QUERY):
        pass
    cm.shutdown()
    assert rows(db, "SELECT name FROM traces") == [("new",)]
    assert rows(db, "SELECT COUNT(*) FROM events") == [(1,)]


def test_locked_database_is_a_counted_error_then_catches_up(tmp_path):
    db = tmp_path / "traces.db"
    recorder = RecordingPlugin()
    cm = store_manager(db, recorder, busy_timeout_s=0.05)
    with cm.as_trace("before"), cm.event(EventType.QUERY):
        pass
    cm.flush()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert run_queries(cm, 3) == ["answer 0", "answer 1", "answer 2"]
        assert cm.flush()
        stats = cm.stats()["store"]
        assert stats["plugin"]["write_errors"] >= 1
        assert "locked" in stats["plugin"]["last_error"]
        assert stats["plugin"]["pending_rows"] > 0
        assert stats["errors"] == 0  # handled by the plugin, never raised into the host or app
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with cm.as_trace("after"), cm.event(EventType.QUERY):
        pass
    cm.shutdown()
    assert cm.stats()["store"]["plugin"]["rows_lost"] == 0
    assert_store_matches(db, recorder)


@pytest.mark.parametrize("kind", ["parent is a file", "path is a directory"])
def test_unwritable_database_is_a_counted_error_never_an_exception(tmp_path, kind):
    if kind == "parent is a file":
        (tmp_path / "afile").write_text("not a folder")
        db = tmp_path / "afile" / "traces.db"
    else:
        db = tmp_path / "adir"
        db.mkdir()
    recorder = RecordingPlugin()
    cm = store_manager(db, recorder, max_pending_rows=10)
    assert run_queries(cm, 5) == [f"answer {i}" for i in range(5)]
    cm.shutdown()
    stats = cm.stats()["store"]
    assert stats["errors"] == 0
    assert stats["plugin"]["write_errors"] >= 1
    assert stats["plugin"]["events_written"] == 0
    # all but the last 10 event rows (kept for a retry) are counted as lost
    assert stats["plugin"]["rows_lost"] == len(recorder.ends()) - 10
    assert stats["plugin"]["pending_rows"] == 10 + len(recorder.traces)


def test_a_running_trace_is_visible_before_it_ends(tmp_path):
    db = tmp_path / "traces.db"
    cm = store_manager(db)
    with cm.as_trace("long"):
        with cm.event(EventType.QUERY):
            pass
        cm.flush()
        assert rows(db, "SELECT name, status, event_count FROM traces") == [("long", "running", 1)]
    cm.flush()
    assert rows(db, "SELECT status, end_ns > start_ns FROM traces") == [("ok", 1)]
    cm.shutdown()


def test_events_commit_without_a_flush_while_the_app_runs(tmp_path):
    db = tmp_path / "traces.db"
    cm = store_manager(db, batch_size=1)
    with cm.as_trace("t"):
        with cm.event(EventType.QUERY):
            pass
        deadline = time.monotonic() + 5
        # The worker commits on its own (batch of one); poll the file as a reader would.
        while time.monotonic() < deadline:
            try:
                if rows(db, "SELECT COUNT(*) FROM events") == [(1,)]:
                    break
            except sqlite3.OperationalError:  # the worker has not created the tables yet
                pass
            time.sleep(0.01)
        assert rows(db, "SELECT COUNT(*) FROM events") == [(1,)]
    cm.shutdown()


_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_writes_only_its_own_rows_on_its_own_connection(tmp_path):
    db = tmp_path / "traces.db"
    cm = store_manager(db, busy_timeout_s=0.05)
    with cm.as_trace("parent-0"), cm.event(EventType.QUERY):
        pass
    cm.flush()
    # Another process holds the lock (a connection of this process would carry its lock state
    # into the child), so the parent's next rows stay buffered in its plugin.
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "locked\n"
    with cm.as_trace("parent-1"), cm.event(EventType.QUERY):
        pass
    cm.flush()
    assert cm.stats()["store"]["plugin"]["pending_rows"] == 2
    report = tmp_path / "child.json"
    released_r, released_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            before = cm.stats()["store"]["plugin"]["pending_rows"]
            os.read(released_r, 1)  # the parent no longer holds the lock
            with cm.as_trace("child"), cm.event(EventType.QUERY), cm.event(EventType.LLM):
                pass
            cm.shutdown(10)
            stats = cm.stats()["store"]["plugin"]
            report.write_text(json.dumps({"before": before, **stats}))
            code = 0
        finally:
            os._exit(code)
    holder.communicate("release\n", timeout=10)
    os.write(released_w, b"x")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = json.loads(report.read_text())
    assert child["before"] == 0
    assert (child["events_written"], child["traces_written"], child["write_errors"]) == (2, 1, 0)
    cm.shutdown()
    assert sorted(rows(db, "SELECT name, event_count FROM traces")) == [
        ("child", 2),
        ("parent-0", 1),
        ("parent-1", 1),
    ]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
