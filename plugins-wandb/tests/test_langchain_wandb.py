"""A LangChain run reaches W&B end to end: the offline ``.wandb`` file, read back, has LangChain's
run tree as its trace tree and the usage LangChain's usage callback reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

import wandb
from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from wandb_reader import find_run_file, read_run

from callbacks import CallbackManager
from callbacks.integrations.langchain import CallbacksHandler
from callbacks_wandb import WandbPlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from langchain_models import ScriptedChatModel, build_retriever, rag_chain, walk

# W&B's four span kinds for LangChain's run types (retrievers and tools are TOOL spans).
KINDS = {"llm": "LLM", "chat_model": "LLM", "retriever": "TOOL", "tool": "TOOL"}


def _span_tree(span: dict[str, Any], out: dict[str, list[str]]) -> dict[str, list[str]]:
    children = span.get("child_spans") or []
    if children:
        out[span["span_id"]] = sorted(c["span_id"] for c in children)
    for child in children:
        _span_tree(child, out)
    return out


def _spans(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [span] + [s for c in span.get("child_spans") or [] for s in _spans(c)]


def test_langchain_rag_run_is_recorded_in_wandb(wandb_offline: Path) -> None:
    cm = CallbackManager(plugins=[WandbPlugin()], config={"wandb": {"project": "langchain"}})
    runs = RunCollectorCallbackHandler()
    chain = rag_chain(build_retriever(), ScriptedChatModel())
    with get_usage_metadata_callback() as usage:
        answer = chain.invoke(
            "What is the capital of France?", config={"callbacks": [CallbacksHandler(cm), runs]}
        )
    cm.shutdown()
    wandb.teardown()
    assert cm.stats()["wandb"]["errors"] == 0

    run = read_run(find_run_file(wandb_offline))
    (tree,) = run.trace_trees()
    (root,) = runs.traced_runs
    lc_tree = {
        str(r.id): sorted(str(c.id) for c in r.child_runs) for r in walk([root]) if r.child_runs
    }
    assert tree["span_id"] == str(root.id)
    assert _span_tree(tree, {}) == lc_tree
    spans = {s["span_id"]: s for s in _spans(tree)}
    for lc_run in walk([root]):
        assert spans[str(lc_run.id)]["span_kind"] == KINDS.get(lc_run.run_type, "CHAIN")

    table = run.table("llm_calls")
    (row,) = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    ((model, figures),) = usage.usage_metadata.items()
    assert (row["model"], row["completion"]) == (model, answer)
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        figures["input_tokens"],
        figures["output_tokens"],
        figures["total_tokens"],
    )
