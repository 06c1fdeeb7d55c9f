"""Fixtures for the callbacks-openinference tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from oi_helpers import OTLPReceiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver()
    yield server
    server.close()
