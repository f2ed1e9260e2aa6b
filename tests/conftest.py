"""Cross-tier fixtures (real Azurite, a unique table name) and the tier markers.

Tiers (docs/architecture.md): ``tests/unit`` (no processes, no storage, no network; guarded by
``tests/unit/conftest.py``), ``tests/integration`` (real Azurite and/or real region processes),
``tests/e2e`` (a dev host process, a chain, the demo; ``fabric_host`` lives in ``tests/e2e/conftest.py``).
Every test is marked ``unit``, ``integration`` or ``e2e`` from its folder: ``pytest -m unit``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import Azurite

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("cryptlet")
TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from the folder it is in (tests/<tier>/...)."""
    for item in items:
        try:
            tier = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A private Azurite process on free loopback ports, stopped at the end of the session."""
    with Azurite(tmp_path_factory.mktemp("azurite")) as instance:
        yield instance


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Connection string of a real Azurite: the one `make test` started, else a private one."""
    existing = os.environ.get("AzureWebJobsStorage", "")  # noqa: SIM112  (the Functions setting name)
    if existing.startswith("DefaultEndpointsProtocol"):
        yield existing
        return
    with Azurite(tmp_path_factory.mktemp("azurite-storage")) as instance:
        yield instance.connection_string


@pytest.fixture
def unique_name() -> str:
    """A short unique lowercase name usable as a table or queue name."""
    return "t" + uuid.uuid4().hex[:12]
