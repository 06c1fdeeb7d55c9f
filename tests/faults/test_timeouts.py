"""Also in issue 14: non-finite or negative timeouts are rejected by configuration (an infinite
``shutdown_timeout`` used to raise OverflowError inside the exit flush and lose every event)."""

from __future__ import annotations

import math

import pytest

from callbacks import CallbackManager, ConfigError, EventType
from callbacks.testing import RecordingPlugin


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1.0, "inf", "nan"])
def test_non_finite_or_negative_shutdown_timeout_is_rejected(value) -> None:
    with pytest.raises(ConfigError, match="shutdown_timeout"):
        CallbackManager(config={"shutdown_timeout": value})


@pytest.mark.parametrize("value", ["inf", "NaN", "-3"])
def test_non_finite_timeout_from_the_environment_names_the_variable(value, monkeypatch) -> None:
    monkeypatch.setenv("CALLBACKS_SHUTDOWN_TIMEOUT", value)
    with pytest.raises(ConfigError, match="CALLBACKS_SHUTDOWN_TIMEOUT"):
        CallbackManager()


def test_flush_and_shutdown_accept_an_infinite_timeout_argument() -> None:
    recorder = RecordingPlugin(delivery="background")
    cm = CallbackManager(plugins=[recorder])
    with cm.event(EventType.LLM):
        pass
    assert cm.flush(timeout=math.inf) is True
    assert cm.shutdown(timeout=math.inf) is True
    assert len(recorder.events) == 2
