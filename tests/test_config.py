"""Configuration sources, priority, plugin selection and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbacks import CallbackManager, ConfigError
from callbacks._config import load_config


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No CALLBACKS_* variables and an empty working directory."""
    import os

    for var in list(os.environ):
        if var.upper().startswith("CALLBACKS_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_source_priority_code_env_toml_pyproject_default(clean_env, tmp_path) -> None:
    _write(
        tmp_path / "pyproject.toml",
        "[tool.callbacks]\nqueue_size = 4\nshutdown_timeout = 4\n"
        "sample_rate = 0.4\nstrict = true\n",
    )
    _write(tmp_path / "callbacks.toml", "queue_size = 3\nshutdown_timeout = 3\nsample_rate = 0.3\n")
    clean_env.setenv("CALLBACKS_QUEUE_SIZE", "2")
    clean_env.setenv("CALLBACKS_SHUTDOWN_TIMEOUT", "2")
    config = load_config({"queue_size": 1})
    assert config.host.queue_size == 1
    assert config.host.shutdown_timeout == 2
    assert config.host.sample_rate == 0.3
    assert config.host.strict is True
    assert config.host.overflow == "drop_newest"
    origins = {k: o.describe() for k, o in config.host_origins.items()}
    assert origins["queue_size"] == "CallbackManager(config=...) key 'queue_size'"
    assert origins["shutdown_timeout"] == "environment variable CALLBACKS_SHUTDOWN_TIMEOUT"
    assert origins["sample_rate"].endswith("callbacks.toml sample_rate")
    assert origins["strict"].endswith("pyproject.toml [tool.callbacks] strict")


def test_callbacks_config_env_var_names_the_toml_file(clean_env, tmp_path) -> None:
    custom = _write(tmp_path / "elsewhere.toml", "queue_size = 9\n")
    clean_env.setenv("CALLBACKS_CONFIG", str(custom))
    assert load_config().host.queue_size == 9
    clean_env.setenv("CALLBACKS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"CALLBACKS_CONFIG.*not a file"):
        load_config()


def test_bad_env_value_names_variable_value_and_expectation(clean_env) -> None:
    clean_env.setenv("CALLBACKS_QUEUE_SIZE", "lots")
    with pytest.raises(ConfigError) as error:
        load_config()
    message = str(error.value)
    assert "CALLBACKS_QUEUE_SIZE" in message and "'lots'" in message
    assert "valid integer" in message


def test_bad_toml_value_names_file_and_key(clean_env, tmp_path) -> None:
    path = _write(tmp_path / "callbacks.toml", 'overflow = "block"\n')
    with pytest.raises(ConfigError) as error:
        load_config()
    message = str(error.value)
    assert f"{path} overflow" in message and "'block'" in message
    assert "drop_newest" in message


def test_bad_pyproject_value_names_table(clean_env, tmp_path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.callbacks]\nsample_rate = 2\n")
    with pytest.raises(
        ConfigError, match=r"\[tool.callbacks\] sample_rate.*less than or equal to 1"
    ):
        load_config()


def test_unknown_host_key_is_an_error(clean_env, tmp_path) -> None:
    _write(tmp_path / "callbacks.toml", "queue_sise = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'queue_sise'.*queue_size"):
        load_config()


# -- plugins and their sections (the pip-installed callbacks-example distribution) ----------------


def test_installing_a_plugin_distribution_makes_it_active(clean_env) -> None:
    cm = CallbackManager(load_entrypoints=True)
    try:
        example = cm.get_plugin("example")
        assert type(example).__module__ == "callbacks_example"
        assert example.settings.greeting == "hello"
        status = {p.name: (p.active, p.reason) for p in cm.installed}
        assert status["example"] == (True, "installed (all plugins active)")
    finally:
        cm.shutdown()


def test_broken_plugin_is_reported_while_others_load(clean_env) -> None:
    cm = CallbackManager(load_entrypoints=True)
    try:
        broken = next(p for p in cm.installed if p.name == "broken")
        assert not broken.active and broken.reason == "failed to load"
        assert "callbacks_broken needs a library" in broken.error
        misspelled = next(p for p in cm.installed if p.name == "misspelled")
        assert not misspelled.active and misspelled.reason == "failed to load"
        assert "PluginValidationError" in misspelled.error and "on_llm_strat" in misspelled.error
        assert "misspelled" not in cm.list_plugins()
        assert cm.get_plugin("example") is not None
    finally:
        cm.shutdown()


@pytest.mark.parametrize("source", ["env", "toml", "pyproject"])
def test_each_selection_mechanism_turns_the_plugin_on_and_off(clean_env, tmp_path, source) -> None:
    def configure(plugins: list[str], disable: list[str]) -> None:
        if source == "env":
            clean_env.setenv("CALLBACKS_PLUGINS", str(plugins).replace("'", '"'))
            clean_env.setenv("CALLBACKS_DISABLE", str(disable).replace("'", '"'))
        else:
            body = f"plugins = {plugins!r}\ndisable = {disable!r}\n".replace("'", '"')
            if source == "toml":
                _write(tmp_path / "callbacks.toml", body)
            else:
                _write(tmp_path / "pyproject.toml", "[tool.callbacks]\n" + body)

    def active() -> set[str]:
        cm = CallbackManager(load_entrypoints=True)
        try:
            return set(cm.list_plugins())
        finally:
            cm.shutdown()

    configure(["example"], [])
    assert active() == {"example"}
    configure(["example"], ["example"])
    assert active() == set()
    configure([], [])
    assert active() == set()


def test_unknown_plugin_name_lists_installed_plugins(clean_env) -> None:
    clean_env.setenv("CALLBACKS_PLUGINS", '["exmaple"]')
    with pytest.raises(ConfigError) as error:
        CallbackManager(load_entrypoints=True)
    message = str(error.value)
    assert "'exmaple'" in message and "CALLBACKS_PLUGINS" in message
    assert "example" in message and "broken" in message


def test_plugin_section_from_env_and_toml_with_priority(clean_env, tmp_path) -> None:
    _write(tmp_path / "callbacks.toml", '[example]\ngreeting = "from toml"\nlimit = 7\n')
    clean_env.setenv("CALLBACKS_EXAMPLE__LIMIT", "3")
    cm = CallbackManager(load_entrypoints=True)
    try:
        settings = cm.get_plugin("example").settings
        assert (settings.greeting, settings.limit) == ("from toml", 3)
    finally:
        cm.shutdown()


def test_plugin_section_is_validated_before_any_event_flows(clean_env, tmp_path) -> None:
    path = _write(tmp_path / "callbacks.toml", '[example]\nlimit = "many"\n')
    with pytest.raises(ConfigError) as error:
        CallbackManager(load_entrypoints=True)
    message = str(error.value)
    assert f"{path} [example] limit" in message and "'many'" in message
    assert "valid integer" in message


def test_unknown_key_in_plugin_section_is_an_error(clean_env) -> None:
    clean_env.setenv("CALLBACKS_EXAMPLE__GREETNG", "hi")
    with pytest.raises(
        ConfigError, match=r"unknown key 'greetng'.*CALLBACKS_EXAMPLE__GREETNG.*greeting"
    ):
        CallbackManager(load_entrypoints=True)


def test_secret_values_never_appear_in_errors(clean_env) -> None:
    from pydantic import BaseModel, SecretStr

    from callbacks import hookimpl

    class Settings(BaseModel):
        api_key: SecretStr
        port: int = 1

    class WithSecret:
        callbacks_name = "secretive"

        @hookimpl
        def callbacks_settings(self):
            return Settings

    clean_env.setenv("CALLBACKS_SECRETIVE__API_KEY", "sk-very-secret")
    clean_env.setenv("CALLBACKS_SECRETIVE__PORT", "sk-also-secret-looking")
    with pytest.raises(ConfigError) as error:
        CallbackManager(plugins=[WithSecret()])
    assert "CALLBACKS_SECRETIVE__PORT" in str(error.value)

    class ApiKeyIsNotAString(BaseModel):
        api_key: int

    clean_env.delenv("CALLBACKS_SECRETIVE__PORT")

    WithSecret.callbacks_settings = hookimpl(lambda self: ApiKeyIsNotAString)  # type: ignore[method-assign]
    with pytest.raises(ConfigError) as error:
        CallbackManager(plugins=[WithSecret()])
    assert "sk-very-secret" not in str(error.value)
    assert "********" in str(error.value)


def test_code_config_reaches_an_explicit_plugin(clean_env) -> None:
    import callbacks_example

    cm = CallbackManager(
        plugins=[callbacks_example.ExamplePlugin], config={"example": {"limit": 42}}
    )
    try:
        assert list(cm.list_plugins()) == ["example"]
        assert cm.get_plugin("example").settings.limit == 42
    finally:
        cm.shutdown()
