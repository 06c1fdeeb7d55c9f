"""``callbacks demo``: the offline pipeline, run as a subprocess and in-process."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from callbacks import ROOT, CallbackManager, EventType
from callbacks_debug import DebugPlugin
from callbacks_demo import run_demo
from callbacks_finetuning import FineTuningPlugin
from callbacks_tokens import TokenCountingPlugin

ALL_TYPES = {t.value for t in EventType}


@pytest.fixture(scope="module")
def subprocess_run(tmp_path_factory):
    """The installed ``callbacks demo --questions 2`` console script, with every installed
    plugin, in a temp dir."""
    cwd = tmp_path_factory.mktemp("demo-cwd")
    out = cwd / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBACKS_", "WANDB_"))}
    script = Path(sys.executable).with_name("callbacks")
    assert script.exists(), "the callbacks console script is not installed next to python"
    proc = subprocess.run(
        [str(script), "demo", "--questions", "2", "--out", str(out)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, out, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def in_process_run(tmp_path_factory):
    """The same demo in-process, with two questions at once, on a manager holding only the
    built-in plugins; returns (report, manager, printed output)."""
    out = tmp_path_factory.mktemp("demo-inproc")
    stream = io.StringIO()
    manager = CallbackManager(
        plugins=[TokenCountingPlugin(), DebugPlugin(stream=stream), FineTuningPlugin()],
        config={"finetuning": {"path": str(out / "finetuning.jsonl")}},
    )
    report = run_demo(questions=2, concurrency=2, out_dir=out, manager=manager, stream=stream)
    yield report, manager, stream.getvalue()
    manager.shutdown()


def test_demo_emits_all_fourteen_event_types(subprocess_run):
    stdout, _, summary = subprocess_run
    assert set(summary["event_counts"]) == ALL_TYPES
    assert all(n > 0 for n in summary["event_counts"].values())
    table = stdout.split("Timing per event type")[1].split("Tokens")[0]
    assert {line.split()[0] for line in table.strip().splitlines()[2:]} == ALL_TYPES
    assert stdout.count("Trace 'query'") == 2 and "Trace 'index'" in stdout
    assert len(summary["trace_ids"]) == 3


def test_printed_token_totals_equal_the_tokens_plugin_api(subprocess_run, in_process_run):
    stdout, _, summary = subprocess_run
    report, manager, printed = in_process_run
    tokens = manager.get_plugin("tokens")
    api = {
        "prompt": tokens.prompt_llm_token_count,
        "completion": tokens.completion_llm_token_count,
        "total": tokens.total_llm_token_count,
        "embedding": tokens.total_embedding_token_count,
    }
    assert {k: report.tokens[k] for k in api} == api
    # Deterministic pipeline: the subprocess (one question at a time) counts the same.
    assert summary["tokens"] == report.tokens
    assert summary["event_counts"] == report.event_counts
    for output in (stdout, printed):
        match = re.search(
            r"LLM: prompt (\d+), completion (\d+), total (\d+) in (\d+) calls", output
        )
        assert match is not None
        assert [int(g) for g in match.groups()] == [
            api["prompt"],
            api["completion"],
            api["total"],
            report.event_counts["llm"],
        ]
        assert f"Embedding: {api['embedding']} in" in output
    records = tokens.llm_token_counts
    assert sum(r.total for r in records) == api["total"]
    assert {r.source for r in records} == {"tiktoken", "usage:openai", "usage:anthropic"}


def test_finetuning_jsonl_validates_one_line_per_llm_call(subprocess_run, check_finetuning_line):
    _, out, summary = subprocess_run
    assert summary["finetuning_path"] == str(out / "finetuning.jsonl")
    lines = (out / "finetuning.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    examples = [check_finetuning_line(line) for line in lines]
    assert len(examples) == summary["event_counts"]["llm"] == summary["finetuning_lines"]
    with_tools = [e for e in examples if "tools" in e]
    assert len(with_tools) == 4  # two chat calls per agent step
    assert any(m["role"] == "tool" for e in with_tools for m in e["messages"])


def test_demo_events_are_properly_nested(in_process_run):
    report, manager, _ = in_process_run
    debug = manager.get_plugin("debug")
    allowed_parents = {
        "node_parsing": {ROOT},
        "chunking": {"node_parsing"},
        "embedding": {ROOT, "retrieve"},
        "query": {ROOT},
        "sub_question": {"query"},
        "retrieve": {"sub_question"},
        "reranking": {"sub_question"},
        "synthesize": {"sub_question"},
        "tree": {"query"},
        "agent_step": {"query"},
        "chain": {"query"},
        "templating": {"chain", "synthesize", "tree"},
        "llm": {"chain", "synthesize", "tree", "agent_step"},
        "function_call": {"agent_step"},
        "exception": {"function_call"},
    }
    starts = {e.id: e for e in debug.get_events() if e.is_start}
    assert {e.trace_id for e in starts.values()} == set(report.trace_ids)
    for event in starts.values():
        parent = ROOT if event.parent_id == ROOT else starts[event.parent_id].type.value
        assert parent in allowed_parents[event.type.value], (event.type, parent)
        if event.parent_id != ROOT:
            assert starts[event.parent_id].trace_id == event.trace_id
    assert len(debug.get_event_pairs()) == len(starts) == sum(report.event_counts.values())


def test_demo_reports_where_the_files_are(subprocess_run):
    stdout, out, _ = subprocess_run
    assert f"Fine-tuning JSONL: {out / 'finetuning.jsonl'}" in stdout
    assert f"Summary:          {out / 'summary.json'}" in stdout
