"""Process delivery: plugins that run in the sidecar process, with real processes.

Each test compares what the plugin saw in the sidecar (written to a file from there) with what
the application emitted (recorded in the app by ``RecordingPlugin``), and checks the counters
against what the test emitted."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sidecar_plugins import EndsOnly, SidecarRecorder

from callbacks import CallbackManager, EventType, payloads
from callbacks.testing import RecordingPlugin

TESTS = Path(__file__).parent


class Node:
    """A retrieval result shaped like LlamaIndex's NodeWithScore (not plain data)."""

    def __init__(self, node_id: str, text: str, score: float) -> None:
        self.node_id, self.text, self.score = node_id, text, score

    def get_content(self) -> str:
        return self.text


class Message:
    def __init__(self, role: str, content: str) -> None:
        self.role, self.content = role, content


def _manager(tmp_path: Path, plugin: Any = SidecarRecorder, **config: Any) -> CallbackManager:
    name = plugin.callbacks_name
    return CallbackManager(
        plugins=[plugin, RecordingPlugin()],
        config={name: {"out": str(tmp_path / "out.json"), "tag": "from-config"}, **config},
    )


def _read(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "out.json").read_text())


def _emit_query(cm: CallbackManager, i: int) -> None:
    with cm.as_trace(f"query-{i}"):
        with cm.event(EventType.RETRIEVE, {"query_str": f"q{i}"}) as scope:
            scope.on_end({"nodes": [Node(f"n{i}", f"text {i}", 0.5 + i / 1000)]})
        with cm.event(
            EventType.LLM, {"messages": [Message("user", f"hello {i}")], "n": i}
        ) as scope:
            scope.on_end(
                {
                    "completion": f"answer {i}",
                    "usage": {"prompt_tokens": 3, "completion_tokens": i, "total_tokens": 3 + i},
                }
            )
        try:
            with cm.event(EventType.FUNCTION_CALL, {"boom": i == 0}):
                raise KeyError(f"missing {i}")
        except KeyError:
            pass


def test_plugin_runs_in_the_sidecar_and_sees_what_the_app_emitted(tmp_path: Path) -> None:
    cm = _manager(tmp_path)
    try:
        assert cm.delivery_mode("recorder") == "process"
        for i in range(50):
            _emit_query(cm, i)
        assert cm.flush(timeout=30.0)
        seen = _read(tmp_path)
        stats = cm.stats()["recorder"]
    finally:
        cm.shutdown(timeout=30.0)
    assert seen["pid"] != os.getpid() and seen["pid"] == stats["sidecar"]["pid"]
    assert seen["tag"] == "from-config"  # configuration applies in the sidecar
    assert seen["why"] == "flush" and seen["flushes"] == 1

    app = cm.get_plugin("recorder-2") or cm.list_plugins()["recorder-2"]
    ends = [e for e in app.events if not e.is_start]
    remote_ends = [r for r in seen["seen"] if r["kind"] == "end"]
    assert [r["id"] for r in remote_ends] == [e.id for e in ends]
    assert [r["id"] for r in seen["seen"] if r["kind"] == "start"] == [
        e.id for e in app.events if e.is_start
    ]
    for remote, end in zip(remote_ends, ends, strict=True):
        payload = end.full_payload
        assert remote["type"] == end.type.value
        assert (remote["trace_id"], remote["parent_id"]) == (end.trace_id, end.parent_id)
        assert remote["start_id"] == end.id
        assert remote["duration_ns"] == end.duration_ns
        assert remote["nodes"] == [
            [n.id, n.text, n.score] for n in payloads.nodes_of(payload.get("nodes"))
        ]
        assert remote["messages"] == [
            [m.role, m.content] for m in payloads.messages_of(payload.get("messages"))
        ]
        assert remote["completion"] == payloads.completion_of(payload)
        usage = payloads.usage_of(payload)
        assert remote["usage"] == ([usage.prompt, usage.completion, usage.total] if usage else None)
        expected = [type(end.exception).__name__, str(end.exception)] if end.exception else None
        assert remote["exception"] == expected
        assert remote["n"] == payload.get("n")
    assert sum(1 for r in remote_ends if r["exception"]) == 50
    traces = [r for r in seen["seen"] if r["kind"] == "trace"]
    assert [(t["id"], t["name"], t["events"], t["map"]) for t in traces] == [
        (t.id, t.name, t.event_count, t.trace_map) for t in app.traces
    ]

    # Counters cross the boundary: 150 events, 50 traces; the first failing call raised.
    assert stats["mode"] == "process"
    assert stats["delivered"] == 150 * 2 + 50
    assert stats["errors"] == 1 and stats["errors_by_hook"] == {"on_event_end": 1}
    assert stats["plugin"]["seen"] == len(seen["seen"]) and stats["plugin"]["pid"] == seen["pid"]
    assert (stats["dropped"], stats["lost"], stats["queue_depth"]) == (0, 0, 0)


def test_shutdown_runs_the_plugins_shutdown_in_the_sidecar_which_exits(tmp_path: Path) -> None:
    cm = _manager(tmp_path)
    for i in range(20):
        _emit_query(cm, i)
    pid = cm.stats()["recorder"]["sidecar"]["pid"]
    assert cm.shutdown(timeout=30.0)
    seen = _read(tmp_path)
    assert seen["why"] == "shutdown" and seen["flushes"] == 1  # shutdown flushes first
    assert sum(1 for r in seen["seen"] if r["kind"] == "end") == 60
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: gone


def test_a_killed_sidecar_is_restarted_and_what_it_lost_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cm = CallbackManager(plugins=[EndsOnly], config={"ends": {"out": str(tmp_path / "out.json")}})
    try:
        for i in range(30):
            with cm.event(EventType.CHAIN, {"n": i}):
                pass
        assert cm.flush(timeout=30.0)  # everything so far is acknowledged
        first_pid = cm.stats()["ends"]["sidecar"]["pid"]
        assert json.loads((tmp_path / "out.json").read_text()) == {"pid": first_pid, "count": 30}

        blocked = tmp_path / "out.json.blocked"
        os.mkfifo(blocked)
        fifo = os.open(blocked, os.O_RDONLY | os.O_NONBLOCK)
        with cm.event(EventType.CHAIN, {"block": True}):
            pass
        for i in range(40):
            with cm.event(EventType.CHAIN, {"n": i}):
                pass
        # Wait until the sidecar is stuck in the hook (it writes its pid to the FIFO first).
        assert select.select([fifo], [], [], 30.0)[0]
        assert os.read(fifo, 100).decode() == str(first_pid)
        os.close(fifo)
        assert cm.flush(timeout=0.5) is False  # the stuck sidecar does not answer
        with caplog.at_level(logging.WARNING, logger="callbacks"):
            os.kill(first_pid, signal.SIGKILL)
            # A request after the kill returns once the app saw the death (False), or once a new
            # sidecar answered it (True): then nothing more can reach the dead one.
            cm.flush(timeout=60.0)
            for i in range(25):
                with cm.event(EventType.CHAIN, {"n": i}):
                    pass
            assert cm.flush(timeout=60.0)
        stats = cm.stats()["ends"]
    finally:
        cm.shutdown(timeout=30.0)
    assert stats["sidecar"]["restarts"] == 1 and stats["sidecar"]["pid"] != first_pid
    # The new sidecar saw the 25 events sent after it started; the blocking event and the 40
    # behind it were sent to the killed one and never acknowledged.
    assert json.loads((tmp_path / "out.json").read_text())["count"] == 25
    assert stats["lost"] == 41
    assert stats["delivered"] == 30 + 25
    assert stats["delivered"] + stats["lost"] + stats["dropped"] == 30 + 41 + 25
    assert any("41 events" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("python", ["/nonexistent/python", "/bin/false"])
def test_a_sidecar_that_cannot_start_leaves_the_plugin_in_process(
    tmp_path: Path, python: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="callbacks"):
        cm = _manager(tmp_path, sidecar_python=python)
    try:
        assert cm.delivery_mode("recorder") == "background"
        assert any(
            "runs in-process" in r.getMessage() and "recorder" in r.getMessage()
            for r in caplog.records
        )
        for i in range(5):
            _emit_query(cm, i)
        assert cm.flush(timeout=10.0)
        seen = _read(tmp_path)
        stats = cm.stats()["recorder"]
    finally:
        cm.shutdown(timeout=10.0)
    assert seen["pid"] == os.getpid()
    assert sum(1 for r in seen["seen"] if r["kind"] == "end") == 15
    assert stats["mode"] == "background" and stats["delivered"] == 15 * 2 + 5


def test_user_chooses_delivery_per_plugin_in_configuration(tmp_path: Path) -> None:
    cm = _manager(tmp_path, delivery={"recorder": "background"})
    try:
        assert cm.delivery_mode("recorder") == "background"
    finally:
        cm.shutdown(timeout=10.0)
    recorder = RecordingPlugin()
    recorder.callbacks_name = "plain"
    cm = CallbackManager(
        plugins=[EndsOnly],
        config={"ends": {"out": str(tmp_path / "o.json")}, "delivery": {"ends": "inline"}},
    )
    try:
        assert cm.delivery_mode("ends") == "inline"
    finally:
        cm.shutdown(timeout=10.0)


_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
from sidecar_plugins import SidecarRecorder
from callbacks import CallbackManager, EventType
cm = CallbackManager(
    plugins=[SidecarRecorder], config={{"recorder": {{"out": {out!r}, "shutdown_s": {slow}}}}}
)
for i in range({n}):
    with cm.as_trace("t"):
        with cm.event(EventType.CHAIN, {{"n": i}}):
            pass
print(cm.stats()["recorder"]["sidecar"]["pid"], flush=True)
{ending}
"""


def _run_script(
    tmp_path: Path, n: int, ending: str, slow: float = 0.0
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "out.json"
    script = _SCRIPT.format(
        tests=str(TESTS), out=str(out), n=n, ending=textwrap.dedent(ending), slow=slow
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    return completed, out


def test_exit_flushes_the_sidecar(tmp_path: Path) -> None:
    completed, out = _run_script(tmp_path, 200, "")  # no flush, no shutdown: just exit
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(out.read_text())
    assert seen["why"] == "shutdown"
    assert [r["n"] for r in seen["seen"] if r["kind"] == "end"] == list(range(200))
    pid = int(completed.stdout.split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_forked_child_gets_its_own_sidecar(tmp_path: Path) -> None:
    cm = _manager(tmp_path)
    try:
        _emit_query(cm, 0)
        assert cm.flush(timeout=30.0)
        parent_sidecar = cm.stats()["recorder"]["sidecar"]["pid"]
        child_out = tmp_path / "child.json"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                for i in range(1, 4):
                    _emit_query(cm, i)
                ok = cm.flush(timeout=30.0)
                stats = cm.stats()["recorder"]
                child_out.write_text(
                    json.dumps({"ok": ok, "stats": stats, "seen": _read(tmp_path)})
                )
                cm.shutdown(timeout=30.0)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        child = json.loads(child_out.read_text())
        for i in range(4, 6):
            _emit_query(cm, i)
        assert cm.flush(timeout=30.0)
        parent_stats = cm.stats()["recorder"]
        parent_seen = _read(tmp_path)
    finally:
        cm.shutdown(timeout=30.0)
    assert child["ok"]
    assert child["stats"]["sidecar"]["pid"] not in (parent_sidecar, None)
    assert child["stats"]["sidecar"]["restarts"] == 0
    assert child["stats"]["delivered"] == 3 * (3 * 2 + 1)  # only the child's own events
    child_ns = [r["n"] for r in child["seen"]["seen"] if r["kind"] == "end" and r["n"] is not None]
    assert child_ns == [1, 2, 3]
    assert parent_stats["sidecar"]["pid"] == parent_sidecar
    parent_ns = [r["n"] for r in parent_seen["seen"] if r["kind"] == "end" and r["n"] is not None]
    assert parent_ns == [0, 4, 5]
    assert parent_stats["delivered"] == 3 * (3 * 2 + 1)


def test_cli_plugins_shows_which_plugins_run_in_the_sidecar(tmp_path: Path) -> None:
    from test_cli import run_cli

    env = {"CALLBACKS_PLUGINS": '["example"]', "CALLBACKS_DELIVERY": '{"example": "process"}'}
    result = run_cli("plugins", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["example"]["active"] and rows["example"]["delivery"] == "process"
    table = run_cli("plugins", env=env, cwd=tmp_path)
    line = next(line for line in table.stdout.splitlines() if line.startswith("example"))
    assert "process" in line.split()


def test_sigterm_flushes_the_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    ending = 'print("ready", flush=True)\nimport signal\nsignal.pause()\n'
    script = _SCRIPT.format(tests=str(TESTS), out=str(out), n=300, ending=ending, slow=0.0)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    sidecar_pid = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == "ready"  # every event emitted, none flushed
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, stderr  # the app still dies of the signal
    seen = json.loads(out.read_text())
    assert seen["why"] == "shutdown" and seen["pid"] == sidecar_pid
    assert [r["n"] for r in seen["seen"] if r["kind"] == "end"] == list(range(300))
    with pytest.raises(ProcessLookupError):
        os.kill(sidecar_pid, 0)


def test_the_sidecar_shuts_its_plugins_down_when_the_app_is_killed(tmp_path: Path) -> None:
    # kill -9 of the app: no exit hook runs; the sidecar sees its socket close.
    ending = "cm.flush(timeout=30)\nos.kill(os.getpid(), 9)\n"
    completed, out = _run_script(tmp_path, 50, ending)
    assert completed.returncode == -signal.SIGKILL
    sidecar_pid = int(completed.stdout.split()[0])
    try:
        pidfd = os.pidfd_open(sidecar_pid)
    except ProcessLookupError:
        pass  # already gone
    else:
        assert select.select([pidfd], [], [], 60.0)[0]  # readable once the process exited
        os.close(pidfd)
    seen = json.loads(out.read_text())
    assert seen["why"] == "shutdown" and seen["pid"] == sidecar_pid
    assert [r["n"] for r in seen["seen"] if r["kind"] == "end"] == list(range(50))


def test_a_sidecar_past_the_shutdown_timeout_is_not_killed_and_exit_waits_for_it(
    tmp_path: Path,
) -> None:
    # The plugin's shutdown takes 2 s; the app gives it 0.2 s, then exits: the sidecar is left
    # to finish (reported), and the interpreter's exit waits for it, so the data is there.
    ending = "print(cm.shutdown(timeout=0.2), flush=True)\n"
    completed, out = _run_script(tmp_path, 20, ending, slow=2.0)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split()[1] == "False"  # shutdown says it did not finish in time
    assert "still finishing in the sidecar" in completed.stderr  # reported, and not as stuck
    assert "stuck" not in completed.stderr
    seen = json.loads(out.read_text())
    assert seen["why"] == "shutdown"
    assert [r["n"] for r in seen["seen"] if r["kind"] == "end"] == list(range(20))


def test_a_llama_index_chat_reaches_the_sidecar_as_plain_data(tmp_path: Path) -> None:
    """Payloads cross as plain data: the sidecar reads a real LlamaIndex chat (messages whose
    roles are LlamaIndex's MessageRole enum, retrieved nodes, a chat reply) without importing
    LlamaIndex or numpy to unpickle them."""
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import ChatMessage, MessageRole
    from scripted_llm import ScriptedLLM

    from callbacks.integrations import llama_index as bridge

    names = ("_llm", "_embed_model", "_callback_manager")
    saved = {name: getattr(Settings, name) for name in names}
    Settings.llm = ScriptedLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.callback_manager = LlamaCallbackManager([])
    cm = _manager(tmp_path)
    try:
        bridge.install(cm)
        index = VectorStoreIndex.from_documents(
            [Document(text=f"Topic {i} is about {i} things. " * 5) for i in range(3)]
        )
        engine = index.as_chat_engine(chat_mode="context")
        history = [ChatMessage(role=MessageRole.SYSTEM, content="Be brief.")]
        reply = engine.chat("What is topic 1 about?", chat_history=history)
        assert cm.flush(timeout=30.0)
        seen = _read(tmp_path)
        app = cm.list_plugins()["recorder-2"]
    finally:
        bridge.uninstall(cm)
        cm.shutdown(timeout=30.0)
        for name, value in saved.items():
            setattr(Settings, name, value)
    assert seen["foreign_modules"] == []
    remote_ends = [r for r in seen["seen"] if r["kind"] == "end"]
    ends = [e for e in app.events if not e.is_start]
    assert [r["type"] for r in remote_ends] == [e.type.value for e in ends]
    llm = [r for r in remote_ends if r["type"] == "llm"]
    assert llm and ["system", "Be brief."] in llm[-1]["messages"]
    assert any(r["nodes"] for r in remote_ends if r["type"] == "retrieve")
    assert llm[-1]["completion"] == str(reply)


def test_stats_answer_ahead_of_a_backlog(tmp_path: Path) -> None:
    """A sidecar 4 s behind (20,000 events queued for a sink taking 0.2 ms each) still answers
    ``stats()`` with its own counters: the request does not wait behind the backlog (it did, and
    gave up after 2 s per plugin)."""
    n = 20_000
    cm = CallbackManager(
        plugins=[EndsOnly],
        config={
            "ends": {"out": str(tmp_path / "o.json"), "event_s": 0.0002},
            "queue_size": 100_000,
        },
    )
    try:
        assert cm.flush(timeout=30.0)  # the sidecar is up and idle
        with cm.as_trace("burst"):
            for i in range(n):
                with cm.event(EventType.CHAIN, {"n": i}):
                    pass
        stats = cm.stats()["ends"]
        assert cm.flush(timeout=60.0)
        final = cm.stats()["ends"]
    finally:
        cm.shutdown(timeout=30.0)
    # The sidecar's own answer (its plugin's counter), taken while most events still waited.
    assert "plugin" in stats and stats["plugin"]["count"] < n
    assert stats["delivered"] < n
    assert (final["delivered"], final["dropped"], final["lost"]) == (n, 0, 0)
