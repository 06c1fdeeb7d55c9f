"""Unmatched ends, abandoned events, bounded memory, exit flush, fork, and exact timing."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import pytest

from callbacks import ROOT, CallbackManager, EventAbandoned, EventType


def test_end_without_start_and_unknown_ids_never_raise(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    cm.on_event_end(EventType.LLM, event_id="never-started")
    cm.on_event_end(EventType.LLM, event_id=None)
    assert cm.end_trace("no trace") is None
    with cm.as_trace("q"):
        cm.on_event_end(EventType.QUERY, event_id="nope")
    cm.shutdown()
    assert cm.host_stats()["unmatched_ends"] == 3
    assert recorder.ends() == []


def test_unfinished_events_are_closed_as_abandoned_when_trace_ends(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    with cm.as_trace("q") as trace:
        outer = cm.on_event_start(EventType.QUERY)
        inner = cm.on_event_start(EventType.LLM)
    cm.shutdown()
    ends = {e.id: e for e in recorder.ends()}
    assert set(ends) == {outer, inner}
    assert all(isinstance(e.exception, EventAbandoned) for e in ends.values())
    assert trace.open_event_ids == []
    assert trace.counts == {EventType.QUERY: 1, EventType.LLM: 1}
    assert cm.host_stats() == {**cm.host_stats(), "abandoned": 2, "pending": 0}
    # A late end for an abandoned event is ignored, not delivered twice.
    cm2_events = len(recorder.events)
    cm.on_event_end(EventType.LLM, event_id=inner)
    assert len(recorder.events) == cm2_events


def test_200k_events_keep_memory_bounded_and_release_traces() -> None:
    from callbacks import hookimpl

    class Counter:
        def __init__(self) -> None:
            self.count = 0

        @hookimpl
        def on_event_start(self, event) -> None:
            self.count += 1

        @hookimpl
        def on_event_end(self, event) -> None:
            self.count += 1

    counter = Counter()
    cm = CallbackManager(plugins=[counter])
    refs = []
    for i in range(20_000):
        with cm.as_trace("q") as trace:
            for _ in range(5):
                with cm.event(EventType.RETRIEVE):
                    with cm.event(EventType.EMBEDDING):
                        pass
            if i % 1000 == 0:
                refs.append(weakref.ref(trace))
        # Starts that never end keep their trace waiting for a late end, within a bound, until
        # it goes stale (here: at shutdown), when they are abandoned.
        if i % 100 == 0:
            with cm.as_trace("leaky"):
                cm.on_event_start(EventType.LLM)
    del trace
    assert cm.flush(30)
    assert counter.count == 20_000 * 20 + 200
    assert cm.stats()["counter"]["dropped"] == 0
    gc.collect()
    assert all(ref() is None for ref in refs), "finished traces must be released"
    assert cm.host_stats()["pending"] == 200
    cm.shutdown()
    assert counter.count == 20_000 * 20 + 200 * 2
    assert cm.host_stats()["pending"] == 0
    assert cm.host_stats()["abandoned"] == 200


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    from callbacks import CallbackManager, EventType, hookimpl

    class SlowFileWriter:
        def __init__(self, path):
            self.file = open(path, "a")

        @hookimpl
        def on_event_end(self, event):
            self.file.write(event.id + "\\n")

        @hookimpl
        def callbacks_shutdown(self):
            self.file.close()

    cm = CallbackManager(plugins=[SlowFileWriter(sys.argv[1])])
    for _ in range(5000):
        with cm.event(EventType.LLM):
            pass
    # no flush, no shutdown: normal interpreter exit must deliver everything
    """
)


def test_normal_interpreter_exit_flushes_background_queues(tmp_path: Path) -> None:
    out = tmp_path / "events.txt"
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(out)], check=True, timeout=60)
    lines = out.read_text().splitlines()
    assert len(lines) == 5000
    assert len(set(lines)) == 5000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_child_gets_fresh_queues_and_nothing_is_duplicated(tmp_path: Path) -> None:
    import threading

    from callbacks import hookimpl

    class PidWriter:
        def __init__(self) -> None:
            self.gate = threading.Event()
            self.seen: list[str] = []

        @hookimpl
        def on_event_start(self, event) -> None:
            self.gate.wait()
            self.seen.append(event.payload["who"])

    writer = PidWriter()
    cm = CallbackManager(plugins=[writer])
    for _ in range(5):
        with cm.event(EventType.LLM, payload={"who": "parent"}):
            pass
    child_out = tmp_path / "child.txt"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            writer.gate.set()
            for _ in range(3):
                with cm.event(EventType.LLM, payload={"who": "child"}):
                    pass
            ok = cm.flush(10)
            child_out.write_text(",".join(writer.seen) + f"|{ok}")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_out.read_text() == "child,child,child|True"
    writer.gate.set()
    assert cm.flush(10)
    assert writer.seen == ["parent"] * 5
    cm.shutdown()


def test_timing_uses_monotonic_ns_and_counts_and_durations_are_exact(recorder) -> None:
    cm = CallbackManager(plugins=[recorder])
    with cm.as_trace("q") as trace:
        for _ in range(3):
            before = time.monotonic_ns()
            with cm.event(EventType.LLM):
                time.sleep(0.002)
            after = time.monotonic_ns()
            end = recorder.ends()[-1]
            assert before <= end.start_time_ns <= end.time_ns <= after
            assert end.duration_ns >= 2_000_000
        with cm.event(EventType.RETRIEVE):
            pass
    cm.shutdown()
    llm_ends = [e for e in recorder.ends() if e.type is EventType.LLM]
    assert trace.counts == {EventType.LLM: 3, EventType.RETRIEVE: 1}
    assert trace.durations_ns[EventType.LLM] == [e.duration_ns for e in llm_ends]
    assert trace.total_durations_ns[EventType.LLM] == sum(e.duration_ns for e in llm_ends)
    assert trace.duration_ns >= sum(e.duration_ns for e in llm_ends)
    assert abs(llm_ends[0].wall_time_ns - time.time_ns()) < 5_000_000_000
    assert trace.trace_map[ROOT] == [e.id for e in recorder.events if e.is_start]


def test_sampling_is_decided_once_per_trace(recorder) -> None:
    cm = CallbackManager(plugins=[recorder], config={"sample_rate": 0.0})
    with cm.as_trace("q") as trace:
        with cm.event(EventType.QUERY):
            with cm.event(EventType.LLM):
                pass
    with cm.event(EventType.LLM):
        with cm.event(EventType.EMBEDDING):
            pass
    cm.shutdown()
    assert not trace.sampled
    assert recorder.events == [] and recorder.traces == []
    assert cm.host_stats()["sampled_out"] == 2


def test_payload_masks_apply_before_plugins_see_the_payload(recorder) -> None:
    from callbacks import EventPayload

    cm = CallbackManager(
        plugins=[recorder],
        config={"hide_inputs": True, "max_payload_chars": 5},
    )
    with cm.event(EventType.LLM, payload={EventPayload.PROMPT: "secret prompt"}) as ev:
        ev.on_end({EventPayload.COMPLETION: "a long completion"})
    cm.shutdown()
    start, end = recorder.events
    assert start.payload[EventPayload.PROMPT] == "<hidden>"
    assert end.payload[EventPayload.COMPLETION] == "a lo…"  # at most max_payload_chars
