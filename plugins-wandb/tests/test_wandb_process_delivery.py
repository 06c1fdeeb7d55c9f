"""The W&B plugin run in the sidecar process (``delivery = "process"``) writes the same trace
trees and LLM-call table to its offline ``.wandb`` run as when it runs in the application."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_wandb import API_KEY, _finish_wandb, _rag_trace
from wandb_reader import find_run_file, read_run

from callbacks import CallbackManager
from callbacks_wandb import WandbPlugin

_VOLATILE = re.compile(r"(^|_)(id|time|ms)$")


def _offline(mp: pytest.MonkeyPatch, root: Path) -> None:
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        mp.setenv(var, str(root))
    mp.chdir(root)


def _record(root: Path, delivery: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict]:
    root.mkdir()
    _offline(monkeypatch, root)
    config = {
        "wandb": {"project": "cb-tests", "run_name": "pipeline", "api_key": API_KEY},
        "delivery": {"wandb": delivery},
    }
    cm = CallbackManager(plugins=[WandbPlugin()], config=config)
    assert cm.delivery_mode("wandb") == delivery
    for _ in range(3):
        _rag_trace(cm, {})
    assert cm.flush(timeout=60)
    stats = cm.stats()["wandb"]
    assert cm.shutdown(timeout=60)
    _finish_wandb()
    return read_run(find_run_file(root)), stats


def _stable(value: Any) -> Any:
    """``value`` without the keys that differ between two runs (ids, times, steps)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not _VOLATILE.search(str(k))}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"event \S+ never", "event <id> never", value)
    return value


def test_the_sidecar_writes_the_same_run_as_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_run, _ = _record(tmp_path / "app", "background", monkeypatch)
    sidecar_run, stats = _record(tmp_path / "sidecar", "process", monkeypatch)
    assert stats["mode"] == "process"
    assert (stats["errors"], stats["dropped"], stats["lost"]) == (0, 0, 0)
    app_trees, sidecar_trees = app_run.trace_trees(), sidecar_run.trace_trees()
    assert len(sidecar_trees) == len(app_trees) == 3
    assert not _diff(_stable(sidecar_trees), _stable(app_trees))
    assert sidecar_run.config.get("callbacks") == app_run.config.get("callbacks")
    # The history's counters (tokens, LLM calls, events, errors per trace), row by row.
    app_rows = [_counters(r) for r in app_run.history]
    assert not _diff([_counters(r) for r in sidecar_run.history], app_rows)
    assert sum(r.get("trace/total_tokens", 0) for r in app_rows) >= 3 * 17  # usage + estimates
    app_table, sidecar_table = app_run.table("llm_calls"), sidecar_run.table("llm_calls")
    assert sidecar_table["columns"] == app_table["columns"]
    assert len(sidecar_table["data"]) == len(app_table["data"]) == 3 * 2


def _counters(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in row.items()
        if not k.startswith("_") and not k.endswith(("_ms", "/size")) and isinstance(v, int | float)
    }


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
