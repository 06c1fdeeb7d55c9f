"""What a configuration error does to an application, run as a real process against the
pip-installed plugins: it never raises into app code (logged once, at ERROR, with the full
message), the configuration is read once per process, a bad plugin section turns that plugin
off only, CALLBACKS_STRICT=1 raises, CALLBACKS_DISABLED=1 costs nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callbacks import CallbackManager, ConfigError, EventType
from callbacks.testing import RecordingPlugin

APP = """
import json, logging, sys, threading
import callbacks._config
reads = []
real_load = callbacks._config.load_config
def counting_load(*args, **kwargs):
    reads.append(1)
    return real_load(*args, **kwargs)
callbacks._config.load_config = counting_load
logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(message)s")

import callbacks
from callbacks import EventType

@callbacks.traced(EventType.LLM)
def complete(prompt):
    return prompt.upper()

results, errors = [], []
for i in range(100):
    try:
        results.append(complete(f"q{i}"))
    except Exception as error:
        errors.append(f"{type(error).__name__}: {error}")
        break
if errors:
    sys.stderr.write("RESULT " + json.dumps({"errors": errors}) + "\\n")
    sys.exit(0)
cm = callbacks.get_manager()
cm.flush()
out = {
    "results_ok": results == [f"Q{i}" for i in range(100)],
    "errors": errors,
    "reads": len(reads),
    "active": sorted(cm.list_plugins()),
    "config_error": cm.config_error,
    "stats": {k: v for k, v in cm.stats().items() if v.get("active") is False},
    "tokens_calls": (
        len(cm.get_plugin("tokens").llm_token_counts) if cm.get_plugin("tokens") else None
    ),
}
sys.stderr.write("RESULT " + json.dumps(out) + "\\n")
"""


def run_app(tmp_path: Path, env: dict[str, str], code: str = APP) -> tuple[dict, list[str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBACKS_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stderr.split("RESULT ", 1)[1])
    logs = [line for line in done.stderr.splitlines() if line.startswith("LOG ")]
    return result, logs


def test_bad_host_key_is_logged_once_and_every_plugin_is_off(tmp_path) -> None:
    result, logs = run_app(
        tmp_path, {"CALLBACKS_QUEUE_SIZE": "lots", "CALLBACKS_PLUGINS": "tokens,example"}
    )
    assert result["results_ok"] and result["errors"] == []
    assert result["reads"] == 1
    assert result["active"] == []
    errors = [line for line in logs if line.startswith("LOG ERROR")]
    assert len(errors) == 1, logs
    for part in ("CALLBACKS_QUEUE_SIZE", "'lots'", "valid integer", "every plugin is off"):
        assert part in errors[0]
    assert result["config_error"] in errors[0]


def test_misspelt_variable_and_unknown_section_turn_every_plugin_off(tmp_path) -> None:
    for env, expected in (
        ({"CALLBACKS_HIDE_INPUT": "1"}, "did you mean 'hide_inputs'"),
        ({"CALLBACKS_TOKEN__BUDGET": "5"}, "did you mean 'tokens'"),
    ):
        result, logs = run_app(tmp_path, {"CALLBACKS_PLUGINS": "tokens", **env})
        assert result["results_ok"] and result["active"] == []
        errors = [line for line in logs if line.startswith("LOG ERROR")]
        assert len(errors) == 1 and expected in errors[0], logs


def test_bad_plugin_section_turns_off_that_plugin_only(tmp_path) -> None:
    env = {
        "CALLBACKS_PLUGINS": "tokens,example,wandb",
        "CALLBACKS_WANDB__MODE": "sideways",
        "WANDB_MODE": "disabled",
    }
    result, logs = run_app(tmp_path, env)
    assert result["results_ok"] and result["errors"] == []
    assert result["active"] == ["example", "tokens"]
    assert result["tokens_calls"] == 100  # the other plugins really work
    off = result["stats"]["wandb"]
    assert off["active"] is False and off["delivered"] == 0
    assert "CALLBACKS_WANDB__MODE" in off["reason"] and "'sideways'" in off["reason"]
    errors = [line for line in logs if line.startswith("LOG ERROR")]
    assert len(errors) == 1 and "plugin 'wandb' is off" in errors[0]


def test_plugins_command_shows_the_reason_and_exits_2(tmp_path) -> None:
    from test_cli import run_cli

    env = {"CALLBACKS_PLUGINS": "tokens,example", "CALLBACKS_EXAMPLE__LIMIT": "many"}
    result = run_cli("plugins", env=env, cwd=tmp_path)
    assert result.returncode == 2
    example = next(line for line in result.stdout.splitlines() if line.startswith("example"))
    assert "inactive (configuration error: invalid value 'many' for 'example.limit'" in example
    tokens = next(line for line in result.stdout.splitlines() if line.startswith("tokens"))
    assert "active (selected)" in tokens
    errors = [line for line in result.stderr.splitlines() if line.startswith("callbacks:")]
    assert len(errors) == 1 and "CALLBACKS_EXAMPLE__LIMIT" in errors[0]


@pytest.mark.parametrize(
    "env", [{"CALLBACKS_QUEUE_SIZE": "lots"}, {"CALLBACKS_EXAMPLE__LIMIT": "many"}]
)
def test_strict_mode_raises_into_the_application(tmp_path, env) -> None:
    result, _ = run_app(tmp_path, {"CALLBACKS_STRICT": "1", **env})
    assert len(result["errors"]) == 1 and result["errors"][0].startswith("ConfigError: ")


def test_manager_built_in_code_still_raises(monkeypatch) -> None:
    monkeypatch.setenv("CALLBACKS_EXAMPLE__LIMIT", "many")
    with pytest.raises(ConfigError, match=r"example\.limit"):
        CallbackManager(load_entrypoints=True, config={"plugins": ["example"]})
    with pytest.raises(ConfigError, match="queue_size"):
        CallbackManager(config={"queue_size": 0})


DISABLED_APP = """
import json, sys, threading
import callbacks
from callbacks import CallbackManager, EventType
from callbacks.testing import RecordingPlugin

@callbacks.traced(EventType.LLM)
def complete(prompt):
    return prompt.upper()

results = [complete(f"q{i}") for i in range(1000)]
recorder = RecordingPlugin(delivery="background")
cm = CallbackManager(plugins=[recorder], load_entrypoints=True)
with cm.event(EventType.QUERY, {"query_str": "q"}):
    pass
heavy = ("pydantic", "pydantic_settings", "importlib.metadata", "callbacks_tokens",
         "callbacks_debug", "callbacks_example", "wandb", "aim", "opentelemetry")
out = {
    "results_ok": results == [f"Q{i}" for i in range(1000)],
    "imported": [m for m in heavy if m in sys.modules],
    "threads": threading.active_count(),
    "active": sorted(callbacks.get_manager().list_plugins()) + sorted(cm.list_plugins()),
    "recorded": len(recorder.events),
    "disabled": callbacks.get_manager().disabled and cm.disabled,
}
sys.stderr.write("RESULT " + json.dumps(out) + "\\n")
"""


def test_disabled_loads_imports_and_starts_nothing(tmp_path) -> None:
    # A broken configuration too: with everything off it is not even read.
    (tmp_path / "callbacks.toml").write_text("queue_size = 0\n")
    result, logs = run_app(tmp_path, {"CALLBACKS_DISABLED": "1"}, DISABLED_APP)
    assert result == {
        "results_ok": True,
        "imported": [],
        "threads": 1,
        "active": [],
        "recorded": 0,
        "disabled": True,
    }
    assert logs == []


def test_disabled_in_a_file_or_in_code_turns_everything_off(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = RecordingPlugin()
    cm = CallbackManager(plugins=[recorder], load_entrypoints=True, config={"disabled": True})
    with cm.event(EventType.LLM, {"formatted_prompt": "hi"}):
        pass
    assert cm.disabled and cm.list_plugins() == {} and recorder.events == []
    (tmp_path / "callbacks.toml").write_text("disabled = true\n")
    assert CallbackManager(load_entrypoints=True).list_plugins() == {}


def test_secret_in_a_bad_value_never_reaches_the_log(tmp_path) -> None:
    env = {
        "CALLBACKS_PLUGINS": "tokens,openinference",
        "CALLBACKS_OPENINFERENCE__HEADERS": '{"authorization": 987654321987}',
        "CALLBACKS_OPENINFERENCE__EXPORTER": "none",
    }
    result, logs = run_app(tmp_path, env)
    assert result["active"] == ["tokens"]
    errors = [line for line in logs if line.startswith("LOG ERROR")]
    assert len(errors) == 1 and "CALLBACKS_OPENINFERENCE__HEADERS" in errors[0]
    assert "987654321987" not in "\n".join(logs) + json.dumps(result)
