"""The ``debug`` plugin: trace trees, event inspection, timing statistics, bounded memory."""

from __future__ import annotations

import asyncio
import io

import pytest

from callbacks import ROOT, CallbackManager, EventPayload, EventType
from callbacks_debug import DebugPlugin, EventTimeInfo
from callbacks_debug.store import time_info

P = EventPayload


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def debugged(make_manager):
    """A manager with a debug plugin printing to a buffer (``print_trace`` on unless the test
    says otherwise); returns (manager, plugin, buffer)."""

    def make(debug_config: dict | None = None, stream: io.StringIO | None = None, **host):
        stream = stream if stream is not None else io.StringIO()
        plugin = DebugPlugin(stream=stream)
        debug = {"print_trace": True, **(debug_config or {})}
        manager = make_manager(plugin, config={"debug": debug, **host})
        return manager, plugin, stream

    return make


def small_query(cm: CallbackManager, question: str = "What do bees eat?") -> str:
    with cm.as_trace("query") as trace:
        with cm.event(EventType.QUERY, {P.QUERY_STR: question}) as query:
            with cm.event(EventType.RETRIEVE, {P.QUERY_STR: question}) as retrieve:
                retrieve.on_end({P.NODES: ["Bees eat nectar.", "Bees eat pollen."]})
            with cm.event(EventType.LLM, {P.PROMPT: f"Answer: {question}"}) as llm:
                llm.on_end({P.COMPLETION: "Nectar and pollen."})
            query.on_end({P.RESPONSE: "Nectar and pollen."})
    return trace.id


def test_trace_tree_printed_at_trace_end_with_types_durations_and_summaries(debugged):
    cm, debug, out = debugged()
    trace_id = small_query(cm)
    debug.get_events()  # waits for the worker, which printed the tree
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Trace 'query' " + trace_id[:12])
    assert "(3 events)" in lines[0]
    assert lines[1].startswith("└─ query  ") and " ms  " in lines[1]
    assert (
        "query_str='What do bees eat?'" in lines[1]
        and "→ response='Nectar and pollen.'" in lines[1]
    )
    assert lines[2].startswith("   ├─ retrieve  ") and "[2 items]" in lines[2]
    assert lines[3].startswith("   └─ llm  ") and "completion='Nectar and pollen.'" in lines[3]
    assert len(lines) == 4


def test_failed_event_is_marked_in_the_tree(debugged):
    cm, debug, out = debugged()
    with cm.as_trace("agent"), pytest.raises(ConnectionError):
        with cm.event(EventType.FUNCTION_CALL, {P.FUNCTION_CALL: "{}"}):
            raise ConnectionError("offline")
    debug.get_events()
    assert "✗ ConnectionError: offline" in out.getvalue()


def test_printing_can_be_turned_off(debugged):
    cm, debug, out = debugged({"print_trace": False})
    small_query(cm)
    assert len(debug.get_events()) == 6
    assert out.getvalue() == ""


def test_rich_tree_on_a_terminal_plain_text_otherwise(debugged):
    cm, debug, terminal = debugged(stream=Terminal())
    small_query(cm)
    debug.get_events()
    assert "└── " in terminal.getvalue() and "└─ query" not in terminal.getvalue()
    cm2, debug2, forced_plain = debugged({"rich": False}, stream=Terminal())
    small_query(cm2)
    debug2.get_events()
    assert "└─ query" in forced_plain.getvalue()


def test_events_and_pairs_filtered_by_type(debugged):
    cm, debug, _ = debugged({"print_trace": False})
    small_query(cm)
    small_query(cm, "What do wasps eat?")
    events = debug.get_events()
    assert len(events) == 12
    assert [e.time_ns for e in events] == sorted(e.time_ns for e in events)
    llm_events = debug.get_events(EventType.LLM)
    assert [e.type for e in llm_events] == [EventType.LLM] * 4
    pairs = debug.get_event_pairs(EventType.RETRIEVE)
    assert len(pairs) == 2 and all(s.id == e.id and s.is_start and not e.is_start for s, e in pairs)
    assert len(debug.get_event_pairs()) == 6


def test_llm_inputs_and_outputs(debugged):
    cm, debug, _ = debugged({"print_trace": False})
    small_query(cm)
    ((start, end),) = debug.get_llm_inputs_outputs()
    assert start.payload[P.PROMPT] == "Answer: What do bees eat?"
    assert end.payload[P.COMPLETION] == "Nectar and pollen."


def test_time_info_percentiles_and_zero_when_empty():
    info = time_info(ms * 1_000_000 for ms in range(1, 101))
    assert info.count == 100
    assert info.total == pytest.approx(5.050)
    assert info.mean == pytest.approx(0.0505)
    assert (info.p50, info.p95) == (pytest.approx(0.050), pytest.approx(0.095))
    assert time_info([]) == EventTimeInfo(0, 0.0, 0.0, 0.0, 0.0)


def test_event_time_info_matches_the_recorded_durations(debugged):
    cm, debug, _ = debugged({"print_trace": False})
    assert debug.get_event_time_info(EventType.LLM) == EventTimeInfo(0, 0.0, 0.0, 0.0, 0.0)
    for _ in range(5):
        small_query(cm)
    info = debug.get_event_time_info(EventType.LLM)
    durations = [end.duration_ns for _, end in debug.get_llm_inputs_outputs()]
    assert info.count == 5 == info.total_count
    assert info.total == pytest.approx(sum(durations) / 1e9)
    assert info.p95 == max(durations) / 1e9  # nearest rank of 5 values


def test_flush_event_logs_forgets_everything(debugged):
    cm, debug, _ = debugged({"print_trace": False})
    small_query(cm)
    assert len(debug.traces) == 1
    debug.flush_event_logs()
    assert debug.get_events() == [] and debug.traces == []


def test_memory_bounded_over_100k_events(debugged):
    cm, debug, _ = debugged({"print_trace": False, "max_traces": 100}, queue_size=200_000)
    trace_ids = []
    for _ in range(10_000):
        with cm.as_trace("t") as trace:
            for _ in range(5):
                with cm.event(EventType.LLM, {P.PROMPT: "p"}) as ev:
                    ev.on_end({P.COMPLETION: "c"})
        trace_ids.append(trace.id)
    kept = debug.traces
    assert cm.stats()["debug"]["dropped"] == 0
    assert [log.id for log in kept] == trace_ids[-100:]
    assert len(debug.get_events()) == 100 * 10
    assert {e.trace_id for e in debug.get_events()} == set(trace_ids[-100:])


def test_events_per_trace_are_capped(debugged):
    cm, debug, out = debugged({"max_events_per_trace": 1000})
    with cm.as_trace("big"):
        for _ in range(3000):
            with cm.event(EventType.EMBEDDING):
                pass
    (log,) = debug.traces
    # 1000 events kept, each a start and an end record; 2000 events not kept
    assert len(log.events) == 2000 and log.dropped_events == 2000
    assert "2000 not kept" in out.getvalue().splitlines()[0]


def test_concurrent_traces_keep_their_own_events(debugged):
    cm, debug, _ = debugged({"print_trace": False})

    async def query(i: int) -> str:
        async with cm.as_trace(f"q{i}") as trace:
            with cm.event(EventType.QUERY, {P.QUERY_STR: f"question {i}"}):
                await asyncio.sleep(0)
                with cm.event(EventType.LLM, {P.PROMPT: f"prompt {i}"}) as llm:
                    await asyncio.sleep(0)
                    llm.on_end({P.COMPLETION: f"answer {i}"})
        return trace.id

    async def main() -> list[str]:
        return await asyncio.gather(*(query(i) for i in range(20)))

    ids = asyncio.run(main())
    logs = {log.id: log for log in debug.traces}
    for i, trace_id in enumerate(ids):
        events = logs[trace_id].events
        assert len(events) == 4
        prompts = [e.payload[P.PROMPT] for e in events if e.type is EventType.LLM and e.is_start]
        assert prompts == [f"prompt {i}"]
        (query_start,) = [e for e in events if e.type is EventType.QUERY and e.is_start]
        assert query_start.parent_id == ROOT
        assert logs[trace_id].trace.trace_map[query_start.id] == [
            e.id for e in events if e.type is EventType.LLM and e.is_start
        ]


def test_installed_entry_point_is_named_debug(make_manager, monkeypatch, capsys):
    monkeypatch.setenv("CALLBACKS_DEBUG__PRINT_TRACE", "false")
    cm = make_manager(load_entrypoints=True, config={"plugins": ["debug"]})
    debug = cm.get_plugin("debug")
    assert isinstance(debug, DebugPlugin) and cm.delivery_mode("debug") == "background"
    small_query(cm)
    assert len(debug.get_events()) == 6
    assert capsys.readouterr().out == ""


def test_tree_shows_an_output_when_the_end_payload_repeats_the_prompt() -> None:
    from callbacks import Event, EventPhase, EventType
    from callbacks_debug.render import event_label

    def event(phase: EventPhase, payload: dict) -> Event:
        return Event("e1", EventType.LLM, phase, "t", "root", 0, payload, 1_000_000)

    start = event(EventPhase.START, {"formatted_prompt": "Question?"})
    end = event(EventPhase.END, {"formatted_prompt": "Question?", "completion": "Answer."})
    label = event_label(start, end, 40)
    assert "→ completion='Answer.'" in label
    assert label.startswith("llm  1.00 ms  formatted_prompt='Question?'")
