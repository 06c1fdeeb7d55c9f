"""The ``callbacks`` cases: the host with no plugin, with no-op plugins, with the built-in
plugins, and with the three sinks (W&B, Aim, OpenInference) all active."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from callbacks import CallbackManager, EventPayload, EventType

from .case import Case
from .plugins import NoopBackground, NoopInline, NoopRedactor
from .timing import Fixture
from .workload import COMPLETION, MODEL, PROMPT

__all__ = ["CASES", "EVENT_PAIR", "manager_fixture"]

EVENT_PAIR = """
with cm.event(LLM, payload=P) as ev:
    ev.on_end(payload=E)
"""
"""One LLM event pair, as users write it."""

START_PAYLOAD = {EventPayload.PROMPT: PROMPT, EventPayload.MODEL_NAME: MODEL}
END_PAYLOAD = {EventPayload.COMPLETION: COMPLETION}
_FLUSH_TIMEOUT_S = 120.0
_TOKENS = "callbacks_tokens:TokenCountingPlugin"
_DEBUG = "callbacks_debug:DebugPlugin"
_SINKS = (
    "callbacks_wandb:WandbPlugin",
    "callbacks_aim:AimPlugin",
    "callbacks_openinference:OpenInferencePlugin",
)
_WANDB_DIRS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")


def manager_fixture(cm: CallbackManager) -> Fixture:
    """A fixture that emits into ``cm`` inside one open trace per batch, drains background
    plugins between batches, and shuts ``cm`` down at the end."""

    def within(fn: Callable[[], Any]) -> Any:
        with cm.as_trace("benchmark"):
            return fn()

    background = any(cm.delivery_mode(name) == "background" for name in cm.list_plugins())

    def flush() -> None:
        if not cm.flush(timeout=_FLUSH_TIMEOUT_S):
            raise RuntimeError(f"flush did not finish in {_FLUSH_TIMEOUT_S}s: {cm.stats()}")

    def dropped() -> int:
        return sum(s["dropped"] for s in cm.stats().values())

    return Fixture(
        {"cm": cm, "LLM": EventType.LLM, "P": START_PAYLOAD, "E": END_PAYLOAD},
        within=within,
        flush=flush if background else None,
        close=lambda: cm.shutdown(timeout=_FLUSH_TIMEOUT_S),
        # Each pair queues two items; a quarter of the queue leaves room for trace items.
        max_batch=cm.settings.queue_size // 4 if background else None,
        dropped=dropped,
    )


def _with_plugins(
    plugins: Iterable[tuple[str, object]], config: Mapping[str, Any] | None = None
) -> Fixture:
    cm = CallbackManager(load_entrypoints=False, config=config)
    for name, plugin in plugins:
        cm.register(plugin, name=name)
    return manager_fixture(cm)


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _no_plugins(tmp: Path) -> Fixture:
    return _with_plugins([])


def _inline(tmp: Path) -> Fixture:
    return _with_plugins([("noop", NoopInline())])


def _redact(tmp: Path) -> Fixture:
    return _with_plugins([("noop", NoopInline()), ("redact", NoopRedactor())])


def _background(tmp: Path) -> Fixture:
    return _with_plugins([("noop", NoopBackground())])


def _builtins(tmp: Path) -> Fixture:
    plugins = [
        ("tokens", _load(_TOKENS)),
        ("debug", _load(_DEBUG)),
    ]
    return _with_plugins(plugins, {"debug": {"print_trace": False}})


def _sinks(tmp: Path) -> Fixture:
    wandb_dir = tmp / "wandb"
    wandb_dir.mkdir()
    # wandb writes under ~ unless every one of its directories is pointed elsewhere.
    env = {var: str(wandb_dir) for var in _WANDB_DIRS} | {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }
    saved = {var: os.environ.get(var) for var in env}
    os.environ.update(env)
    plugins = [
        (name, _load(spec))
        for name, spec in zip(("wandb", "aim", "openinference"), _SINKS, strict=True)
    ]
    config = {
        "wandb": {"mode": "offline", "dir": str(wandb_dir), "project": "callbacks-benchmark"},
        "aim": {"repo": str(tmp / "aim")},
        "openinference": {"exporter": "none"},
    }
    fixture = _with_plugins(plugins, config)
    shutdown = fixture.close

    def close() -> None:
        try:
            if shutdown is not None:
                shutdown()
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value

    fixture.close = close
    return fixture


CASES = [
    Case("callbacks_0", "callbacks: 0 plugins", "callbacks", EVENT_PAIR, _no_plugins),
    Case("callbacks_inline", "callbacks: 1 inline no-op plugin", "callbacks", EVENT_PAIR, _inline),
    Case(
        "callbacks_redact",
        "callbacks: 1 inline no-op plugin + 1 no-op redaction hook",
        "callbacks",
        EVENT_PAIR,
        _redact,
        note="the cost of callbacks_redact itself (compare with callbacks_inline)",
    ),
    Case(
        "callbacks_background",
        "callbacks: 1 background no-op plugin",
        "callbacks",
        EVENT_PAIR,
        _background,
    ),
    Case(
        "callbacks_builtins",
        "callbacks: tokens + debug",
        "callbacks",
        EVENT_PAIR,
        _builtins,
        requires=(_TOKENS, _DEBUG),
    ),
    Case(
        "callbacks_sinks",
        "callbacks: wandb + aim + openinference",
        "callbacks",
        EVENT_PAIR,
        _sinks,
        requires=_SINKS,
        note="wandb offline, aim local repo, openinference exporter 'none'; all background",
        heavy=True,
    ),
]
