"""Privacy through every real sink: a marker string sent in payloads (chat messages, responses,
nodes, function arguments, exception messages, app-specific keys) is looked for in what each
tool stored: the W&B offline ``.wandb`` file and run files, the Aim repository (indexed, read
back through Aim's API), the OTLP requests a loopback receiver got, and the fine-tuning file.

Three runs through the same pipeline: no privacy setting (the control: the marker must be found
in every sink, so the search can fail), ``hide_inputs``+``hide_outputs`` (the marker must be
found nowhere) and ``max_payload_chars`` (the marker's prefix is found, never more than the limit
of it). The control run also carries generators in its payloads: the application must get every
item back after all plugins read the payloads.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import ChatMessage, ChatResponse
from llama_index.core.schema import NodeWithScore, TextNode

from callbacks import CallbackManager, EventPayload, EventType

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins-wandb" / "tests"))
from wandb_reader import find_run_file, iter_records

P = EventPayload
MARK = "MARKER-c0ffee"
LONG = MARK + "y" * 400
LIMIT = 50
SINKS = ("wandb", "aim", "openinference", "finetuning")


class Receiver:
    """A loopback OTLP/HTTP collector keeping every decoded export request."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.requests: list[Any] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stored:
    """Everything each sink stored, as text, and what the app got back from its generators."""

    text: dict[str, str] = field(default_factory=dict)
    items_back: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def _pipeline(cm: CallbackManager, with_generators: bool) -> dict[str, Iterator[str]]:
    generators = {
        name: (f"{name}-{i}" for i in range(1000)) for name in ("query", "response", "chunks")
    }
    with cm.as_trace("privacy"):
        with cm.event(EventType.QUERY, {P.QUERY_STR: LONG, "app_field": {"deep": [LONG]}}) as q:
            with cm.event(EventType.RETRIEVE, {P.QUERY_STR: LONG}) as retrieve:
                node = NodeWithScore(node=TextNode(text=LONG, metadata={"src": LONG}), score=0.9)
                retrieve.on_end({P.NODES: [node]})
            messages = [
                ChatMessage(role="system", content=LONG),
                ChatMessage(role="user", content=LONG, additional_kwargs={"k": LONG}),
            ]
            with cm.event(
                EventType.LLM,
                {
                    P.MESSAGES: messages,
                    P.MODEL_NAME: "gpt-4o-mini",
                    P.SERIALIZED: {"prompt": LONG},
                    P.ADDITIONAL_KWARGS: {"note": LONG},
                },
            ) as llm:
                reply = ChatMessage(role="assistant", content=LONG)
                llm.on_end(
                    {
                        P.MESSAGES: messages,
                        P.RESPONSE: ChatResponse(message=reply),
                        P.USAGE: {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                    }
                )
            try:
                with cm.event(
                    EventType.FUNCTION_CALL,
                    {P.FUNCTION_CALL: json.dumps({"q": LONG}), P.TOOL: {"name": "lookup"}},
                ):
                    raise LookupError(f"not found: {LONG}")
            except LookupError:
                pass
            if with_generators:
                with cm.event(EventType.CHUNKING, {P.CHUNKS: generators["chunks"]}):
                    pass
                with cm.event(EventType.SYNTHESIZE, {P.QUERY_STR: generators["query"]}) as s:
                    s.on_end({P.RESPONSE: generators["response"]})
            q.on_end({P.RESPONSE: LONG})
    return generators


def _strings_of_aim(repo_dir: Path, run_hash: str) -> str:
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    repo = Repo.from_path(str(repo_dir))
    RepoIndexManager.get_index_manager(repo).index(run_hash)
    run = repo.get_run(run_hash)
    parts = [json.dumps(run.meta_run_tree.collect(), default=str)]
    for name, context, _ in run.iter_sequence_info_by_type(("aim.text",)):
        sequence = run.get_text_sequence(name, context)
        _steps, (values, *_rest) = sequence.data.items_list()
        parts += [name, json.dumps(context.to_dict())] + [value.data for value in values]
    return "\n".join(parts)


def _record(root: Path, mode: str, host: dict[str, Any]) -> Stored:
    receiver = Receiver()
    out = root / mode
    out.mkdir()
    config = {
        "plugins": [*SINKS, "tokens", "debug"],
        **host,
        "wandb": {"project": "privacy", "mode": "offline", "dir": str(out)},
        "aim": {"repo": str(out / "aim")},
        "openinference": {
            "exporter": "otlp",
            "endpoint": receiver.url,
            "schedule_delay_millis": 50,
        },
        "finetuning": {"path": str(out / "finetuning.jsonl")},
    }
    cm = CallbackManager(load_entrypoints=True, config=config)
    try:
        assert set(cm.list_plugins()) >= set(SINKS)
        generators = _pipeline(cm, with_generators=mode == "control")
        assert cm.flush(timeout=60.0)
        stats = cm.stats()
        run_hash = stats["aim"]["plugin"]["run_hash"]  # the sink may run in the sidecar
    finally:
        cm.shutdown(timeout=60.0)
        receiver.close()
        import wandb

        wandb.teardown()  # wandb keeps its directories process-wide until torn down
    stored = Stored(stats=stats)
    wandb_parts = [str(record) for record in iter_records(find_run_file(out))]
    wandb_parts += [
        path.read_text(errors="replace")
        for path in find_run_file(out).parent.rglob("*")
        if path.is_file() and path.suffix in (".json", ".yaml", ".txt")
    ]
    stored.text["wandb"] = "\n".join(wandb_parts)
    stored.text["aim"] = _strings_of_aim(out / "aim", run_hash)
    stored.text["openinference"] = "\n".join(str(request) for request in receiver.requests)
    stored.text["finetuning"] = (out / "finetuning.jsonl").read_text()
    if mode == "control":
        stored.items_back = {name: len(list(gen)) for name, gen in generators.items()}
    return stored


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stored]:
    root = tmp_path_factory.mktemp("privacy")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
            mp.setenv(var, str(root / "wandb-home"))
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.delenv("WANDB_API_KEY", raising=False)
        import os

        for var in list(os.environ):
            if var.upper().startswith("CALLBACKS_"):
                mp.delenv(var)
        mp.chdir(root)
        return {
            "control": _record(root, "control", {}),
            "hidden": _record(root, "hidden", {"hide_inputs": True, "hide_outputs": True}),
            "limited": _record(root, "limited", {"max_payload_chars": LIMIT}),
        }


@pytest.mark.parametrize("sink", SINKS)
def test_control_run_stores_the_marker_in_every_sink(runs, sink) -> None:
    assert MARK in runs["control"].text[sink]
    assert all(s["errors"] == 0 for s in runs["control"].stats.values()), runs["control"].stats


@pytest.mark.parametrize("sink", SINKS)
def test_hidden_inputs_and_outputs_reach_no_sink(runs, sink) -> None:
    stored = runs["hidden"].text[sink]
    assert stored, f"{sink} stored nothing: the search would pass vacuously"
    assert MARK not in stored
    assert all(s["errors"] == 0 for s in runs["hidden"].stats.values()), runs["hidden"].stats


@pytest.mark.parametrize("sink", SINKS)
def test_payload_limit_holds_in_every_sink(runs, sink) -> None:
    stored = runs["limited"].text[sink]
    assert MARK in stored  # truncated, not hidden
    too_long = re.compile(re.escape(MARK) + f"y{{{LIMIT - len(MARK)}}}")
    assert not too_long.search(stored), too_long.search(stored)


def test_metadata_survives_hiding(runs) -> None:
    assert "gpt-4o-mini" in runs["hidden"].text["openinference"]
    assert "gpt-4o-mini" in runs["hidden"].text["aim"]


def test_plugins_never_drain_the_applications_generators(runs) -> None:
    assert runs["control"].items_back == {"query": 1000, "response": 1000, "chunks": 1000}
