"""Running the demo: :func:`run_demo`, the manager it builds and the defaults it gives the
optional plugins' sinks."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from callbacks import CallbackManager, ContextThreadPoolExecutor, Trace
from callbacks_store.demo import demo_defaults as store_demo_defaults
from callbacks_store.demo import view_hint

from .corpus import QUESTIONS, load_documents
from .pipeline import Pipeline
from .report import DemoReport, build_report, print_report, write_summary

__all__ = ["run_demo"]


def _set_wandb_env_defaults(out_dir: Path) -> None:
    """Keep wandb offline and under ``out_dir`` unless the user chose otherwise (wandb itself
    reads these variables)."""
    wandb_dir = str((out_dir / "wandb").resolve())
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        os.environ.setdefault(name, wandb_dir)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def _demo_config(out_dir: Path, questions: int, quiet: bool = False) -> dict[str, Any]:
    """The demo's own settings, plus sink defaults for keys the user set in no source: the Aim
    repository under ``out_dir``, and no OTLP export (with no collector listening, it would
    fail on every span)."""
    finetuning = out_dir / "finetuning.jsonl"
    config: dict[str, Any] = {
        "finetuning": {"path": str(finetuning)},
        # The demo asks for what the built-ins do not do by default: print trees, write a file.
        "debug": {"max_traces": max(100, questions + 1), "print_trace": not quiet},
    }
    probe = CallbackManager()  # no plugins: only reads the configuration sources
    try:
        user = probe.config.sections
    finally:
        probe.shutdown()
    sink_defaults = {
        "aim": {"repo": str((out_dir / "aim").resolve())},
        "openinference": {"exporter": "none"},
        **store_demo_defaults(out_dir.resolve()),
    }
    installed = {ep.name for ep in importlib.metadata.entry_points(group="callbacks")}
    for plugin, defaults in sink_defaults.items():
        if plugin not in installed:
            continue  # a section naming a plugin that is not installed is a configuration error
        chosen = user.get(plugin, {})
        picked = {key: value for key, value in defaults.items() if key not in chosen}
        if picked:
            config[plugin] = picked
    return config


def _build_manager(out_dir: Path, questions: int, quiet: bool = False) -> CallbackManager:
    _set_wandb_env_defaults(out_dir)
    (out_dir / "finetuning.jsonl").unlink(missing_ok=True)  # the plugin appends; one run, one file
    return CallbackManager(load_entrypoints=True, config=_demo_config(out_dir, questions, quiet))


def _run_async(coro_factory: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    # Called from a running loop (a notebook): run ours in a thread that carries the context.
    with ContextThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


def run_demo(
    *,
    questions: int = 3,
    concurrency: int = 1,
    out_dir: Path = Path("callbacks-out"),
    manager: CallbackManager | None = None,
    stream: TextIO = sys.stdout,
    quiet: bool = False,
) -> DemoReport:
    """Index the sample documents, answer ``questions`` questions (``concurrency`` at a time, with
    asyncio), then print the timing table and token counts and write ``summary.json`` to
    ``out_dir``. Without ``manager``, one is built with every installed, active plugin (the
    fine-tuning JSONL goes to ``out_dir``) and shut down at the end; optional plugins are pointed
    at ``out_dir`` through defaults the user did not override (``WANDB_*``, the aim repo,
    ``CALLBACKS_OPENINFERENCE__EXPORTER=none``) unless those are already set. A given
    ``manager`` is used as is (its debug plugin prints where it was set up to) and left open.
    ``quiet``: no trees, timing or token tables; only where the outputs went."""
    if questions < 1 or concurrency < 1:
        raise ValueError(
            f"questions and concurrency must be at least 1, got {questions} and {concurrency}"
        )
    began = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    owned = manager is None
    cm = _build_manager(out_dir, questions, quiet) if manager is None else manager
    debug = cm.get_plugin("debug")
    if owned and debug is not None:
        debug.stream = stream
    asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(questions)]
    if not quiet:
        stream.write(
            f"callbacks demo: {questions} question(s), concurrency {concurrency}, "
            f"plugins: {', '.join(cm.list_plugins()) or 'none'}\n\n"
        )
    try:
        pipeline = Pipeline(cm)
        traces = [pipeline.build_index(load_documents())]

        async def answer_all() -> list[tuple[str, Trace]]:
            gate = asyncio.Semaphore(concurrency)

            async def one(question: str) -> tuple[str, Trace]:
                async with gate:
                    return await pipeline.answer(question)

            return await asyncio.gather(*(one(q) for q in asked))

        results = _run_async(answer_all)
        traces += [trace for _, trace in results]
        report = build_report(cm, asked, [answer for answer, _ in results], traces, out_dir)
        print_report(cm, report, stream, tables=not quiet)
    finally:
        if owned:
            cm.shutdown()
    store = cm.get_plugin("store")
    store_path = getattr(getattr(store, "settings", None), "path", None)
    if owned and store_path:
        stream.write(view_hint(store_path))
    report.wall_time_s = round(time.perf_counter() - began, 3)
    write_summary(report, stream)
    return report
