"""Export and replay (JSON Lines, ``callbacks.wire``), and the store's CLI commands with good
and bad input."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from test_store import rows, run_queries, store_manager

from callbacks import CallbackManager, EventPayload, EventType
from callbacks._cli import main
from callbacks.testing import RecordingPlugin
from callbacks.wire import FORMAT, VERSION, plain_payload, to_plain
from callbacks_store import StorePlugin, replay

P = EventPayload


@pytest.fixture
def recorded(tmp_path):
    """20 concurrent queries stored in a database; returns (db, recorder of the original run)."""
    db = tmp_path / "traces.db"
    recorder = RecordingPlugin()
    cm = store_manager(db, recorder)
    run_queries(cm)
    cm.shutdown()
    return db, recorder


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_writes_a_versioned_header_then_each_trace_and_its_events(recorded, tmp_path):
    db, recorder = recorded
    out = tmp_path / "export.jsonl"
    status, text = cli("traces", "export", "--db", str(db), "--out", str(out))
    assert status == 0, text
    records = read_jsonl(out)
    assert records[0] == {"kind": "header", "format": FORMAT, "version": VERSION}
    assert sum(r["kind"] == "trace" for r in records) == len(recorder.traces)
    assert sum(r["kind"] == "event" for r in records) == len(recorder.ends())
    current = None
    for record in records[1:]:  # each event follows its own trace's record
        if record["kind"] == "trace":
            current = record["id"]
        else:
            assert record["trace_id"] == current
    assert f"Exported {len(recorder.traces)} traces" in text


def _strip_marker(payload):
    return {k: v for k, v in payload.items() if k != "replayed"}


def test_export_then_replay_gives_the_same_traces_types_parents_and_payloads(recorded, tmp_path):
    db, original = recorded
    out = tmp_path / "export.jsonl"
    assert cli("traces", "export", "--db", str(db), "--out", str(out))[0] == 0
    again = RecordingPlugin()
    cm = CallbackManager([again])
    result = replay(read_jsonl(out), cm, speed=None)
    cm.shutdown()
    assert (result.traces, result.events) == (len(original.traces), len(original.ends()))
    assert sorted((t.id, t.name) for t in again.traces) == sorted(
        (t.id, t.name) for t in original.traces
    )
    by_id = {t.id: t for t in original.traces}
    for trace in again.traces:
        assert trace.attributes["replayed"] is True
        assert trace.attributes["session_id"] == by_id[trace.id].attributes["session_id"]
        assert trace.trace_map == by_id[trace.id].trace_map
        assert trace.event_count == by_id[trace.id].event_count
    replayed = {e.id: e for e in again.ends()}
    assert len(replayed) == len(original.ends())
    for end in original.ends():
        copy = replayed[end.id]
        assert (copy.type, copy.trace_id, copy.parent_id) == (end.type, end.trace_id, end.parent_id)
        assert copy.start.payload["replayed"] is True
        assert _strip_marker(copy.start.payload) == plain_payload(end.start.payload)
        assert dict(copy.payload) == plain_payload(end.payload)
        if end.exception is None:
            assert copy.exception is None
        else:
            assert type(copy.exception).__name__ == type(end.exception).__name__
            assert str(copy.exception) == str(end.exception)
            assert "ValueError" in copy.exception.traceback_text


def test_replay_paced_at_speed_one_keeps_durations(tmp_path):
    db = tmp_path / "traces.db"
    original = RecordingPlugin()
    cm = store_manager(db, original)
    with cm.as_trace("timed"), cm.event(EventType.QUERY):
        for delay in (0.03, 0.06):
            with cm.event(EventType.LLM):
                sleep_for(delay)  # the work being timed, not synchronisation
    cm.shutdown()
    out = tmp_path / "export.jsonl"
    assert cli("traces", "export", "--db", str(db), "--out", str(out))[0] == 0
    again = RecordingPlugin()
    cm = CallbackManager([again])
    replay(read_jsonl(out), cm, speed=1.0)
    cm.shutdown()
    durations = {e.id: e.duration_ns for e in original.ends()}
    for end in again.ends():
        assert abs(end.duration_ns - durations[end.id]) < 15_000_000, (end.type, end.duration_ns)
    starts = {e.id: e.start_time_ns for e in original.ends()}
    t0 = min(starts.values())
    r0 = min(e.start_time_ns for e in again.ends())
    for end in again.ends():
        assert abs((end.start_time_ns - r0) - (starts[end.id] - t0)) < 15_000_000


def sleep_for(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_to_plain_reduces_llama_index_objects_to_documented_shapes():
    schema = pytest.importorskip("llama_index.core.schema")
    llms = pytest.importorskip("llama_index.core.llms")
    node = schema.NodeWithScore(
        node=schema.TextNode(text="Paris is in France.", id_="n1", metadata={"src": "a"}),
        score=0.75,
    )
    message = llms.ChatMessage(role="assistant", content="Paris.")
    assert to_plain(node) == {
        "id": "n1",
        "text": "Paris is in France.",
        "score": 0.75,
        "metadata": {"src": "a"},
    }
    assert to_plain(message) == {"role": "assistant", "content": "Paris."}
    assert to_plain(ValueError("bad"))["type"] == "ValueError"
    plain = plain_payload({P.NODES: [node], P.MESSAGES: [message], P.TOP_K: 2})
    assert plain == {
        "nodes": [to_plain(node)],
        "messages": [to_plain(message)],
        "top_k": 2,
    }
    assert json.loads(json.dumps(plain)) == plain


# -- listing and showing ---------------------------------------------------------------------


def test_traces_lists_the_newest_first_with_filters(recorded):
    db, recorder = recorded
    status, text = cli("traces", "--db", str(db), "-n", "50")
    assert status == 0
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "START"]
    assert len(lines) == 1 + len(recorder.traces)
    newest = max(recorder.traces, key=lambda t: t.start_time_ns)
    assert lines[1].startswith(newest.id[:12])
    status, text = cli("traces", "--db", str(db), "--json", "--status", "error", "--name", "q0")
    listed = json.loads(text)
    expected = {
        t.id
        for t in recorder.traces
        if t.name == "q0" and any(e.failed for e in recorder.ends(trace=t))
    }
    assert {t["id"] for t in listed} == expected and expected


def test_traces_show_prints_the_tree_with_inputs_outputs_and_errors(recorded):
    db, recorder = recorded
    trace = next(t for t in recorder.traces if any(e.failed for e in recorder.ends(trace=t)))
    status, text = cli("traces", "show", trace.id[:10], "--db", str(db))
    assert status == 0, text
    assert trace.id in text.splitlines()[0]
    assert "└─ query" in text
    assert "ERR ValueError: tool" in text
    llm = recorder.ends(EventType.LLM, trace=trace)[0]
    assert f"in  formatted_prompt: {llm.start.payload[P.PROMPT]}" in text
    assert f"out completion: {llm.payload[P.COMPLETION]}" in text
    status, text = cli("traces", "show", trace.id, "--db", str(db), "--json")
    shown = json.loads(text)
    assert len(shown["events"]) == len(recorder.ends(trace=trace))


def test_the_database_can_come_from_the_environment(recorded, monkeypatch):
    db, recorder = recorded
    monkeypatch.setenv("CALLBACKS_STORE__PATH", str(db))
    status, text = cli("traces", "--json", "-n", "100")
    assert status == 0 and len(json.loads(text)) == len(recorder.traces)


# -- bad input -------------------------------------------------------------------------------


def test_a_missing_database_is_a_one_line_error_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nope.db"
    for argv in (
        ["traces", "--db", str(missing)],
        ["traces", "show", "abc", "--db", str(missing)],
        ["traces", "export", "--db", str(missing), "--out", str(tmp_path / "x.jsonl")],
        ["view", "--db", str(missing), "--port", "0"],
    ):
        assert cli(*argv)[0] == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"no trace database at {missing}" in err, err
    assert list(tmp_path.iterdir()) == []


def test_no_database_configured_says_how_to_give_one(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALLBACKS_STORE__PATH", raising=False)
    assert cli("traces")[0] == 2
    assert "pass --db PATH or set [store] path" in capsys.readouterr().err


def test_an_unknown_trace_id_is_a_one_line_error(recorded, capsys):
    db, _ = recorded
    assert cli("traces", "show", "ffffffffffffffff", "--db", str(db))[0] == 2
    err = capsys.readouterr().err
    assert err == "callbacks traces: no trace with id 'ffffffffffffffff'\n"


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.db"
    bogus.write_text("hello")
    for argv in (["traces"], ["traces", "show", "x"], ["view", "--port", "0"]):
        assert cli(*argv, "--db", str(bogus))[0] == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot read the database" in err, err


def test_a_malformed_line_is_reported_by_number_and_the_rest_is_replayed(
    recorded, tmp_path, monkeypatch, capsys
):
    db, recorder = recorded
    out = tmp_path / "export.jsonl"
    assert cli("traces", "export", "--db", str(db), "--out", str(out))[0] == 0
    lines = out.read_text().splitlines(keepends=True)
    broken_event = json.loads(lines[3])
    assert broken_event["kind"] == "event"
    lines[3] = lines[3][: len(lines[3]) // 2] + "\n"
    out.write_text("".join(lines))
    target = tmp_path / "replayed.db"
    monkeypatch.setenv("CALLBACKS_PLUGINS", '["store"]')
    monkeypatch.setenv("CALLBACKS_STORE__PATH", str(target))
    capsys.readouterr()
    status, _ = cli("replay", str(out), "--fast")
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 4: not JSON" in err and str(out) in err, err
    stored = rows(target, "SELECT id FROM events")
    assert len(stored) == len(recorder.ends()) - 1
    assert broken_event["id"] not in {r[0] for r in stored}
    assert len(rows(target, "SELECT id FROM traces")) == len(recorder.traces)
    assert rows(
        target, "SELECT COUNT(*) FROM traces WHERE attributes LIKE '%\"replayed\": true%'"
    ) == [(len(recorder.traces),)]


def test_replay_of_a_missing_file_or_a_newer_version_is_an_error(tmp_path, capsys):
    assert cli("replay", str(tmp_path / "none.jsonl"))[0] == 2
    assert "cannot read" in capsys.readouterr().err
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({"kind": "header", "format": FORMAT, "version": VERSION + 1}))
    assert cli("replay", str(newer), "--fast")[0] == 2
    assert "line 1: version" in capsys.readouterr().err


def test_store_commands_are_contributed_through_the_plugin_hook():
    _, text = cli("plugins", "--json")
    store = next(p for p in json.loads(text) if p["name"] == "store")
    assert "callbacks_commands" in store["hooks"]
    assert store["distribution"] == "callbacks-core"


def test_replay_into_a_store_keeps_ids_and_marks_them(recorded, tmp_path):
    db, recorder = recorded
    out = tmp_path / "export.jsonl"
    cli("traces", "export", "--db", str(db), "--out", str(out))
    target = tmp_path / "copy.db"
    cm = CallbackManager([StorePlugin()], config={"store": {"path": str(target)}})
    replay(read_jsonl(out), cm, speed=None)
    cm.shutdown()
    query = "SELECT trace_id, id, parent_id, type FROM events"
    assert sorted(rows(target, query)) == sorted(rows(db, query))
    conn = sqlite3.connect(target)
    marked = conn.execute(
        "SELECT COUNT(*) FROM events WHERE json_extract(record, '$.inputs.replayed') = 1"
    ).fetchone()
    conn.close()
    assert marked == (len(recorder.ends()),)


def test_export_since_selects_by_start_time_and_rejects_nonsense(recorded, tmp_path, capsys):
    db, recorder = recorded
    out = tmp_path / "since.jsonl"
    assert cli("traces", "export", "--db", str(db), "--since", "1h", "--out", str(out))[0] == 0
    assert sum(r["kind"] == "trace" for r in read_jsonl(out)) == len(recorder.traces)
    assert (
        cli("traces", "export", "--db", str(db), "--since", "2999-01-01", "--out", str(out))[0] == 0
    )
    assert [r["kind"] for r in read_jsonl(out)] == ["header"]
    capsys.readouterr()
    assert cli("traces", "export", "--db", str(db), "--since", "soon", "--out", str(out))[0] == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--since 'soon'" in err
    assert cli("replay", str(out), "--speed", "0")[0] == 2
    assert "--speed must be above 0" in capsys.readouterr().err
