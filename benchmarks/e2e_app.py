"""One configuration of the end-to-end benchmark, run in a fresh process.

A real LlamaIndex RAG app (a ``VectorStoreIndex`` over generated documents, top-3 retrieval, a
deterministic LLM that reports usage) answers ``--queries`` questions after a warm-up, with one
tracing configuration. The process reports, as one JSON line on stdout: its own CPU time and that
of its child processes (wandb's ``wandb-core`` service, for example) over the measured queries
plus the final flush, each query's latency, and what the sinks received.

``python -m benchmarks.e2e_app --config untraced --queries 400 --out-dir /tmp/x``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CONFIGS", "QUESTIONS", "build_engine", "callbacks_config", "children_cpu", "main"]

CONFIGS = (
    "untraced",
    "callbacks:openinference",
    "callbacks:wandb",
    "callbacks:aim",
    "callbacks:wandb+aim+openinference",
    "callbacks-inprocess:wandb+aim+openinference",
    "llama-index:debug+tokens",
    "llama-index:wandb+aim+openinference",
)
"""Every configuration, in report order. ``callbacks:`` rows use this project's sinks through its
LlamaIndex bridge, each with the delivery it asks for by default (``callbacks-inprocess:`` forces
background threads in the app's process); ``llama-index:`` rows use LlamaIndex's own handlers and
OpenInference's instrumentor (the peers)."""

_TOPICS = (
    "lighthouses",
    "honeybees",
    "volcanoes",
    "tea",
    "glaciers",
    "comets",
    "coral reefs",
    "printing presses",
)


QUESTIONS = tuple(f"What is fact {i % 12} about {_TOPICS[i % len(_TOPICS)]}?" for i in range(1000))
"""The questions the app answers, in order (cycled)."""


def _documents() -> list[Any]:
    from llama_index.core import Document

    docs = []
    for i in range(48):
        topic = _TOPICS[i % len(_TOPICS)]
        text = " ".join(
            f"Fact {j} about {topic} number {i}: it has property {(i * 7 + j) % 13} and was "
            f"studied in {1800 + (i * 31 + j * 17) % 220}."
            for j in range(12)
        )
        docs.append(Document(text=text, doc_id=f"doc-{i}", metadata={"topic": topic}))
    return docs


def _models() -> tuple[Any, Any]:
    """A deterministic LLM that reports OpenAI-shaped usage, and a deterministic embedding:
    they stand for the user's own model, the only test double the benchmark allows."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    class HashEmbedding(BaseEmbedding):
        def _vector(self, text: str) -> list[float]:
            digest = hashlib.sha256(text.encode()).digest()
            return [(b - 128) / 128 for b in digest[:32]]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._vector(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._vector(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._vector(text)

    class UsageLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="bench-llm", context_window=16384, num_output=256)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            words = prompt.split()
            text = "Answer: " + " ".join(words[-40:])
            usage = {
                "prompt_tokens": len(words),
                "completion_tokens": 41,
                "total_tokens": len(words) + 41,
            }
            return CompletionResponse(text=text, raw={"model": "bench-llm", "usage": usage})

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            response = self.complete(prompt)

            def gen() -> Any:
                yield response

            return gen()

    return UsageLLM(), HashEmbedding(embed_dim=32)


def _configure(
    config: str, out_dir: Path, endpoint: str
) -> tuple[Callable[[], dict[str, Any]], Any]:
    """Install one tracing configuration. Returns (finish, callback_manager): ``finish`` flushes
    everything and returns what the sinks report."""
    from llama_index.core import Settings
    from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager

    Settings.callback_manager = LlamaCallbackManager([])
    os.environ.update(
        {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(out_dir),
            "WANDB_CACHE_DIR": str(out_dir / "wandb-cache"),
            "WANDB_DATA_DIR": str(out_dir / "wandb-data"),
            "WANDB_CONFIG_DIR": str(out_dir / "wandb-config"),
        }
    )
    if config == "untraced":
        return (lambda: {}), Settings.callback_manager
    kind, _, sinks = config.partition(":")
    names = sinks.split("+")
    if kind.startswith("callbacks"):
        delivery = {"callbacks-inprocess": "background", "callbacks-process": "process"}
        forced = delivery.get(kind)
        return _configure_callbacks(names, out_dir, endpoint, forced)
    return _configure_llama_index(names, out_dir, endpoint)


def callbacks_config(
    names: Sequence[str], out_dir: Path, endpoint: str, delivery: str | None = None
) -> dict[str, Any]:
    """The host configuration of the ``callbacks:`` rows: the sinks ``names``, W&B offline and
    Aim writing under ``out_dir``, OpenInference exporting to ``endpoint``; each sink with the
    delivery it asks for unless ``delivery`` forces one."""
    config: dict[str, Any] = {
        "plugins": list(names),
        "wandb": {"project": "bench", "mode": "offline", "dir": str(out_dir)},
        "aim": {"repo": str(out_dir / "aim")},
        "openinference": {"endpoint": endpoint, "schedule_delay_millis": 200},
    }
    config = {k: v for k, v in config.items() if k == "plugins" or k in names}
    if delivery is not None:
        config["delivery"] = dict.fromkeys(names, delivery)
    return config


def _configure_callbacks(
    names: list[str], out_dir: Path, endpoint: str, delivery: str | None = None
) -> tuple[Callable[[], dict[str, Any]], Any]:
    from llama_index.core import Settings

    import callbacks.integrations.llama_index as callbacks_llama_index
    from callbacks import CallbackManager

    manager = CallbackManager(
        load_entrypoints=True, config=callbacks_config(names, out_dir, endpoint, delivery)
    )
    callbacks_llama_index.install(manager)

    def finish() -> dict[str, Any]:
        flushed = manager.flush(timeout=120.0)
        stats = manager.stats()
        return {
            "close": manager.shutdown,
            "flushed": flushed,
            "delivered": {n: s.get("delivered") for n, s in stats.items()},
            "dropped": {n: s.get("dropped") for n, s in stats.items()},
            "lost": {n: s.get("lost", 0) for n, s in stats.items()},
            "errors": {n: s.get("errors") for n, s in stats.items()},
            "plugin": {n: s.get("plugin") for n, s in stats.items()},
            "host": manager.host_stats(),
        }

    return finish, Settings.callback_manager


def _configure_llama_index(
    names: list[str], out_dir: Path, endpoint: str
) -> tuple[Callable[[], dict[str, Any]], Any]:
    from llama_index.core import Settings
    from llama_index.core.callbacks import CallbackManager as LlamaCallbackManager

    handlers: list[Any] = []
    finishers: list[Callable[[], None]] = []
    closers: list[Callable[[], None]] = []
    if "debug" in names:
        from llama_index.core.callbacks import LlamaDebugHandler, TokenCountingHandler

        handlers += [LlamaDebugHandler(), TokenCountingHandler()]
    if "wandb" in names:
        from llama_index.callbacks.wandb import WandbCallbackHandler

        wandb_handler = WandbCallbackHandler(
            run_args={"project": "bench", "mode": "offline", "dir": str(out_dir)}
        )
        handlers.append(wandb_handler)
        closers.append(wandb_handler.finish)  # its logging is synchronous: nothing to flush
    if "aim" in names:
        from llama_index.callbacks.aim import AimCallback

        handlers.append(AimCallback(repo=str(out_dir / "aim-peer")))
    if "openinference" in names:
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=200)
        )
        LlamaIndexInstrumentor().instrument(tracer_provider=provider)
        finishers.append(lambda: provider.force_flush(120_000) and None)
    Settings.callback_manager = LlamaCallbackManager(handlers)

    def finish() -> dict[str, Any]:
        for fn in finishers:
            fn()
        return {"close": lambda: [fn() for fn in closers]}

    return finish, Settings.callback_manager


def build_engine(callback_manager: Any) -> Any:
    """The app's query engine: deterministic models (set on LlamaIndex's ``Settings``), a
    vector index over the generated documents, top-3 retrieval; events go to
    ``callback_manager`` (a LlamaIndex ``CallbackManager``)."""
    from llama_index.core import Settings, VectorStoreIndex

    Settings.llm, Settings.embed_model = _models()
    index = VectorStoreIndex.from_documents(_documents(), callback_manager=callback_manager)
    return index.as_query_engine(similarity_top_k=3)


def children_cpu() -> float:
    """CPU seconds (user + system) of every process this one started, recursively."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def run(config: str, queries: int, warmup: int, out_dir: Path, endpoint: str) -> dict[str, Any]:
    """Build the app, install ``config``, warm up, then measure ``queries`` queries and the
    final flush."""
    finish, llama_cm = _configure(config, out_dir, endpoint)
    engine = build_engine(llama_cm)
    questions = QUESTIONS
    for i in range(warmup):
        engine.query(questions[i % len(questions)])
    before = finish()

    latencies: list[float] = []
    cpu_start, children_start, wall_start = (
        time.process_time(),
        children_cpu(),
        time.perf_counter(),
    )
    for i in range(queries):
        started = time.perf_counter()
        engine.query(questions[(warmup + i) % len(questions)])
        latencies.append(time.perf_counter() - started)
    queries_cpu = time.process_time() - cpu_start
    flush_start = time.perf_counter()
    sinks = finish()
    flush_wall = time.perf_counter() - flush_start
    cpu = time.process_time() - cpu_start
    children = children_cpu() - children_start
    wall = time.perf_counter() - wall_start
    close = sinks.pop("close", None)
    if close is not None:
        close()
    if "delivered" in sinks:  # what the measured queries delivered, per sink
        earlier = before.get("delivered", {})
        sinks["measured"] = {n: d - (earlier.get(n) or 0) for n, d in sinks["delivered"].items()}
    return {
        "config": config,
        "queries": queries,
        "cpu_s": cpu,
        "queries_cpu_s": queries_cpu,
        "children_cpu_s": children,
        "wall_s": wall,
        "flush_s": flush_wall,
        "latencies_s": latencies,
        "sinks": sinks,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one configuration and print its figures as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e_app", description=__doc__)
    parser.add_argument("--config", required=True, help="one of CONFIGS (or callbacks-process:...)")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--endpoint", default="http://127.0.0.1:4318/v1/traces")
    args = parser.parse_args(argv)
    result = run(args.config, args.queries, args.warmup, args.out_dir, args.endpoint)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: the measured part is over, and sinks' exit hooks are not part
    # of a query's cost.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
