"""What a demo run reports: the :class:`DemoReport`, the printed tables and ``summary.json``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from callbacks import CallbackManager, EventType, Trace

__all__ = ["DemoReport", "build_report", "print_report", "write_summary"]


@dataclass
class DemoReport:
    """What one demo run did and produced."""

    questions: list[str]
    answers: list[str]
    event_counts: dict[str, int]
    """Events per type, over every trace of the run."""
    trace_ids: list[str]
    tokens: dict[str, int] | None
    """The tokens plugin's totals (prompt, completion, total, embedding, llm_calls,
    embedding_calls), or ``None`` when that plugin is not registered."""
    tokens_by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens_by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    finetuning_path: Path | None = None
    finetuning_lines: int = 0
    out_dir: Path = Path("callbacks-out")
    plugins: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (paths as strings)."""
        data = asdict(self)
        data["finetuning_path"] = str(self.finetuning_path) if self.finetuning_path else None
        data["out_dir"] = str(self.out_dir)
        return data


def build_report(
    cm: CallbackManager,
    asked: list[str],
    answers: list[str],
    traces: list[Trace],
    out_dir: Path,
) -> DemoReport:
    """The report of a run: event counts over ``traces``, and what the tokens and fine-tuning
    plugins of ``cm`` recorded (when they are registered)."""
    counts: dict[str, int] = {}
    for trace in traces:
        for event_type, n in trace.counts.items():
            counts[event_type.value] = counts.get(event_type.value, 0) + n
    report = DemoReport(
        questions=asked,
        answers=answers,
        event_counts=dict(sorted(counts.items())),
        trace_ids=[t.id for t in traces],
        tokens=None,
        out_dir=out_dir,
        plugins=list(cm.list_plugins()),
    )
    tokens = cm.get_plugin("tokens")
    if tokens is not None:
        report.tokens = tokens.totals().as_dict()
        report.tokens_by_source = {k: v.as_dict() for k, v in tokens.totals_by_source().items()}
        report.tokens_by_model = {k: v.as_dict() for k, v in tokens.totals_by_model().items()}
    finetuning = cm.get_plugin("finetuning")
    if finetuning is not None:
        report.finetuning_lines = len(finetuning.finetuning_events)
        report.finetuning_path = finetuning.path
    return report


def print_report(
    cm: CallbackManager, report: DemoReport, stream: TextIO, *, tables: bool = True
) -> None:
    """Write the timing table (when the debug plugin is registered), the token counts (unless
    ``tables`` is False) and the output files to ``stream``."""
    debug = cm.get_plugin("debug") if tables else None
    write = stream.write
    if debug is not None:
        debug.get_events()  # wait until every tree is printed before the tables
        write("\nTiming per event type (ms)\n")
        write(f"{'event type':<14}{'count':>7}{'total':>10}{'mean':>9}{'p50':>9}{'p95':>9}\n")
        for event_type in EventType:
            info = debug.get_event_time_info(event_type)
            if info.count:
                write(
                    f"{event_type.value:<14}{info.count:>7}{info.total * 1e3:>10.2f}"
                    f"{info.mean * 1e3:>9.3f}{info.p50 * 1e3:>9.3f}{info.p95 * 1e3:>9.3f}\n"
                )
    if report.tokens is not None and tables:
        t = report.tokens
        write(
            f"\nTokens (tokens plugin)\n"
            f"LLM: prompt {t['prompt']}, completion {t['completion']}, total {t['total']} "
            f"in {t['llm_calls']} calls\n"
            f"Embedding: {t['embedding']} in {t['embedding_calls']} calls\n"
        )
        for source, totals in sorted(report.tokens_by_source.items()):
            write(
                f"  {source:<16} LLM {totals['total']:>6} ({totals['llm_calls']} calls)"
                f"  embedding {totals['embedding']:>6}\n"
            )
    write("\nFiles\n")
    if report.finetuning_path is not None:
        write(f"Fine-tuning JSONL: {report.finetuning_path} ({report.finetuning_lines} lines)\n")
    plugins = cm.list_plugins()
    if "wandb" in plugins:
        cm.flush(timeout=10.0, plugin="wandb")  # the run directory is known once W&B started
        run_dir = cm.stats()["wandb"].get("plugin", {}).get("run_dir")
        write(f"W&B run:          {run_dir or os.environ.get('WANDB_DIR', '.')}\n")
        if run_dir:
            write(f"  upload it with: wandb sync {run_dir}\n")
    if "aim" in plugins:
        write(f"Aim repository:   {getattr(cm.plugin_settings('aim'), 'repo', None) or '.aim'}\n")


def write_summary(report: DemoReport, stream: TextIO) -> Path:
    """Write ``summary.json`` to the report's ``out_dir``, say where it went and how long the run
    took on ``stream``, and return its path."""
    summary = report.out_dir / "summary.json"
    summary.write_text(json.dumps(report.to_json(), indent=2, sort_keys=True), encoding="utf-8")
    stream.write(f"Summary:          {summary}\nWall time:        {report.wall_time_s:.2f} s\n")
    stream.flush()
    return summary
