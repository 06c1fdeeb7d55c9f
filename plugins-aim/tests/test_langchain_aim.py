"""A LangChain run reaches a real Aim repository end to end, read back after indexing: the
prompt, reply, retrieved texts and token usage LangChain itself reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import get_usage_metadata_callback
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from callbacks import CallbackManager, EventType
from callbacks.integrations.langchain import CallbacksHandler
from callbacks.testing import RecordingPlugin
from callbacks_aim import AimPlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from langchain_models import ScriptedChatModel, build_retriever, rag_chain, walk

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.MovedIn20Warning")


def _read(run: Any, kind: str, name: str, context: dict[str, str]) -> list[Any]:
    from aim.storage.context import Context

    seq = (run.get_text_sequence if kind == "text" else run.get_metric)(name, Context(context))
    assert seq is not None, f"no {kind} {name!r} with context {context}"
    _, (values, *_rest) = seq.data.items_list()
    return [getattr(v, "data", v) for v in values]


def test_langchain_rag_run_is_recorded_in_aim(tmp_path: Path) -> None:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    capture = RecordingPlugin()
    cm = CallbackManager(
        plugins=[AimPlugin(), capture],
        config={"aim": {"repo": str(tmp_path / "aim"), "experiment": "langchain"}},
    )
    runs = RunCollectorCallbackHandler()
    chain = rag_chain(build_retriever(), ScriptedChatModel())
    question = "What is the capital of France?"
    with get_usage_metadata_callback() as usage:
        answer = chain.invoke(question, config={"callbacks": [CallbacksHandler(cm), runs]})
    assert cm.flush(timeout=30.0)
    run_hash = cm.get_plugin("aim").recorder.run_hash
    stats = cm.stats()["aim"]
    cm.shutdown(timeout=30.0)
    assert (stats["errors"], stats["dropped"]) == (0, 0)
    repo = Repo.from_path(str(tmp_path / "aim"))
    RepoIndexManager.get_index_manager(repo).index(run_hash)
    run = repo.get_run(run_hash)

    (root,) = runs.traced_runs
    by_type = {r.run_type: r for r in walk([root])}
    ((model, figures),) = usage.usage_metadata.items()
    (llm,) = capture.ends(EventType.LLM)
    # Contexts are a bounded set (type, model); the ids ride along as <name>_event texts.
    llm_context = {"event_type": "llm"}
    prefixes = {"System: ": "system: ", "Human: ": "user: "}
    expected_prompt = by_type["llm"].inputs["prompts"][0]
    for theirs, ours in prefixes.items():
        expected_prompt = expected_prompt.replace(theirs, ours)
    assert _read(run, "text", "prompt", {**llm_context, "model": model}) == [expected_prompt]
    assert _read(run, "text", "response", {**llm_context, "model": model}) == [answer]
    assert _read(run, "text", "prompt_event", {**llm_context, "model": model}) == [
        f"trace_id={llm.trace_id} event_id={llm.id}"
    ]
    metric_context = {"event_type": "llm", "model": model, "token_source": "provider"}
    assert _read(run, "metric", "prompt_tokens", metric_context) == [figures["input_tokens"]]
    assert _read(run, "metric", "completion_tokens", metric_context) == [figures["output_tokens"]]

    (retrieve,) = capture.ends(EventType.RETRIEVE)
    retrieve_context = {"event_type": "retrieve"}
    assert _read(run, "text", "query", retrieve_context) == [question]
    assert _read(run, "text", "query_event", retrieve_context) == [
        f"trace_id={retrieve.trace_id} event_id={retrieve.id}"
    ]
    assert _read(run, "text", "retrieved", retrieve_context) == [
        d.page_content for d in by_type["retriever"].outputs["documents"]
    ]
    assert len(_read(run, "metric", "trace_latency_ms", {"trace_name": root.name})) == 1
