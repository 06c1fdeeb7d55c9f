"""The host setting ``instrument``: the process-wide manager instruments the SDKs it names, so an
app is traced with configuration alone; a name that is not an installed SDK is a ConfigError."""

from __future__ import annotations

import sys

import anthropic
import openai
import pytest
from sdk_server import LoopbackAPI, Reply, anthropic_usage, chat_completion, claude_message

import callbacks
import callbacks.integrations.anthropic as callbacks_anthropic
import callbacks.integrations.openai as callbacks_openai
from callbacks import ConfigError, EventType
from callbacks.integrations import _sdk
from callbacks.testing import RecordingPlugin


@pytest.fixture
def process(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CALLBACKS_PLUGINS", "[]")
    callbacks.reset_manager()
    yield monkeypatch
    callbacks.reset_manager()
    callbacks_openai.uninstrument()
    callbacks_anthropic.uninstrument()


def test_instrument_setting_traces_both_sdks_with_configuration_alone(process):
    process.setenv("CALLBACKS_INSTRUMENT", "openai,anthropic")
    assert not callbacks_openai.instrumented() and not callbacks_anthropic.instrumented()

    manager = callbacks.get_manager()

    assert manager.settings.instrument == ["openai", "anthropic"]
    assert callbacks_openai.instrumented() and callbacks_anthropic.instrumented()
    recorder = RecordingPlugin()
    manager.register(recorder)
    with LoopbackAPI() as api:
        api.queue(Reply(chat_completion("Paris")))
        api.queue(Reply(claude_message([{"type": "text", "text": "Rome"}], anthropic_usage(3, 1))))
        openai.OpenAI(api_key="k", base_url=f"{api.url}/v1", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "France?"}]
        )
        anthropic.Anthropic(api_key="k", base_url=api.url, max_retries=0).messages.create(
            model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "Italy?"}]
        )
    models = [e.payload["model_name"] for e in recorder.ends(EventType.LLM)]
    assert models == ["gpt-4o-mini-2024-07-18", "claude-sonnet-4-5-20250929"]


def test_instrument_from_callbacks_toml(process, tmp_path):
    (tmp_path / "callbacks.toml").write_text('instrument = ["openai"]\n')
    callbacks.get_manager()
    assert callbacks_openai.instrumented() and not callbacks_anthropic.instrumented()


def test_sdk_not_installed_is_a_config_error_naming_it(process):
    process.setenv("CALLBACKS_INSTRUMENT", "openai,anthropic")
    process.setitem(sys.modules, "anthropic", None)  # as if it were not installed
    process.setenv("CALLBACKS_STRICT", "1")  # in an application it is logged instead (issue 15)

    with pytest.raises(ConfigError) as caught:
        callbacks.get_manager()

    message = str(caught.value)
    assert "'anthropic'" in message and "not installed" in message
    assert "CALLBACKS_INSTRUMENT" in message
    assert callbacks._process.peek_manager() is None  # nothing half-built is kept


def test_unknown_sdk_name_is_a_config_error_listing_the_choices(process):
    process.setenv("CALLBACKS_INSTRUMENT", "openia")
    # In an application the error is logged, never raised (issue 15); strict mode raises.
    assert "'openia'" in (callbacks.get_manager().config_error or "")
    assert not callbacks_openai.instrumented()
    callbacks.reset_manager()
    process.setenv("CALLBACKS_STRICT", "1")
    with pytest.raises(ConfigError, match=r"'openia'.*expected some of: openai, anthropic"):
        callbacks.get_manager()
    assert not callbacks_openai.instrumented()


def test_instrument_follows_the_process_wide_manager_across_resets(process):
    callbacks_openai.instrument()
    first = callbacks.get_manager()
    callbacks.reset_manager()
    second = callbacks.get_manager()
    recorder = RecordingPlugin()
    second.register(recorder)
    with LoopbackAPI() as api:
        api.queue(Reply(chat_completion("Paris")))
        openai.OpenAI(api_key="k", base_url=f"{api.url}/v1", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "France?"}]
        )
    assert first is not second and first.closed
    assert len(recorder.ends(EventType.LLM)) == 1
    assert _sdk.GUARD_NAME in second.list_plugins()
