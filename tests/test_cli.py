"""The ``callbacks`` command, run as a real subprocess against the installed plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import callbacks


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("CALLBACKS_")}
    return subprocess.run(
        [sys.executable, "-m", "callbacks", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def test_version_and_help(tmp_path) -> None:
    version = run_cli("--version", cwd=tmp_path)
    assert (
        version.returncode == 0 and version.stdout.strip() == f"callbacks {callbacks.__version__}"
    )
    helped = run_cli("--help", cwd=tmp_path)
    assert helped.returncode == 0
    for command in ("plugins", "config", "demo"):
        assert command in helped.stdout


def test_plugins_json_lists_installed_active_and_failed(tmp_path) -> None:
    result = run_cli("plugins", "--json", env={"CALLBACKS_DISABLE": '["aim"]'}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    example = rows["example"]
    assert example["distribution"] == "callbacks-example" and example["version"] == "0.3.0"
    assert example["active"] and example["delivery"] == "inline"
    assert example["hooks"] == [
        "callbacks_commands",
        "callbacks_configure",
        "callbacks_settings",
        "on_llm_start",
    ]
    assert rows["broken"]["active"] is False
    assert rows["broken"]["reason"] == "failed to load"
    assert "ImportError" in rows["broken"]["error"]
    if "aim" in rows:
        assert rows["aim"]["active"] is False and rows["aim"]["reason"] == "disabled"
    # The store is installed but has no path here: it is idle, and the listing says so.
    assert rows["store"]["active"] is True and rows["store"]["listening"] is False
    assert example["listening"] is True


def test_plugins_table_shows_an_idle_plugin(tmp_path) -> None:
    env = {"CALLBACKS_PLUGINS": "store"}
    idle = run_cli("plugins", env=env, cwd=tmp_path)
    (line,) = [line for line in idle.stdout.splitlines() if line.startswith("store")]
    assert "idle (selected; its settings leave it nothing to do" in line
    stored = run_cli("plugins", env={**env, "CALLBACKS_STORE__PATH": "t.db"}, cwd=tmp_path)
    (line,) = [line for line in stored.stdout.splitlines() if line.startswith("store")]
    assert "active (selected)" in line


def test_plugins_table_is_readable(tmp_path) -> None:
    result = run_cli("plugins", env={"CALLBACKS_PLUGINS": '["example", "broken"]'}, cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "DISTRIBUTION", "DELIVERY", "STATUS"]
    example = next(line for line in lines if line.startswith("example"))
    assert "active (selected)" in example and "on_llm_start" in example
    broken = next(line for line in lines if line.startswith("broken"))
    assert "failed to load" in broken


def test_config_shows_sources_and_masks_secrets(tmp_path) -> None:
    (tmp_path / "callbacks.toml").write_text('queue_size = 99\n[example]\ngreeting = "hey"\n')
    env = {"CALLBACKS_EXAMPLE__API_KEY": "sk-cli-secret", "CALLBACKS_PLUGINS": '["example"]'}
    result = run_cli("config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sk-cli-secret" not in result.stdout + result.stderr
    table = result.stdout.split("\n\n")[0]
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "99" in rows["queue_size"] and "callbacks.toml queue_size" in rows["queue_size"]
    assert "********" in rows["example.api_key"]
    assert "CALLBACKS_EXAMPLE__API_KEY" in rows["example.api_key"]
    assert '"hey"' in rows["example.greeting"] and "[example] greeting" in rows["example.greeting"]
    assert rows["example.limit"].split()[1:] == ["10", "default"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CALLBACKS_QUEUE_SIZE": "-1"}, "CALLBACKS_QUEUE_SIZE"),
        ({"CALLBACKS_PLUGINS": '["nope"]'}, "installed plugins:"),
        ({"CALLBACKS_EXAMPLE__API_KEY": "sk-x", "CALLBACKS_EXAMPLE__LIMIT": "x"}, "example.limit"),
    ],
)
def test_bad_config_exits_nonzero_with_one_line_error(tmp_path, env, expected) -> None:
    result = run_cli("config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("callbacks:")]
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in result.stderr
    assert "sk-x" not in result.stderr


def test_an_installed_plugin_contributes_a_subcommand(tmp_path) -> None:
    helped = run_cli("--help", cwd=tmp_path)
    assert "example-greet" in helped.stdout
    greeted = run_cli("example-greet", "Ada", cwd=tmp_path)
    assert (greeted.returncode, greeted.stdout) == (0, "hello, Ada\n")


def test_demo_command_comes_from_the_demo_plugin_and_its_parser(tmp_path) -> None:
    helped = run_cli("demo", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--questions" in helped.stdout
    rejected = run_cli("demo", "--questions", "0", cwd=tmp_path)
    assert rejected.returncode == 2 and "must be at least 1" in rejected.stderr
    # Disabling the plugin for events does not remove its command (commands come from every
    # installed plugin), but uninstalling it would: the host has no demo of its own.
    listed = run_cli("plugins", "--json", cwd=tmp_path)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["demo"]["entry_point"] == "callbacks_demo:DemoPlugin"
    assert rows["demo"]["hooks"] == ["callbacks_commands"]
    standalone = subprocess.run(
        [sys.executable, "-m", "callbacks_demo", "--help"], capture_output=True, text=True
    )
    assert standalone.returncode == 0 and "--concurrency" in standalone.stdout
