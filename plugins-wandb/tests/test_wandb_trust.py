"""Issue 17's W&B points, read back from the run's own ``.wandb`` file and table files: handled
exception events are errors, chunking inputs and outputs, odd table values, an unwritable
directory, failures at every level of a chain."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wandb
from wandb_reader import OfflineRun, find_run_file, read_run

from callbacks import CallbackManager, EventPayload, EventType
from callbacks_wandb import WandbPlugin
from callbacks_wandb.llm_calls import plain_cell

P = EventPayload


def _spans(span: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {span["span_id"]: span}
    for child in span.get("child_spans") or []:
        out.update(_spans(child))
    return out


def _finish(cm: CallbackManager, root: Path) -> tuple[OfflineRun, dict[str, Any]]:
    assert cm.shutdown(timeout=30)
    stats = cm.stats()["wandb"]
    wandb.teardown()
    return read_run(find_run_file(root)), stats


def test_handled_exception_event_is_an_error(wandb_offline: Path) -> None:
    cm = CallbackManager(plugins=[WandbPlugin()], config={"wandb": {"project": "trust"}})
    with cm.as_trace("query"), cm.event(EventType.QUERY, {P.QUERY_STR: "q"}) as query:
        # LlamaIndex reports a handled exception as a start-only exception event.
        handled = cm.on_event_start(EventType.EXCEPTION, {P.EXCEPTION: KeyError("missing doc")})
        query.on_end({P.RESPONSE: "answered anyway"})
    run, stats = _finish(cm, wandb_offline)
    span = _spans(run.trace_trees()[0])[handled]
    assert span["status_code"] == "ERROR"
    assert span["status_message"] == "KeyError: 'missing doc'"
    assert run.rows_with("trace/errors")[0]["trace/errors"] == 1
    assert stats["errors"] == 0


def test_chunking_inputs_come_from_the_start_and_outputs_from_the_end(wandb_offline: Path) -> None:
    cm = CallbackManager(plugins=[WandbPlugin()], config={"wandb": {"project": "trust"}})
    with cm.as_trace("ingest"), cm.event(EventType.CHUNKING, {P.CHUNKS: ["one long text"]}) as ev:
        ev.on_end({P.CHUNKS: ["one", "long", "text"]})
    run, _ = _finish(cm, wandb_offline)
    (result,) = run.trace_trees()[0]["results"]
    assert result["inputs"] == {"num_chunks": 1, "chunks": ["one long text"]}
    assert result["outputs"] == {"num_chunks": 3, "chunks": ["one", "long", "text"]}


def test_an_odd_value_never_loses_the_calls_table(wandb_offline: Path) -> None:
    cm = CallbackManager(plugins=[WandbPlugin()], config={"wandb": {"project": "trust"}})
    prompts = [np.str_("numpy prompt"), "plain prompt"]
    for prompt in prompts:
        with cm.as_trace("q"), cm.event(EventType.LLM, {P.PROMPT: prompt}) as llm:
            llm.on_end({P.COMPLETION: "ok", P.MODEL_NAME: np.str_("stand-in")})
        assert cm.flush(timeout=30)  # the table is logged at each flush: every one must work
    run, stats = _finish(cm, wandb_offline)
    table = run.table("llm_calls")
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [(r["prompt"], r["model"]) for r in rows] == [
        ("numpy prompt", "stand-in"),
        ("plain prompt", "stand-in"),
    ]
    assert len(sorted(run.files_dir.glob("media/table/llm_calls_*.table.json"))) == 2
    assert stats["errors"] == 0
    # callbacks.payloads already hands the prompt over as an exact str; a value that still
    # arrives odd is converted cell by cell:
    assert plain_cell(np.str_("x")) == ("x", True) and type(plain_cell(np.str_("x"))[0]) is str
    assert plain_cell(np.float64(0.5)) == (0.5, True)
    assert plain_cell(object.__new__(_Unprintable)) == ("<unprintable _Unprintable>", True)


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text")


def test_an_unwritable_directory_is_reported_with_where_the_run_went(
    wandb_offline: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = wandb_offline / "a-file"
    blocker.write_text("not a directory")
    fallback = wandb_offline / "tmp"
    fallback.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))  # where wandb falls back to
    config = {"wandb": {"project": "trust", "dir": str(blocker / "runs")}}
    cm = CallbackManager(plugins=[WandbPlugin()], config=config)
    with caplog.at_level(logging.WARNING), cm.as_trace("q"):
        with cm.event(EventType.LLM, {P.PROMPT: "hi"}) as llm:
            llm.on_end({P.COMPLETION: "hello"})
    run, stats = _finish(cm, wandb_offline)
    plugin = stats["plugin"]
    assert plugin["dir_fallbacks"] == 1
    assert plugin["requested_dir"] == str(blocker / "runs")
    assert Path(plugin["run_dir"]) == run.path.parent  # the stats say where the file really is
    assert run.path.is_relative_to(fallback)
    assert plugin["run_dir"] in caplog.text and str(blocker / "runs") in caplog.text
    assert len(run.trace_trees()) == 1


def test_failure_shows_at_every_level_of_the_chain(wandb_offline: Path) -> None:
    cm = CallbackManager(plugins=[WandbPlugin()], config={"wandb": {"project": "trust"}})
    ids: list[str] = []
    with pytest.raises(TimeoutError), cm.as_trace("chain"):
        with cm.event(EventType.QUERY, {P.QUERY_STR: "q"}) as query:
            ids.append(query.id)
            with cm.event(EventType.SYNTHESIZE, {P.QUERY_STR: "q"}) as synth:
                ids.append(synth.id)
                with cm.event(EventType.LLM, {P.PROMPT: "p"}) as llm:
                    ids.append(llm.id)
                    raise TimeoutError("provider timed out")
    run, _ = _finish(cm, wandb_offline)
    spans = _spans(run.trace_trees()[0])
    assert [spans[i]["status_code"] for i in ids] == ["ERROR"] * 3
    assert {spans[i]["status_message"] for i in ids} == {"TimeoutError: provider timed out"}
    assert run.rows_with("trace/errors")[0]["trace/errors"] == 3
