"""Shared fixtures: a real Azurite for the session (or the one `make test` started)."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import Azurite

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A private Azurite process on free loopback ports, stopped at the end of the session."""
    with Azurite(tmp_path_factory.mktemp("azurite")) as instance:
        yield instance


@pytest.fixture(scope="session")
def storage(azurite: Azurite) -> str:
    """Connection string of the session's Azurite."""
    return azurite.connection_string


@pytest.fixture
def unique_name() -> str:
    """A short unique lowercase name usable as a table or queue name."""
    return "t" + uuid.uuid4().hex[:12]
