"""Configuration as users write it: comma lists, typos with suggestions, meaning checks, the
files looked for, standard OTEL_* sources, secrets never shown, and `callbacks check`.

Plugin selection runs against the real pip-installed distributions (the built-ins, the sinks and
tests/plugin_dists/callbacks-example), through real entry points.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_cli import run_cli

from callbacks import CallbackManager, ConfigError
from callbacks._config import load_config


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No CALLBACKS_*/OTEL_* variables and an empty working directory."""
    for var in list(os.environ):
        if var.upper().startswith(("CALLBACKS_", "OTEL_")):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def active_plugins() -> set[str]:
    cm = CallbackManager(load_entrypoints=True)
    try:
        return set(cm.list_plugins())
    finally:
        cm.shutdown(2.0)


# -- lists as people type them -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugins", "disable", "expected"),
    [
        ("example", None, {"example"}),
        ("example,tokens", None, {"example", "tokens"}),
        (" example , tokens ,", None, {"example", "tokens"}),
        ("example,tokens", "tokens", {"example"}),
        ("", None, set()),
        ('["example", "tokens"]', '["example"]', {"tokens"}),
    ],
)
def test_plugin_lists_accept_commas_json_and_empty(clean_env, plugins, disable, expected) -> None:
    clean_env.setenv("CALLBACKS_PLUGINS", plugins)
    if disable is not None:
        clean_env.setenv("CALLBACKS_DISABLE", disable)
    assert active_plugins() == expected


def test_disable_alone_takes_a_comma_list(clean_env) -> None:
    clean_env.setenv("CALLBACKS_DISABLE", "broken,misspelled,aim,wandb,openinference")
    assert active_plugins() == {"debug", "demo", "example", "finetuning", "store", "tokens"}


def test_comma_list_in_toml_string_too(clean_env, tmp_path) -> None:
    (tmp_path / "callbacks.toml").write_text('plugins = "tokens, example"\n')
    assert active_plugins() == {"tokens", "example"}


# -- typos are errors that name the source and the closest valid name ---------------------------


@pytest.mark.parametrize(
    ("var", "value", "suggestion"),
    [
        ("CALLBACKS_HIDE_INPUT", "1", "'hide_inputs' (CALLBACKS_HIDE_INPUTS)"),
        ("CALLBACKS_SAMPLERATE", "0.1", "'sample_rate' (CALLBACKS_SAMPLE_RATE)"),
        ("CALLBACKS_PLUGIN", "tokens", "'plugins' (CALLBACKS_PLUGINS)"),
        ("CALLBACKS_DISABLE_", "1", "'disable'"),
    ],
)
def test_misspelt_host_variable_is_an_error_with_a_suggestion(
    clean_env, var, value, suggestion
) -> None:
    clean_env.setenv(var, value)
    with pytest.raises(ConfigError) as error:
        load_config()
    message = str(error.value)
    assert f"environment variable {var}" in message
    assert f"did you mean {suggestion}" in message


def test_misspelt_host_key_in_code_and_toml_is_an_error_with_a_suggestion(
    clean_env, tmp_path
) -> None:
    with pytest.raises(ConfigError, match=r"'hide_input'.*did you mean 'hide_inputs'"):
        load_config({"hide_input": True})
    (tmp_path / "callbacks.toml").write_text("max_payload_char = 10\n")
    with pytest.raises(ConfigError) as error:
        load_config()
    assert "callbacks.toml max_payload_char" in str(error.value)
    assert "did you mean 'max_payload_chars'" in str(error.value)


@pytest.mark.parametrize(
    ("write", "source", "suggestion"),
    [
        (("toml", "[token]\nbudget = 5\n"), "callbacks.toml [token]", "'tokens'"),
        (("toml", '[wandbb]\nmode = "offline"\n'), "callbacks.toml [wandbb]", "'wandb'"),
        (
            ("pyproject", '[tool.callbacks.exampel]\ngreeting = "x"\n'),
            "pyproject.toml [tool.callbacks.exampel]",
            "'example'",
        ),
        (
            ("env", "CALLBACKS_OPENINFERENCEE__ENDPOINT=http://127.0.0.1:1/v1/traces"),
            "environment variable CALLBACKS_OPENINFERENCEE__ENDPOINT",
            "'openinference'",
        ),
    ],
)
def test_section_naming_no_installed_plugin_is_an_error(
    clean_env, tmp_path, write, source, suggestion
) -> None:
    kind, text = write
    if kind == "env":
        var, _, value = text.partition("=")
        clean_env.setenv(var, value)
    else:
        name = "callbacks.toml" if kind == "toml" else "pyproject.toml"
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as error:
        CallbackManager(load_entrypoints=True).shutdown()
    message = str(error.value)
    assert source in message and f"did you mean {suggestion}" in message


def test_section_in_code_for_no_plugin_is_an_error(clean_env, recorder) -> None:
    with pytest.raises(ConfigError, match=r"'mypluginx'.*did you mean 'myplugin'"):
        recorder.callbacks_name = "myplugin"
        CallbackManager([recorder], config={"mypluginx": {"level": 1}})


def test_unknown_key_in_a_plugin_section_suggests_the_field(clean_env) -> None:
    clean_env.setenv("CALLBACKS_EXAMPLE__GREETIN", "hi")
    with pytest.raises(ConfigError) as error:
        CallbackManager(load_entrypoints=True).shutdown()
    message = str(error.value)
    assert "CALLBACKS_EXAMPLE__GREETIN" in message and "did you mean 'greeting'" in message


@pytest.mark.parametrize("key", ["plugins", "disable"])
def test_unknown_plugin_name_names_its_source_and_the_closest(clean_env, key) -> None:
    clean_env.setenv(f"CALLBACKS_{key.upper()}", "tokens,exampel")
    with pytest.raises(ConfigError) as error:
        CallbackManager(load_entrypoints=True).shutdown()
    message = str(error.value)
    assert f"{key} names 'exampel'" in message
    assert f"environment variable CALLBACKS_{key.upper()}" in message
    assert "did you mean 'example'" in message


# -- meaning, not only type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("CALLBACKS_SHUTDOWN_TIMEOUT", "inf", "finite"),
        ("CALLBACKS_SHUTDOWN_TIMEOUT", "nan", "finite"),
        ("CALLBACKS_SHUTDOWN_TIMEOUT", "-1", "greater than or equal to 0"),
        ("CALLBACKS_QUEUE_SIZE", "0", "greater than or equal to 1"),
        ("CALLBACKS_SAMPLE_RATE", "1.5", "less than or equal to 1"),
        ("CALLBACKS_SAMPLE_RATE", "-0.1", "greater than or equal to 0"),
        ("CALLBACKS_SAMPLE_RATE", "nan", "finite"),
        ("CALLBACKS_MAX_PAYLOAD_CHARS", "0", "greater than or equal to 1"),
    ],
)
def test_values_are_checked_for_meaning(clean_env, var, value, expected) -> None:
    clean_env.setenv(var, value)
    with pytest.raises(ConfigError) as error:
        load_config()
    message = str(error.value)
    assert f"environment variable {var}" in message and f"'{value}'" in message
    assert expected in message


# -- files looked for, CALLBACKS_CONFIG naming a pyproject.toml ----------------------------------


def test_callbacks_config_may_name_a_pyproject(clean_env, tmp_path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\n[tool.callbacks]\nqueue_size = 7\n[tool.callbacks.tokens]\n'
        "budget = 3\n"
    )
    clean_env.setenv("CALLBACKS_CONFIG", str(project / "pyproject.toml"))
    config = load_config()
    assert config.host.queue_size == 7
    assert config.sections == {"tokens": {"budget": 3}}
    source = config.host_origins["queue_size"].describe()
    assert source == f"{project / 'pyproject.toml'} [tool.callbacks] queue_size"
    assert (project / "pyproject.toml", "read") in config.files


def test_config_lists_files_looked_for_and_read(clean_env, tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    result = run_cli("config", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = {Path(f["path"]).name: f["status"] for f in json.loads(result.stdout)["files"]}
    assert files == {"callbacks.toml": "not found", "pyproject.toml": "no [tool.callbacks] table"}
    (tmp_path / "callbacks.toml").write_text("queue_size = 5\n")
    text = run_cli("config", cwd=tmp_path).stdout
    assert f"{tmp_path / 'callbacks.toml'}: read" in text
    assert f"{tmp_path / 'pyproject.toml'}: no [tool.callbacks] table" in text


def test_values_from_standard_otel_variables_name_that_variable(tmp_path) -> None:
    env = {
        "OTEL_SERVICE_NAME": "checkout",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "CALLBACKS_OPENINFERENCE__EXPORTER": "none",
    }
    result = run_cli("config", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["key"]: r for r in json.loads(result.stdout)["settings"]}
    assert rows["openinference.service_name"]["value"] == "checkout"
    assert rows["openinference.service_name"]["source"] == "environment variable OTEL_SERVICE_NAME"
    assert rows["openinference.endpoint"]["value"] == "http://127.0.0.1:4318/v1/traces"
    assert rows["openinference.endpoint"]["source"] == (
        "environment variable OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    assert rows["openinference.exporter"]["source"] == (
        "environment variable CALLBACKS_OPENINFERENCE__EXPORTER"
    )
    assert rows["openinference.project_name"]["source"] == "default"


# -- secrets --------------------------------------------------------------------------------------

SECRETS = {
    "CALLBACKS_WANDB__API_KEY": "wandb-key-0123456789abcdef0123456789abcdef",
    "CALLBACKS_OPENINFERENCE__HEADERS": '{"authorization": "Bearer otlp-s3cret-header"}',
}
RAW = ("wandb-key-0123456789abcdef", "otlp-s3cret-header")


def test_config_repr_never_shows_secrets(clean_env) -> None:
    for var, value in SECRETS.items():
        clean_env.setenv(var, value)
    config = load_config()
    # The values are really there (so the test can fail), only never shown.
    assert "otlp-s3cret-header" in json.dumps(config.sections)
    for shown in (repr(config), str(config)):
        assert not any(raw in shown for raw in RAW), shown
        assert "********" in shown


@pytest.mark.parametrize(
    "args", [("config",), ("config", "--json"), ("plugins", "--json"), ("check",)]
)
def test_cli_never_shows_secrets(tmp_path, args) -> None:
    env = {
        **SECRETS,
        "CALLBACKS_WANDB__MODE": "disabled",
        "CALLBACKS_OPENINFERENCE__EXPORTER": "none",
    }
    env["CALLBACKS_DISABLE"] = "broken,misspelled"
    result = run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(raw in result.stdout + result.stderr for raw in RAW)


def test_invalid_secret_value_is_masked_in_the_error(tmp_path) -> None:
    env = {"CALLBACKS_OPENINFERENCE__HEADERS": '{"authorization": 1234567890123}'}
    for command in ("config", "check"):
        result = run_cli(command, env=env, cwd=tmp_path)
        assert result.returncode == 2
        assert "CALLBACKS_OPENINFERENCE__HEADERS" in result.stderr
        assert "1234567890123" not in result.stdout + result.stderr


# -- callbacks check ------------------------------------------------------------------------------


def test_check_passes_a_good_configuration(tmp_path) -> None:
    (tmp_path / "callbacks.toml").write_text('[example]\ngreeting = "hey"\n')
    result = run_cli("check", env={"CALLBACKS_DISABLE": "broken,misspelled"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Configuration OK" in result.stdout
    assert f"Configuration files read: {tmp_path / 'callbacks.toml'}" in result.stdout


def test_check_fails_on_an_active_plugin_that_does_not_load(tmp_path) -> None:
    result = run_cli("check", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("callbacks:")]
    assert any("'broken' failed to load" in line for line in errors)
    assert any("'misspelled' failed to load" in line for line in errors)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # the example plugin is not selected: its section is validated all the same
        ({"CALLBACKS_PLUGINS": "tokens", "CALLBACKS_EXAMPLE__LIMIT": "many"}, "example.limit"),
        ({"CALLBACKS_PLUGINS": "tokens", "CALLBACKS_TOKEN__BUDGET": "5"}, "did you mean 'tokens'"),
        ({"CALLBACKS_PLUGINS": "tokens", "CALLBACKS_SAMPLE_RATE": "2"}, "CALLBACKS_SAMPLE_RATE"),
        ({"CALLBACKS_PLUGINS": "tokens", "CALLBACKS_WANDB__MODE": "sideways"}, "wandb.mode"),
    ],
)
def test_check_fails_with_one_line_per_problem(tmp_path, env, expected) -> None:
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("callbacks:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr


# -- safe defaults: nothing printed or written unless asked --------------------------------------

SCRIPT = """
import json, sys
from callbacks import CallbackManager, EventPayload as P, EventType
cm = CallbackManager(load_entrypoints=True)
with cm.as_trace("q"):
    with cm.event(EventType.LLM, {P.PROMPT: "What do bees eat?"}) as llm:
        llm.on_end({P.COMPLETION: "Nectar."})
cm.flush()
debug, finetuning = cm.get_plugin("debug"), cm.get_plugin("finetuning")
result = {
    "active": sorted(cm.list_plugins()),
    "debug_events": len(debug.get_events()),
    "examples": len(finetuning.finetuning_events),
    "path": None if finetuning.path is None else str(finetuning.path),
}
cm.shutdown()
sys.stderr.write("RESULT " + json.dumps(result) + "\\n")
"""


def test_built_in_plugins_record_but_print_and_write_nothing_by_default(tmp_path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    env["CALLBACKS_PLUGINS"] = "tokens,debug,finetuning,store,demo"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stderr.split("RESULT ", 1)[1])
    assert result == {
        "active": ["debug", "demo", "finetuning", "store", "tokens"],
        "debug_events": 2,
        "examples": 1,
        "path": None,
    }
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


# -- plugin names ---------------------------------------------------------------------------------


def test_plugin_without_callbacks_name_gets_the_name_its_section_matches(clean_env) -> None:
    from pydantic import BaseModel, ConfigDict

    from callbacks import hookimpl

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        level: int = 0

    class MyPlugin:
        callbacks_delivery = "inline"

        @hookimpl
        def callbacks_settings(self):
            return Settings

        @hookimpl
        def callbacks_configure(self, settings):
            self.level = settings.level

        @hookimpl
        def on_llm_start(self, event):
            pass

    clean_env.setenv("CALLBACKS_MYPLUGIN__LEVEL", "3")
    plugin = MyPlugin()
    cm = CallbackManager([plugin])
    try:
        assert cm.name_of(plugin) == "myplugin"
        assert cm.get_plugin("myplugin") is plugin and plugin.level == 3
        assert list(cm.stats()) == ["myplugin"]
        rows = cm.config.rows({"myplugin": Settings}, {"myplugin": cm.plugin_settings("myplugin")})
        assert rows[-1] == (
            "myplugin.level",
            3,
            "environment variable CALLBACKS_MYPLUGIN__LEVEL",
        )
    finally:
        cm.shutdown()
