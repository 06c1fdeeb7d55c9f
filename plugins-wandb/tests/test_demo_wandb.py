"""The `callbacks demo` main job feeds W&B: read the offline run back and compare with the demo."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import wandb
from wandb_reader import find_run_file, read_run

from callbacks import CallbackManager, EventType
from callbacks.testing import RecordingPlugin
from callbacks_demo import run_demo
from callbacks_wandb import WandbPlugin


def _span_ids(span: dict[str, Any]) -> list[str]:
    ids = [span["span_id"]]
    for child in span.get("child_spans") or []:
        ids += _span_ids(child)
    return ids


def test_demo_run_is_recorded_in_wandb(wandb_offline: Path) -> None:
    ends = RecordingPlugin()
    cm = CallbackManager(plugins=[WandbPlugin(), ends], config={"wandb": {"project": "demo"}})
    printed = io.StringIO()
    report = run_demo(questions=2, out_dir=wandb_offline / "out", manager=cm, stream=printed)
    cm.shutdown()
    wandb.teardown()
    # The command the demo prints works as printed: wandb's own CLI finds the run there.
    (command,) = [
        line.split("upload it with:", 1)[1].strip()
        for line in printed.getvalue().splitlines()
        if "upload it with:" in line
    ]
    assert command.startswith("wandb sync ")
    wandb_cli = Path(sys.executable).with_name("wandb")
    found = subprocess.run(
        [str(wandb_cli), *shlex.split(command)[1:], "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert "Would sync 1 run(s)" in found.stderr + found.stdout, found.stderr
    assert cm.stats()["wandb"]["errors"] == 0

    run = read_run(find_run_file(wandb_offline))
    trees = run.trace_trees()
    assert len(trees) == len(report.trace_ids)
    recorded = {span_id for tree in trees for span_id in _span_ids(tree)}
    emitted = {e.id for e in ends.ends()}
    assert emitted <= recorded, "every demo event is a span"
    assert {e.type for e in ends.ends()} == set(EventType)

    llm_ends = [e for e in ends.ends() if e.type is EventType.LLM]
    table = run.table("llm_calls")
    assert len(table["data"]) == len(llm_ends) == report.event_counts["llm"]
    rows = run.rows_with("trace/llm_calls")
    assert sum(row["trace/llm_calls"] for row in rows) == len(llm_ends)
    # Every LLM call has token counts, the provider's or a tiktoken estimate, marked as such.
    columns = table["columns"]
    calls = [dict(zip(columns, row, strict=True)) for row in table["data"]]
    assert all(c["total_tokens"] is not None for c in calls)
    assert {c["token_source"] for c in calls} <= {"provider", "estimate"}
    assert sum(row.get("trace/total_tokens", 0) for row in rows) == sum(
        c["total_tokens"] for c in calls
    )
