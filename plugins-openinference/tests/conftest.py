"""Fixtures for the callbacks-openinference tests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from oi_helpers import OTLPReceiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver()
    yield server
    server.close()


@pytest.fixture(autouse=True, scope="session")
def _sinks_in_the_test_process() -> Iterator[None]:
    """The sinks ask for process delivery; these tests inspect the plugin object in the test
    process, so they run it here (on a background thread). The sidecar is tested in
    ``test_*_process_delivery.py``, whose configuration in code overrides this variable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "CALLBACKS_DELIVERY",
            json.dumps(dict.fromkeys(("wandb", "aim", "openinference"), "background")),
        )
        yield
