"""Odd event streams handed straight to the hooks, payload rendering, and logging at exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest
import wandb
from wandb_reader import find_run_file, read_run

from callbacks import Event, EventAbandoned, EventPayload, EventPhase, EventType, payloads
from callbacks.kinds import span_kind
from callbacks_wandb import WandbPlugin, WandbSettings
from callbacks_wandb.results import SUMMARY_CHARS, split_payloads, summarize
from callbacks_wandb.spans import WANDB_KINDS
from callbacks_wandb.trace_tree import dump_span

P = EventPayload
TRACE_ID = "f" * 32


def _event(
    event_id: str,
    event_type: Any,
    phase: EventPhase,
    parent: str,
    payload: dict[str, Any],
    **kw: Any,
) -> Event:
    return Event(
        event_id,
        event_type,
        phase,
        TRACE_ID,
        parent,
        time.monotonic_ns(),
        MappingProxyType(payload),
        **kw,
    )


def test_odd_event_streams_are_logged_without_crashing(wandb_offline: Path) -> None:
    plugin = WandbPlugin()
    plugin.callbacks_configure(WandbSettings(project="edges", log_payloads="full"))
    plugin.on_event_start(
        _event("q", EventType.QUERY, EventPhase.START, "root", {P.QUERY_STR: "x" * 3000})
    )
    # An end whose start was never seen, with a dict usage and no response.
    plugin.on_event_end(
        _event(
            "l",
            EventType.LLM,
            EventPhase.END,
            "q",
            {P.USAGE: {"prompt_tokens": 2, "completion_tokens": 3}},
            duration_ns=5_000,
        )
    )
    # A type this plugin does not know.
    plugin.on_event_start(_event("u", "custom_step", EventPhase.START, "q", {"weird": object()}))
    plugin.on_event_end(_event("u", "custom_step", EventPhase.END, "q", {}, duration_ns=10))
    plugin.on_event_start(_event("a", EventType.TREE, EventPhase.START, "q", {}))
    plugin.on_event_end(
        _event(
            "a",
            EventType.TREE,
            EventPhase.END,
            "q",
            {},
            duration_ns=10,
            exception=EventAbandoned("gone"),
        )
    )
    # A start whose end never comes, and whose parent is not in the trace map.
    plugin.on_event_start(_event("o", EventType.SYNTHESIZE, EventPhase.START, "missing", {}))
    plugin.on_event_end(
        _event("q", EventType.QUERY, EventPhase.END, "root", {P.RESPONSE: None}, duration_ns=50_000)
    )
    now = time.time_ns()
    trace = SimpleNamespace(
        id=TRACE_ID,
        name="odd",
        trace_map={"root": ["q"], "q": ["u"]},
        attributes={},
        start_wall_time_ns=now - 60_000,
        end_wall_time_ns=now,
        duration_ns=60_000,
    )
    plugin.on_trace_end(trace)
    assert plugin.run.wait(60)  # wandb.init runs on a setup thread
    sync_file = Path(plugin.run.sync_file)
    plugin.callbacks_shutdown(timeout=10)
    wandb.teardown()
    assert sync_file == find_run_file(wandb_offline)
    run = read_run(sync_file)
    (root,) = run.trace_trees()
    assert root["name"] == "odd" and [c["span_id"] for c in root["child_spans"]] == ["q", "o"]
    query = root["child_spans"][0]
    assert query["results"][0]["inputs"]["query_str"] == "x" * 3000  # full mode: not clipped
    assert [c["span_id"] for c in query["child_spans"]] == ["u", "l", "a"]
    unknown, llm, abandoned = query["child_spans"]
    assert (unknown["name"], unknown["span_kind"], unknown["status_code"]) == (
        "custom_step",
        "CHAIN",
        "SUCCESS",
    )
    assert llm["attributes"]["start_seen"] is False and llm["attributes"]["total_tokens"] == 5
    assert abandoned["status_message"] == "EventAbandoned: gone"
    orphan = root["child_spans"][1]
    assert (orphan["status_code"], orphan["end_time_ms"]) == ("ERROR", None)
    assert run.table("llm_calls")["data"][0][2:] == [
        None,
        None,
        None,
        2,
        3,
        5,
        "provider",
        0.005,
        "ok",
    ]


def test_summary_mode_clips_texts_and_counts_lists() -> None:
    inputs, outputs = split_payloads(
        {P.PROMPT: "y" * 5000, P.DOCUMENTS: [f"doc {i}" for i in range(20)]},
        {P.COMPLETION: "short", P.EMBEDDINGS: [[0.0] * 8] * 3, P.EXCEPTION: ValueError("x")},
        "summary",
    )
    assert len(inputs[P.PROMPT]) == SUMMARY_CHARS and inputs[P.PROMPT].endswith("…")
    assert inputs["num_documents"] == 20 and len(inputs["documents"]) == 5
    assert outputs == {"completion": "short", "num_embeddings": 3, "embedding_dim": 8}


def test_input_repeated_at_the_end_is_not_an_output_but_chunks_made_are() -> None:
    prompt = "Context: ... Answer:"
    inputs, outputs = split_payloads(
        {P.PROMPT: prompt}, {P.PROMPT: str(prompt), P.COMPLETION: "42"}, "summary"
    )
    assert (inputs, outputs) == ({"formatted_prompt": prompt}, {"completion": "42"})
    _, outputs = split_payloads({P.PROMPT: prompt}, {P.PROMPT: "rewritten"}, "summary")
    assert outputs == {"formatted_prompt": "rewritten"}
    inputs, outputs = split_payloads({P.CHUNKS: ["one text"]}, {P.CHUNKS: ["one text"]}, "full")
    assert inputs == outputs == {"num_chunks": 1, "chunks": ["one text"]}


def test_tree_json_is_strict_json_with_non_finite_numbers_as_null() -> None:
    span = {"span_id": "s", "attributes": {"score": float("nan")}, "results": [float("-inf")]}

    def reject(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    dumped = json.loads(dump_span(span), parse_constant=reject)
    assert dumped == {"span_id": "s", "attributes": {"score": None}, "results": [None]}
    assert json.loads(dump_span({"n": 1.5, "text": "é"})) == {"n": 1.5, "text": "é"}


@pytest.mark.parametrize(
    "text",
    [
        "word " * 300,
        "x" * 1000,
        "a" * 399 + " " + "b" * 50,
        " \n\t " * 200 + "tail",
        "\u2003".join(["mot"] * 200),
        ("long" * 30 + " ") * 20,
    ],
)
@pytest.mark.parametrize("limit", [1, 10, 200])
def test_summary_of_a_long_text_reads_its_start_only_but_matches_payloads(
    text: str, limit: int
) -> None:
    assert summarize(text, limit) == payloads.summarize(text, limit)


@pytest.mark.parametrize(
    ("event_type", "kind", "wb_kind"),
    [
        (EventType.LLM, "LLM", "LLM"),
        (EventType.EMBEDDING, "EMBEDDING", "LLM"),
        (EventType.RETRIEVE, "RETRIEVER", "TOOL"),
        (EventType.RERANKING, "RERANKER", "TOOL"),
        (EventType.FUNCTION_CALL, "TOOL", "TOOL"),
        (EventType.AGENT_STEP, "AGENT", "AGENT"),
        (EventType.SYNTHESIZE, "CHAIN", "CHAIN"),
        ("not-a-type", "CHAIN", "CHAIN"),
    ],
)
def test_span_kind_mapping(event_type: Any, kind: str, wb_kind: str) -> None:
    assert (span_kind(event_type), WANDB_KINDS[span_kind(event_type)]) == (kind, wb_kind)


def test_data_is_logged_when_the_app_never_shuts_down(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from callbacks import CallbackManager, EventPayload, EventType
        from callbacks_wandb import WandbPlugin

        cm = CallbackManager(plugins=[WandbPlugin()], config={"wandb": {"project": "atexit"}})
        for prompt in ("hi", "bye"):
            with cm.as_trace("query"):
                with cm.event(EventType.LLM, {EventPayload.PROMPT: prompt}) as llm:
                    llm.on_end({EventPayload.COMPLETION: prompt.upper()})
            if prompt == "hi":
                cm.flush()  # the run is live well before exit, as in a long-running app
        """
    )
    env = {
        **{
            k: v
            for k, v in __import__("os").environ.items()
            if not k.startswith(("WANDB_", "CALLBACKS_"))
        },
        "WANDB_MODE": "offline",
        **{
            var: str(tmp_path)
            for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")
        },
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    run = read_run(find_run_file(tmp_path))
    assert len(run.trace_trees()) == 2
    assert [row[3:5] for row in run.table("llm_calls")["data"]] == [["hi", "HI"], ["bye", "BYE"]]
    assert run.record_types[-1] == "exit"
