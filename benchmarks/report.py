"""Render :class:`Results` as the Markdown report (``benchmarks/RESULTS.md``)."""

from __future__ import annotations

from .results import Results, check_targets

__all__ = ["render", "summary"]

_PEERS = (
    ("llamaindex_cm_1", "LlamaIndex CM 1 h"),
    ("langchain_1", "LangChain"),
    ("otel_batch", "OTel batch"),
)


def _ns(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _status(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not run"}[met]


def summary(results: Results) -> str:
    """A few sentences and a small table to paste into the README."""
    get = results.median
    lines = [
        f"Measured on {results.machine.get('CPU', '?')} ({results.machine.get('Python', '?')}), "
        "one start+end LLM event pair nested in an open trace, median of timed batches:",
        "",
        "| | ns per event pair |",
        "|---|---:|",
    ]
    for key, label in (
        ("callbacks_0", "callbacks, no plugin"),
        ("callbacks_inline", "callbacks, 1 inline plugin"),
        ("callbacks_background", "callbacks, 1 background plugin"),
        ("callbacks_sinks", "callbacks, W&B + Aim + OpenInference (caller's thread)"),
        ("llamaindex_cm_1", "LlamaIndex CallbackManager, 1 handler"),
        ("langchain_1", "LangChain CallbackManager, 1 handler"),
        ("otel_batch", "OpenTelemetry SDK span, batch processor"),
    ):
        if get(key) is not None:
            lines.append(f"| {label} | {_ns(get(key))} |")
    inline, langchain, llama = get("callbacks_inline"), get("langchain_1"), get("llamaindex_cm_1")
    if inline and langchain and llama:
        lines += [
            "",
            f"With one plugin, an event costs {langchain / inline:.1f}x less than in LangChain and "
            f"{llama / inline:.1f}x less than in LlamaIndex's CallbackManager; with no plugin, "
            f"{_ns(get('callbacks_0'))} ns. Full figures: `benchmarks/RESULTS.md`.",
        ]
    return "\n".join(lines)


def _main_table(results: Results) -> list[str]:
    bare = results.median("bare_call")
    peers = [(label, results.median(key)) for key, label in _PEERS]
    head = ["case", "median ns", "p99 ns", "caller CPU ns", "÷ bare call"]
    head += [f"{label} ÷ this" for label, _ in peers]
    head += ["flush / batch"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for case in results.cases:
        m = case.measurement
        if m is None:
            continue
        cells = [
            case.label,
            _ns(m.median_ns),
            _ns(m.p99_ns),
            _ns(m.cpu_median_ns),
            f"{m.median_ns / bare:,.1f}x" if bare else "-",
        ]
        cells += [f"{peer / m.median_ns:.2f}x" if peer else "-" for _, peer in peers]
        cells.append(f"{m.flush_ms:,.1f} ms / {m.batch_size:,} pairs" if m.flush_ms else "-")
        out.append("| " + " | ".join(cells) + " |")
    not_run = [c for c in results.cases if c.measurement is None]
    if not_run:
        out.append("")
        for case in not_run:
            why = f"skipped: {case.skipped}" if case.skipped else f"**failed**: {case.error}"
            out.append(f"- {case.label}: {why}")
    notes = [c for c in results.cases if c.note and c.measurement is not None]
    for case in notes:
        out.append(f"- {case.label}: {case.note}")
    return out


def _scaling(results: Results) -> list[str]:
    out: list[str] = []
    if results.depth:
        out += [
            "### Nesting depth (1 inline no-op plugin)",
            "",
            "| depth of the timed pair | median ns | p99 ns |",
            "|---:|---:|---:|",
        ]
        out += [f"| {d} | {_ns(m.median_ns)} | {_ns(m.p99_ns)} |" for d, m in results.depth.items()]
        out.append("")
    if results.fan_out:
        out += [
            "### Fan-out (inline no-op plugins)",
            "",
            "| plugins | median ns | ns per plugin |",
            "|---:|---:|---:|",
        ]
        out += [
            f"| {n} | {_ns(m.median_ns)} | {_ns(m.median_ns / n)} |"
            for n, m in results.fan_out.items()
        ]
        out.append("")
    if results.threads:
        out += [
            "### Two threads emitting at once (`callbacks.wrap`, one shared trace)",
            "",
            "| plugin | pairs per thread | wall ns per pair (both threads) | "
            "ns per pair per thread | all events delivered | dropped |",
            "|---|---:|---:|---:|---|---:|",
        ]
        out += [
            f"| 1 {t.mode} no-op | {t.pairs_per_thread:,} | {_ns(t.aggregate_ns)} | "
            f"{_ns(t.per_thread_ns)} | {'yes' if t.events_ok else '**no**'} | {t.dropped} |"
            for t in results.threads
        ]
        out.append("")
    tp = results.throughput
    if tp is not None:
        out += [
            "### Sustained throughput into a background no-op plugin",
            "",
            f"{tp.pairs:,} pairs emitted as fast as the caller can (traces of 100), default queue "
            f"size {tp.queue_size:,}:",
            "",
            f"- caller emitted {tp.emit_pairs_per_s:,.0f} pairs/s;",
            f"- end to end (flush included) {tp.pairs_per_s:,.0f} pairs/s "
            f"= {tp.events_per_s:,.0f} events/s (an `Event` is a start or an end);",
            f"- delivered {tp.delivered:,} items (events and traces), dropped {tp.dropped:,};",
            f"- {tp.full_collections} full garbage collections ran meanwhile; with the heap "
            f"frozen out of the collector (`gc.freeze()`) the same run reaches "
            f"{tp.pairs_per_s_gc_frozen:,.0f} pairs/s. Events wait in the queue long enough to "
            "survive young collections, get promoted, and so trigger full collections whose cost "
            "grows with everything else the process holds.",
            "",
        ]
    mem = results.memory
    if mem is not None:
        out += [
            "### Memory",
            "",
            f"{mem.pairs:,} event pairs ({2 * mem.pairs:,} events) in traces of "
            f"{mem.trace_size:,}, one inline and one background no-op plugin: RSS "
            f"{mem.rss_before_mb:,.1f} MB → {mem.rss_after_mb:,.1f} MB "
            f"({mem.growth_mb:+.1f} MB; peak {mem.rss_peak_mb - mem.rss_before_mb:+.1f} MB), "
            f"{mem.dropped} dropped.",
            "",
        ]
    return out


def _profiles(results: Results) -> list[str]:
    out: list[str] = []
    for key, rows in results.profiles.items():
        case = results.case(key)
        out += [
            f"### {case.label if case else key}",
            "",
            "| function | calls per pair | own ns per pair (cProfile) | share |",
            "|---|---:|---:|---:|",
        ]
        out += [
            f"| `{r.function}` | {r.calls_per_pair:g} | {_ns(r.own_ns_per_pair)} | {r.share:.0%} |"
            for r in rows
        ]
        out.append("")
    return out


def render(results: Results) -> str:
    """The whole report."""
    kind = (
        "quick smoke run (tiny iteration counts; not for publishing)"
        if results.quick
        else "full run"
    )
    out = [
        "# callbacks: overhead benchmark",
        "",
        f"Generated by `python -m benchmarks.run` on {results.started}, {kind}, "
        f"{results.duration_s:.0f} s. Every figure is nanoseconds for one start+end event pair "
        "(an LLM call: a ~230-character prompt and a model name in, a completion out), nested in "
        "an open trace, on the caller's thread.",
        "",
        "## Summary (for the README)",
        "",
        summary(results),
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
    ]
    out += [f"| {t.target} | {t.measured} | {_status(t.met)} |" for t in check_targets(results)]
    out += ["", "## ns per event pair", ""]
    out += _main_table(results)
    out += ["", "## Scaling", ""]
    out += _scaling(results)
    if results.profiles:
        out += [
            "## Where the time goes (cProfile, caller's thread)",
            "",
            "Own time per function for the callbacks cases that missed a target. cProfile adds "
            "its own cost to every call, so the rows are comparable with each other, not with "
            "the timings above.",
            "",
        ]
        out += _profiles(results)
    out += ["## Machine and versions", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in results.machine.items()]
    out += [f"| {k} | {v} |" for k, v in results.versions.items()]
    out += ["", "## Method", "", *_METHOD]
    return "\n".join(out) + "\n"


_METHOD = [
    "- All cases run in one process, in one run, one after the other.",
    "- Each case's statement is compiled into a tight loop, as `timeit` does, so no extra "
    "function call per pair is counted. The batch size is calibrated to about 10 ms; after a "
    "0.1 s warm-up, up to 25 batches are timed (`perf_counter_ns`, and `thread_time_ns` for the "
    "caller's CPU time). *median* is the median over batches of time per pair. The garbage "
    "collector stays on: its cost is part of what an application pays.",
    "- *p99* comes from 5,000 pairs timed one at a time, less the median cost of the two clock "
    "reads around them.",
    "- Background work (plugin workers, OpenTelemetry's batch exporter) is drained after each "
    "batch, outside the timed region; *flush / batch* is the median time of that drain. Batches "
    "into a bounded queue are capped at a quarter of the queue, so no event is dropped while "
    "timing (the drop count is checked). *caller CPU* excludes time the caller waited for the "
    "GIL while a worker thread ran; *median* (wall) includes it.",
    "- *÷ bare call* is this row's cost in bare function calls; *X ÷ this* is how many times "
    "faster this row is than peer X (above 1: faster).",
    "- The peers do the same job the way their users do: LlamaIndex `cm.event(...)` inside "
    "`cm.as_trace`, a `@dispatcher.span` function firing two `BaseEvent`s inside an outer span, "
    "an OpenTelemetry SDK span with attributes inside a parent span (no-op exporter), and "
    "LangChain's `CallbackManager.configure(...)` + `on_llm_start` + `on_llm_end` under a "
    "chain run, as `BaseLLM.generate` does.",
    "- The machine is shared (2 cores); other processes can add noise, mostly to p99.",
]
