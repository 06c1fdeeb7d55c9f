"""The `callbacks demo` main job feeds W&B: read the offline run back and compare with the demo."""

from __future__ import annotations

import io
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
    report = run_demo(questions=2, out_dir=wandb_offline / "out", manager=cm, stream=io.StringIO())
    cm.shutdown()
    wandb.teardown()
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
    assert len(run.rows_with("llm/latency_ms")) == len(llm_ends)
