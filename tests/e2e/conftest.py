"""End-to-end fixtures: a real dev host process serving the project's function_app.py
(``fabric_host``), and a sample cryptlet registered on it (``registered``)."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest

from devhost.ports import free_port, wait_for_port
from shared.settings import SETTINGS
from tests.conftest import CLI, PROJECT_ROOT, TESTS


def children_of(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class FabricHost:
    """A dev host process serving the project's function_app.py on a free port."""

    url: str
    key: str
    storage: str
    admin_key: str
    table_prefix: str
    sealing_secret: bytes
    packages_dir: Path
    log_path: Path
    process: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)
    responses: list[str] = field(default_factory=list)

    def client(self, key: str | None = "default") -> httpx.Client:
        headers = {"x-functions-key": self.key if key == "default" else key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, event_hooks={"response": [self._record]})

    def _record(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response.text)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            CRYPTLET_URL=self.url,
            CRYPTLET_FUNCTION_KEY=self.key,
            AzureWebJobsStorage=self.storage,
            FABRIC_TABLE_PREFIX=self.table_prefix,
        )
        return subprocess.run([str(CLI), *args], env=env, input=input, capture_output=True, text=True, timeout=120)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @contextlib.contextmanager
    def twin(self, **overrides: str) -> Iterator[FabricHost]:
        """A second host process with the same settings (but ``overrides``) and storage: a restart, or
        a scale-out instance."""
        port = free_port()
        log_path = self.log_path.with_name(f"twin-{port}.log")
        env = {**self.env, **overrides}
        process = start_host(env, port, log_path)
        twin = replace(
            self,
            url=f"http://127.0.0.1:{port}",
            log_path=log_path,
            process=process,
            responses=[],
            env=env,
            packages_dir=Path(env["FABRIC_PACKAGES_DIR"]),
        )
        try:
            wait_for_port(port, 60, process)
            yield twin
        finally:
            stop_host(twin)


def start_host(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "devhost", "serve", "--app-dir", str(PROJECT_ROOT), "--port", str(port)],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_host(host: FabricHost) -> None:
    """SIGTERM the host; it must exit 0 within 30 s and leave no region running."""
    process = host.process
    regions = children_of(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("dev host did not stop within 30 s of SIGTERM")
    leftovers = [pid for pid in regions if pid_alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert code == 0, f"dev host exited with {code}:\n{host.log()[-3000:]}"
    assert not leftovers, f"region processes left running after the host stopped: {leftovers}"


@pytest.fixture(scope="module")
def fabric_host(
    request: pytest.FixtureRequest, storage: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FabricHost]:
    """The real function app under the dev host, with its own tables and a copy of the packages.

    A test module may set ``FABRIC_HOST_SETTINGS = {...}`` to override settings of its host.
    """
    work = tmp_path_factory.mktemp("fabric")
    packages = work / "packages"
    shutil.copytree(PROJECT_ROOT / "cryptlet_packages", packages, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(TESTS / "packages", packages, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    secret = os.urandom(32)
    key = secrets.token_urlsafe(24)
    admin_key = secrets.token_urlsafe(24)
    prefix = "f" + uuid.uuid4().hex[:10]
    port = free_port()
    log_path = work / "host.log"
    env = dict(
        os.environ,
        AzureWebJobsStorage=storage,
        FABRIC_SEALING_SECRET=base64.b64encode(secret).decode(),
        FABRIC_PACKAGES_DIR=str(packages),
        FABRIC_TABLE_PREFIX=prefix,
        DEVHOST_FUNCTION_KEY=key,
        DEVHOST_MASTER_KEY=admin_key,
        FABRIC_REGION_TIMEOUT_S="10",
        FABRIC_INVOKE_QUEUE=f"{prefix}-invocations",
        FABRIC_FIRE_QUEUE=f"{prefix}-fires",
    )
    env.update(getattr(request.module, "FABRIC_HOST_SETTINGS", {}))
    for name, (default, _) in SETTINGS.items():
        if default is not None:
            env.setdefault(name, default)
    process = start_host(env, port, log_path)
    host = FabricHost(
        url=f"http://127.0.0.1:{port}",
        key=key,
        storage=storage,
        admin_key=admin_key,
        table_prefix=prefix,
        sealing_secret=secret,
        packages_dir=packages,
        log_path=log_path,
        process=process,
        env=env,
    )
    try:
        wait_for_port(port, 60, process)
        yield host
    finally:
        stop_host(host)


def register(host: FabricHost, package: str) -> dict:
    """Register the package folder ``package`` (a sample, or one of tests/packages) on ``host``: the
    registration document of ``POST /api/cryptlets`` (201)."""
    with host.client() as http:
        response = http.post("/api/cryptlets", json={"package": package})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def registered(request: pytest.FixtureRequest, fabric_host: FabricHost) -> dict:
    """The sample named by the test module's ``REGISTERED_PACKAGE`` (default ``customer_validator``),
    registered once on the module's ``fabric_host``: its registration document."""
    return register(fabric_host, getattr(request.module, "REGISTERED_PACKAGE", "customer_validator"))
