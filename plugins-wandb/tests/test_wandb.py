"""callbacks-wandb against a real offline W&B run, read back from its ``.wandb`` file."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import wandb
from wandb_reader import OfflineRun, find_run_file, iter_records, read_run

from callbacks import CallbackManager, ConfigError, EventPayload, EventType, Trace, using_attributes
from callbacks.encodings import load_encoding
from callbacks.testing import RecordingPlugin
from callbacks_wandb import WandbPlugin, WandbSettings
from callbacks_wandb.llm_calls import COLUMNS

API_KEY = "k" * 40
P = EventPayload


@dataclass
class Pipeline:
    """What the traced pipeline emitted, and what W&B recorded of it."""

    traces: list[Trace]
    ids: dict[str, str]
    run: OfflineRun
    stats: dict[str, Any]
    plugin: WandbPlugin
    result: str


def _finish_wandb() -> None:
    # run.finish() returns before wandb-core has written the last records; teardown waits for it.
    wandb.teardown()


def _rag_trace(cm: CallbackManager, ids: dict[str, str]) -> tuple[Trace, str]:
    """A query with retrieval (embedding, nodes), reranking, an LLM call with a usage object,
    an agent step with a tool call and an LLM call that never got its response, a failing tool,
    and an event abandoned when the trace ends."""
    with using_attributes(session_id="s-1", user_id="u-1", tags=["rag"]):
        with cm.as_trace("rag-query") as trace:
            with cm.event(EventType.QUERY, {P.QUERY_STR: "What is W&B?"}) as query:
                ids["query"] = query.id
                with cm.event(EventType.RETRIEVE, {P.QUERY_STR: "What is W&B?"}) as retrieve:
                    ids["retrieve"] = retrieve.id
                    with cm.event(EventType.EMBEDDING, {P.CHUNKS: ["What is W&B?"]}) as emb:
                        ids["embedding"] = emb.id
                        emb.on_end({P.EMBEDDINGS: [[0.1, 0.2, 0.3, 0.4]]})
                    retrieve.on_end(
                        {
                            P.NODES: [
                                {"id": "n1", "text": "W&B tracks experiments.", "score": 0.91},
                                {"id": "n2", "text": "It logs traces.", "score": 0.42},
                            ]
                        }
                    )
                with cm.event(EventType.RERANKING, {P.TOP_K: 1}) as rerank:
                    ids["reranking"] = rerank.id
                    rerank.on_end({P.NODES: ["W&B tracks experiments."]})
                with cm.event(
                    EventType.LLM, {P.PROMPT: "Answer: What is W&B?", P.MODEL_NAME: "stand-in-1"}
                ) as llm:
                    ids["llm"] = llm.id
                    usage = SimpleNamespace(prompt_tokens=12, completion_tokens=5, total_tokens=17)
                    # LlamaIndex repeats the prompt at the end: shown once, as the input.
                    llm.on_end(
                        {
                            P.PROMPT: "Answer: What is W&B?",
                            P.COMPLETION: "An experiment tracker.",
                            P.USAGE: usage,
                        }
                    )
                with cm.event(EventType.AGENT_STEP, {P.QUERY_STR: "check"}) as step:
                    ids["agent_step"] = step.id
                    with cm.event(
                        EventType.FUNCTION_CALL,
                        {P.FUNCTION_CALL: {"a": 2, "b": 2}, P.TOOL: {"name": "add"}},
                    ) as call:
                        ids["function_call"] = call.id
                        call.on_end({P.FUNCTION_OUTPUT: "4"})
                    with cm.event(
                        EventType.LLM, {P.MESSAGES: [{"role": "user", "content": "2+2?"}]}
                    ) as bare:
                        ids["llm_no_response"] = bare.id
                try:
                    with cm.event(EventType.FUNCTION_CALL, {P.TOOL: {"name": "divide"}}) as bad:
                        ids["failed"] = bad.id
                        raise ZeroDivisionError("division by zero")
                except ZeroDivisionError:
                    pass
                ids["abandoned"] = cm.on_event_start(EventType.SYNTHESIZE, {P.QUERY_STR: "late"})
                query.on_end({P.RESPONSE: "W&B is an experiment tracker."})
    return trace, "W&B is an experiment tracker."


@pytest.fixture(scope="module")
def pipeline(module_wandb_offline: Path) -> Pipeline:
    """One shared run: a RAG trace, a trace of two top-level LLM calls, a flush, one more call."""
    config = {
        "wandb": {
            "project": "cb-tests",
            "run_name": "pipeline",
            "tags": ["t1", "t2"],
            "api_key": API_KEY,
        },
        "trace_wait": 0,  # the never-ended event is abandoned when its trace block ends
    }
    cm = CallbackManager(plugins=[WandbPlugin()], config=config)
    ids: dict[str, str] = {}
    rag, result = _rag_trace(cm, ids)
    with cm.as_trace("batch") as batch:
        for i in range(2):
            with cm.event(EventType.LLM, {P.PROMPT: f"p{i}"}) as llm:
                llm.on_end(
                    {P.RESPONSE: f"r{i}", P.USAGE: {"input_tokens": 3 + i, "output_tokens": 1}}
                )
    assert cm.flush(timeout=30)
    with cm.event(EventType.LLM, {P.PROMPT: "after flush"}) as llm:
        ids["llm_after_flush"] = llm.id
        llm.on_end({P.COMPLETION: "late"})
    plugin = cm.get_plugin("wandb")
    sync_file = Path(plugin.run.sync_file)
    assert cm.shutdown(timeout=30)
    stats = cm.stats()
    _finish_wandb()
    assert sync_file == find_run_file(module_wandb_offline)
    return Pipeline([rag, batch], ids, read_run(sync_file), stats, plugin, result)


def _tree_ids(span: dict[str, Any]) -> dict[str, Any]:
    return {span["span_id"]: [_tree_ids(c) for c in span.get("child_spans") or []]}


def _map_ids(trace_map: dict[str, list[str]], node: str) -> dict[str, Any]:
    return {node: [_map_ids(trace_map, c) for c in trace_map.get(node, [])]}


def _spans(span: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {span["span_id"]: span}
    for child in span.get("child_spans") or []:
        out.update(_spans(child))
    return out


def _rag_spans(p: Pipeline) -> dict[str, dict[str, Any]]:
    return _spans(p.run.trace_trees()[0])


def test_pipeline_result_and_no_plugin_errors(pipeline: Pipeline) -> None:
    assert pipeline.result == "W&B is an experiment tracker."
    assert pipeline.stats["wandb"]["errors"] == 0
    assert pipeline.stats["wandb"]["dropped"] == 0
    assert pipeline.plugin.traces_logged == 3
    assert pipeline.run.record_types[-1] == "exit"


def test_one_trace_tree_per_trace(pipeline: Pipeline) -> None:
    trees = pipeline.run.trace_trees()
    assert len(trees) == 3
    assert len(pipeline.run.rows_with("trace/root_span_dumps")) == 3
    assert pipeline.run.rows_with("trace/_type")[0]["trace/_type"] == "wb_trace_tree"


def test_span_nesting_follows_the_trace_map(pipeline: Pipeline) -> None:
    rag = pipeline.traces[0]
    (root_id,) = rag.trace_map["root"]
    assert _tree_ids(pipeline.run.trace_trees()[0]) == _map_ids(rag.trace_map, root_id)
    assert root_id == pipeline.ids["query"]
    spans = _rag_spans(pipeline)
    assert set(spans) == {v for k, v in pipeline.ids.items() if k != "llm_after_flush"}


def test_one_span_per_event_with_kind_and_times(pipeline: Pipeline) -> None:
    spans = _rag_spans(pipeline)
    kinds = {
        name: (spans[i]["span_kind"], spans[i]["attributes"]["span_kind"])
        for name, i in pipeline.ids.items()
        if i in spans
    }
    assert kinds == {
        "query": ("CHAIN", "CHAIN"),
        "retrieve": ("TOOL", "RETRIEVER"),
        "embedding": ("LLM", "EMBEDDING"),
        "reranking": ("TOOL", "RERANKER"),
        "llm": ("LLM", "LLM"),
        "agent_step": ("AGENT", "AGENT"),
        "function_call": ("TOOL", "TOOL"),
        "llm_no_response": ("LLM", "LLM"),
        "failed": ("TOOL", "TOOL"),
        "abandoned": ("CHAIN", "CHAIN"),
    }
    rag = pipeline.traces[0]
    start_ms, end_ms = rag.start_wall_time_ns // 10**6, rag.end_wall_time_ns // 10**6
    for span in spans.values():
        assert start_ms <= span["start_time_ms"] <= span["end_time_ms"] <= end_ms + 1
    for child in spans[pipeline.ids["query"]]["child_spans"]:
        assert child["start_time_ms"] >= spans[pipeline.ids["query"]]["start_time_ms"]
    assert spans[pipeline.ids["query"]]["name"] == "query"


def test_llm_span_has_inputs_outputs_and_usage_tokens(pipeline: Pipeline) -> None:
    span = _rag_spans(pipeline)[pipeline.ids["llm"]]
    assert span["status_code"] == "SUCCESS"
    (result,) = span["results"]
    assert result["inputs"] == {
        "formatted_prompt": "Answer: What is W&B?",
        "model_name": "stand-in-1",
    }
    assert result["outputs"] == {"completion": "An experiment tracker."}
    attrs = span["attributes"]
    assert (attrs["prompt_tokens"], attrs["completion_tokens"], attrs["total_tokens"]) == (
        12,
        5,
        17,
    )
    assert attrs["model"] == "stand-in-1"


def test_llm_without_response_still_gets_a_span(pipeline: Pipeline) -> None:
    span = _rag_spans(pipeline)[pipeline.ids["llm_no_response"]]
    assert span["status_code"] == "SUCCESS"
    assert span["results"][0] == {"inputs": {"messages": ["user: 2+2?"]}, "outputs": {}}
    # No usage reported: estimated with tiktoken (OpenAI's chat format: 3 tokens per message
    # plus its role and content, 3 to prime the reply).
    encoding = load_encoding("cl100k_base")
    expected = 3 + 3 + len(encoding.encode("user")) + len(encoding.encode("2+2?"))
    attrs = span["attributes"]
    assert (attrs["prompt_tokens"], attrs["completion_tokens"]) == (expected, 0)
    assert (attrs["token_source"], attrs["token_detail"]) == ("estimate", "cl100k_base")


def test_nodes_and_embeddings_are_summarised(pipeline: Pipeline) -> None:
    spans = _rag_spans(pipeline)
    assert spans[pipeline.ids["embedding"]]["results"][0] == {
        "inputs": {"num_chunks": 1, "chunks": ["What is W&B?"]},
        "outputs": {"num_embeddings": 1, "embedding_dim": 4},
    }
    outputs = spans[pipeline.ids["retrieve"]]["results"][0]["outputs"]
    assert outputs == {
        "num_nodes": 2,
        "nodes": [
            {"id": "n1", "score": 0.91, "text": "W&B tracks experiments."},
            {"id": "n2", "score": 0.42, "text": "It logs traces."},
        ],
    }
    tool = spans[pipeline.ids["function_call"]]["results"][0]
    assert tool == {
        "inputs": {"function_call": '{"a": 2, "b": 2}', "tool": "add"},
        "outputs": {"function_call_response": "4"},
    }


def test_failed_and_abandoned_events_have_error_status(pipeline: Pipeline) -> None:
    spans = _rag_spans(pipeline)
    failed = spans[pipeline.ids["failed"]]
    assert failed["status_code"] == "ERROR"
    assert failed["status_message"] == "ZeroDivisionError: division by zero"
    abandoned = spans[pipeline.ids["abandoned"]]
    assert abandoned["status_code"] == "ERROR"
    assert abandoned["status_message"].startswith("EventAbandoned")
    assert abandoned["attributes"]["abandoned"] is True
    assert spans[pipeline.ids["query"]]["status_code"] == "SUCCESS"


def test_root_span_carries_trace_attributes(pipeline: Pipeline) -> None:
    root = pipeline.run.trace_trees()[0]
    rag = pipeline.traces[0]
    assert root["attributes"]["trace_id"] == rag.id
    assert root["attributes"]["trace_name"] == "rag-query"
    assert (root["attributes"]["session_id"], root["attributes"]["user_id"]) == ("s-1", "u-1")
    assert root["attributes"]["tags"] == ["rag"]


def test_trace_of_several_top_level_events_gets_a_trace_root(pipeline: Pipeline) -> None:
    batch = pipeline.traces[1]
    root = pipeline.run.trace_trees()[1]
    assert (root["span_id"], root["name"], root["span_kind"]) == (batch.id, "batch", "CHAIN")
    assert [c["span_id"] for c in root["child_spans"]] == batch.trace_map["root"]
    assert [c["attributes"]["total_tokens"] for c in root["child_spans"]] == [4, 5]
    row = pipeline.run.rows_with("trace/root_span_dumps")[1]
    assert (row["trace/llm_calls"], row["trace/total_tokens"], row["trace/events"]) == (2, 9, 2)


def test_each_trace_is_one_history_row_with_its_token_totals(pipeline: Pipeline) -> None:
    rows = pipeline.run.rows_with("trace/llm_calls")
    assert len(rows) == len(pipeline.run.history) - len(pipeline.run.rows_with("llm_calls/_type"))
    assert [row["trace/llm_calls"] for row in rows] == [2, 2, 1]
    table = pipeline.run.table("llm_calls")
    calls = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [c["token_source"] for c in calls] == [
        "provider",
        "estimate",
        "provider",
        "provider",
        "estimate",
    ]
    by_trace: dict[str, int] = {}
    for call in calls:
        by_trace[call["trace_id"]] = by_trace.get(call["trace_id"], 0) + call["total_tokens"]
    assert [row["trace/total_tokens"] for row in rows] == list(by_trace.values())
    assert rows[1]["trace/estimated_tokens"] == 0 and rows[0]["trace/estimated_tokens"] > 0
    assert all(row["trace/llm_latency_ms"] > 0 for row in rows)


def test_trace_trees_are_written_once_and_metrics_summarised(pipeline: Pipeline) -> None:
    run = pipeline.run
    assert run.summary["trace/llm_calls"] == 1  # the last trace's metrics
    assert (
        run.summary["trace/total_tokens"]
        == run.rows_with("trace/llm_calls")[-1]["trace/total_tokens"]
    )
    assert not [key for key in run.summary if key.startswith("trace/root_span_dumps")]
    assert "trace/_type" not in run.summary
    assert run.record_types.count("history") == len(run.history)
    tree_texts = [
        update.value_json
        for record in iter_records(run.path)
        if record.WhichOneof("record_type") == "summary"
        for update in record.summary.update
        if list(update.nested_key)[:1] == ["trace"]
    ]
    assert tree_texts == []


def test_llm_calls_table_has_one_row_per_call(pipeline: Pipeline) -> None:
    table = pipeline.run.table("llm_calls")
    assert table["columns"] == list(COLUMNS)
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert [r["event_id"] for r in rows] == [
        pipeline.ids["llm"],
        pipeline.ids["llm_no_response"],
        *pipeline.traces[1].trace_map["root"],
        pipeline.ids["llm_after_flush"],
    ]
    first = rows[0]
    assert (first["prompt"], first["completion"], first["model"]) == (
        "Answer: What is W&B?",
        "An experiment tracker.",
        "stand-in-1",
    )
    assert (first["prompt_tokens"], first["completion_tokens"], first["total_tokens"]) == (
        12,
        5,
        17,
    )
    assert first["latency_ms"] > 0 and first["status"] == "ok"
    assert rows[1]["completion"] is None and rows[1]["prompt"] == "user: 2+2?"
    assert rows[4]["prompt"] == "after flush"
    table_files = sorted(
        (pipeline.run.files_dir / "media" / "table").glob("llm_calls_*.table.json")
    )
    assert len(table_files) == 2  # logged at flush (4 calls), then at shutdown (5 calls)
    assert sorted(len(json.loads(f.read_text())["data"]) for f in table_files) == [4, 5]


def test_run_config_records_settings_but_not_the_api_key(pipeline: Pipeline) -> None:
    assert pipeline.run.config["callbacks_wandb"] == {
        "project": "cb-tests",
        "entity": None,
        "run_name": "pipeline",
        "tags": ["t1", "t2"],
        "mode": None,
        "dir": None,
        "log_payloads": "summary",
    }
    assert (pipeline.run.run.project, pipeline.run.run.display_name) == ("cb-tests", "pipeline")
    assert list(pipeline.run.run.tags) == ["t1", "t2"]
    run_dir = pipeline.run.path.parent
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


def test_wandb_init_failure_does_not_reach_the_app(
    wandb_offline: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = RecordingPlugin(delivery="background")
    cm = CallbackManager(
        plugins=[WandbPlugin(), recorder], config={"wandb": {"project": "bad/name"}}
    )

    def app(question: str) -> str:
        with cm.as_trace("query"):
            with cm.event(EventType.LLM, {P.PROMPT: question}) as llm:
                llm.on_end({P.COMPLETION: "fine"})
        return "fine"

    with caplog.at_level(logging.WARNING):
        assert [app("a"), app("b")] == ["fine", "fine"]
        assert cm.flush(timeout=10)
        cm.shutdown(timeout=10)
    assert [e.type.value for e in recorder.ends()] == ["llm", "llm"]
    stats = cm.stats()
    assert stats["wandb"]["errors"] == 1  # reported once, not once per event
    assert stats["recorder"]["errors"] == 0
    assert "Invalid project name 'bad/name'" in caplog.text
    plugin = cm.get_plugin("wandb")
    assert plugin.discarded == 2 and plugin.traces_logged == 0  # the two LLM events
    assert not list(wandb_offline.rglob("*.wandb"))


def test_settings_from_environment_and_secret_is_masked(
    wandb_offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBACKS_WANDB__TAGS", "a, b")
    monkeypatch.setenv("CALLBACKS_WANDB__LOG_PAYLOADS", "full")
    monkeypatch.setenv("CALLBACKS_WANDB__API_KEY", API_KEY)
    cm = CallbackManager(plugins=[WandbPlugin()])
    settings = cm.get_plugin("wandb").settings
    cm.shutdown(timeout=5)
    assert isinstance(settings, WandbSettings)
    assert (settings.tags, settings.log_payloads) == (["a", "b"], "full")
    assert settings.api_key.get_secret_value() == API_KEY
    assert API_KEY not in repr(settings) and API_KEY not in json.dumps(settings.run_config())
    assert settings.init_kwargs() == {"tags": ["a", "b"]}


def test_bad_setting_names_the_key(wandb_offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBACKS_WANDB__MODE", "sometimes")
    with pytest.raises(ConfigError) as info:
        CallbackManager(plugins=[WandbPlugin()])
    assert "CALLBACKS_WANDB__MODE" in str(info.value) and "sometimes" in str(info.value)
    with pytest.raises(ConfigError):
        CallbackManager(plugins=[WandbPlugin()], config={"wandb": {"colour": "blue"}})
