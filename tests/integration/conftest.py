"""Integration fixtures: a real process-region provider (``provider``). Azurite (``storage``) comes
from tests/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shared.isolation.process import ProcessProvider


@pytest.fixture(scope="module")
def provider(request: pytest.FixtureRequest) -> Iterator[ProcessProvider]:
    """A process-region provider with a fresh platform secret, closed after the module. Its per-call
    timeout is the test module's ``REGION_TIMEOUT_S`` (default 10 s)."""
    provider = ProcessProvider(os.urandom(32), timeout=getattr(request.module, "REGION_TIMEOUT_S", 10))
    yield provider
    provider.close()
