"""Fault 7: fork is safe for plugins too. A child forked while another thread holds a plugin's
lock must not deadlock on it (the built-ins re-create their state through the host's
``callbacks_after_fork_in_child`` hook), and a fork inside an open trace must not deliver that
trace's end (or its open events' ends) twice, once per process."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from callbacks import CallbackManager, EventType, hookimpl
from callbacks.testing import RecordingPlugin
from callbacks_debug import DebugPlugin
from callbacks_finetuning import FineTuningPlugin
from callbacks_tokens import TokenCountingPlugin

CHILD_DEADLINE_S = 10.0


def _fork(body: Callable[[], Any]) -> tuple[int, int]:
    """Fork; the child runs ``body`` and writes its JSON result to a pipe, then exits.
    Returns (pid, read end of the pipe)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        try:
            result = json.dumps(body())
        except BaseException as error:  # report anything; never run the parent's test code
            result = json.dumps({"error": repr(error)})
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, read_end: int, deadline: float) -> tuple[str, Any]:
    """("ok", result) from a forked child, or ("deadlock", None) when it did not answer by
    ``deadline`` (then it is killed)."""
    ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        return "deadlock", None
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return "ok", json.loads(b"".join(chunks))


def _in_child(body: Callable[[], Any]) -> tuple[str, Any]:
    pid, read_end = _fork(body)
    return _collect(pid, read_end, time.monotonic() + CHILD_DEADLINE_S)


def _llm_call(cm: CallbackManager) -> None:
    with cm.event(EventType.LLM, {"model_name": "gpt-4o-mini", "prompt": "hi"}) as scope:
        scope.on_end(
            {
                "completion": "hello",
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )


READERS: dict[str, Callable[[Any], Any]] = {
    "tokens": lambda p: p.totals().total,
    "debug": lambda p: len(p.get_events()),
    "finetuning": lambda p: len(p.finetuning_events),
}
PLUGINS = {"tokens": TokenCountingPlugin, "debug": DebugPlugin, "finetuning": FineTuningPlugin}


@pytest.mark.parametrize("name", list(PLUGINS))
def test_fork_while_a_thread_holds_a_builtin_plugins_lock(name: str, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # finetuning writes its file in the working directory
    plugin = PLUGINS[name]()
    config = {"debug": {"print_trace": False}} if name == "debug" else None
    cm = CallbackManager(plugins=[plugin], config=config)
    try:
        for _ in range(5):
            _llm_call(cm)
        before = READERS[name](plugin)
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            # What the plugin's worker does thousands of times a second: hold the lock.
            with plugin._lock:
                held.set()
                release.wait(30.0)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10.0)
        try:
            outcome, after = _in_child(lambda: (_llm_call(cm), READERS[name](plugin))[1])
        finally:
            release.set()
            holder.join()
    finally:
        cm.shutdown(timeout=5.0)
    assert outcome == "ok", f"the forked child deadlocked on the {name} plugin's lock"
    assert after != before and not isinstance(after, dict), after


def test_fork_under_load_never_deadlocks_the_tokens_plugin() -> None:
    """The issue's reproduction: fork 60 times while the tokens worker is busy counting."""
    plugin = TokenCountingPlugin()
    cm = CallbackManager(plugins=[plugin])
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            _llm_call(cm)

    feeder = threading.Thread(target=feed)
    feeder.start()
    children = []
    try:
        for _ in range(60):
            children.append(_fork(lambda: plugin.totals().total))
    finally:
        stop.set()
        feeder.join()
    deadline = time.monotonic() + CHILD_DEADLINE_S
    outcomes = [_collect(pid, fd, deadline)[0] for pid, fd in children]
    cm.shutdown(timeout=5.0)
    assert outcomes.count("deadlock") == 0, f"{outcomes.count('deadlock')} of 60 children hung"


def test_after_fork_hook_runs_in_the_child_only() -> None:
    class Forked:
        callbacks_name = "forked"

        def __init__(self) -> None:
            self.calls: list[int] = []

        @hookimpl
        def callbacks_after_fork_in_child(self) -> None:
            self.calls.append(os.getpid())

    plugin = Forked()
    cm = CallbackManager(plugins=[plugin])
    try:
        outcome, child_calls = _in_child(lambda: [*plugin.calls, os.getpid()])
    finally:
        cm.shutdown(timeout=5.0)
    assert outcome == "ok"
    assert child_calls[:-1] == [child_calls[-1]]  # once, in the child, with the child's pid
    assert plugin.calls == []  # never in the parent


@pytest.mark.parametrize("delivery", ["inline", "background"])
def test_fork_inside_an_open_trace_delivers_its_end_once(delivery: str) -> None:
    recorder = RecordingPlugin(delivery=delivery)
    cm = CallbackManager(plugins=[recorder])
    read_end, write_end = os.pipe()
    with cm.as_trace("forked-request") as trace:
        with cm.event(EventType.QUERY) as query:
            pid = os.fork()  # both processes leave the with blocks below
    if pid == 0:
        try:
            with cm.event(EventType.LLM):  # the child's own work gets a trace of its own
                pass
            cm.flush(timeout=5.0)
            report: dict[str, Any] = {
                "trace_ends": [t.id for t in recorder.traces],
                "query_ends": [e.id for e in recorder.ends(EventType.QUERY)],
                "llm_traces": [e.trace_id for e in recorder.ends(EventType.LLM)],
            }
        except BaseException as error:
            report = {"error": repr(error)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    outcome, child = _collect(pid, read_end, time.monotonic() + CHILD_DEADLINE_S)
    assert cm.flush(timeout=5.0)
    cm.shutdown(timeout=5.0)
    assert outcome == "ok" and "error" not in child, child
    assert [t.id for t in recorder.traces] == [trace.id]  # the parent ends it, once
    assert [e.id for e in recorder.ends(EventType.QUERY)] == [query.id]
    assert child["trace_ends"] == [t for t in child["trace_ends"] if t != trace.id]
    assert child["query_ends"] == []
    assert len(child["llm_traces"]) == 1 and child["llm_traces"][0] != trace.id
