"""Trace store benchmark: fill a database with 100,000 traces, then time the viewer's first page.

    python -m benchmarks.store_list [--traces 100000] [--db PATH]

The traces are written through the real ``store`` plugin for the first ``--through-plugin``
traces (its write throughput is reported), and the rest with the store's own schema and bulk
inserts (a realistic file, quickly). It then times, as the median of repeated runs: the first
page of ``callbacks view`` over HTTP (the whole page, rendered), the same query alone, filtered
first pages (name, status, session) and the last page.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from callbacks import CallbackManager, EventPayload, EventType, using_attributes
from callbacks_store import StorePlugin, list_traces, make_server
from callbacks_store.schema import connect_read, connect_write

NAMES = ["query", "chat", "agent", "index", "rerank"]


def fill_through_plugin(db: Path, traces: int) -> float:
    """Traces of four events each written by the plugin; returns events per second."""
    cm = CallbackManager([StorePlugin()], config={"store": {"path": str(db)}})
    began = time.perf_counter()
    for i in range(traces):
        with using_attributes(session_id=f"s{i % 500}"), cm.as_trace(NAMES[i % len(NAMES)]):
            with cm.event(EventType.QUERY, {EventPayload.QUERY_STR: f"q{i}"}):
                with cm.event(EventType.RETRIEVE), cm.event(EventType.EMBEDDING):
                    pass
                with cm.event(EventType.LLM, {EventPayload.PROMPT: f"p{i}"}) as llm:
                    llm.on_end({EventPayload.USAGE: {"prompt_tokens": 10, "completion_tokens": 5}})
    cm.shutdown()
    return traces * 4 / (time.perf_counter() - began)


def fill_bulk(db: Path, start: int, traces: int) -> None:
    conn = connect_write(db, 5.0)
    now = time.time_ns()
    rng = random.Random(1)
    trace_rows, event_rows = [], []
    for i in range(start, traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        begin = now - (traces - i) * 1_000_000_000
        status = "error" if i % 17 == 0 else "ok"
        trace_rows.append(
            (
                trace_id,
                NAMES[i % len(NAMES)],
                begin,
                begin + 5_000_000,
                5_000_000,
                status,
                4,
                15,
                f"s{i % 500}",
                None,
                json.dumps({"session_id": f"s{i % 500}"}),
            )
        )
        for j, kind in enumerate(("query", "retrieve", "embedding", "llm")):
            record = json.dumps({"kind": "event", "id": f"{i}-{j}", "type": kind})
            event_rows.append(
                (
                    trace_id,
                    f"{i}-{j}",
                    "root" if j == 0 else f"{i}-0",
                    kind,
                    begin + j,
                    begin + 9,
                    9 - j,
                    0,
                    15 if kind == "llm" else 0,
                    record,
                )
            )
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?)", trace_rows)
    conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", event_rows)
    conn.execute("COMMIT")
    conn.close()


def median_ms(fn, repeat: int = 21) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--through-plugin", type=int, default=2_000)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="callbacks-store-bench-"))
    db = args.db or folder / "traces.db"
    rate = fill_through_plugin(db, args.through_plugin)
    fill_bulk(db, args.through_plugin, args.traces)
    conn = connect_read(db)
    total = conn.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
    print(f"database: {db} ({db.stat().st_size / 1e6:.0f} MB, {total} traces)")
    print(f"store plugin write rate: {rate:,.0f} events/s ({args.through_plugin} traces)")
    cases = {
        "first page, query only": lambda: list_traces(conn, limit=50),
        "first page, name filter": lambda: list_traces(conn, limit=50, name="agent"),
        "first page, status=error": lambda: list_traces(conn, limit=50, status="error"),
        "first page, session filter": lambda: list_traces(conn, limit=50, session="s42"),
        "last page": lambda: list_traces(conn, limit=50, offset=total - 50),
    }
    server = make_server(db, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def fetch(path: str) -> None:
        with urllib.request.urlopen(base + path) as response:
            response.read()

    cases["first page over HTTP (rendered)"] = lambda: fetch("/")
    cases["filtered page over HTTP"] = lambda: fetch("/?name=agent&status=error")
    for name, fn in cases.items():
        print(f"{name:34s} {median_ms(fn):8.2f} ms (median of 21)")
    server.shutdown()
    conn.close()


if __name__ == "__main__":
    main()
