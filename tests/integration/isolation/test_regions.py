"""Process regions: measurement before load, sealing bound to the digest, call-outs, evidence,
confinement (uid, network, rlimits, environment, working directory) and contained failures."""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.attestation import AttestationError, Reason, SoftwarePolicy, cryptlet_report_data
from shared.encoding import from_hex
from shared.envelope import Domain, Envelope, verify_envelope
from shared.errors import InvalidInput, RegionError, SealingError
from shared.isolation.callout import HostCallOuts
from shared.isolation.pool import RegionPool
from shared.isolation.process import ProcessProvider, ProcessRegion, platform_key
from shared.isolation.sandbox import RegionLimits
from shared.keys import sealing
from shared.packages.digest import DIGEST_V1, package_digest, package_listing
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "cryptlet_packages" / "customer_validator"
REGISTRATION = {"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32}
AS_ROOT = os.geteuid() == 0


@pytest.fixture
def package(tmp_path) -> Path:
    target = tmp_path / "customer_validator"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def make_package(root: Path, name: str, code: str, methods: tuple[str, ...] = ("run",)) -> Path:
    """A one-file cryptlet package ``name`` whose entry class ``C`` is ``code``."""
    package = root / name
    package.mkdir()
    manifest = {
        "name": name,
        "version": "1.0.0",
        "kind": "utility",
        "runtime": "python",
        "entry": "main:C",
        "interface": {"methods": {m: {} for m in methods}},
    }
    (package / "cryptlet.json").write_text(json.dumps(manifest))
    (package / "main.py").write_text(code)
    return package


def ready(provider: ProcessProvider, package: Path, **kwargs) -> ProcessRegion:
    """A region for ``package`` holding a fresh key and bound to a registration."""
    region = provider.create_region(package, package_digest(package), domain=Domain(), **kwargs)
    region.call("generate_key")
    region.call("bind", registration=REGISTRATION)
    return region


def run(region: ProcessRegion, method: str = "run", sequence: int = 1, **args):
    return region.call("invoke", method=method, args=args, sequence=sequence, request_id="0x" + "00" * 32)


def processes_of_uid(uid: int, settle_s: float = 5.0) -> list[int]:
    """Processes still running as ``uid`` once killed ones had ``settle_s`` to finish dying."""
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid != uid:
                        continue
                    state = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                except OSError:
                    continue
                if state not in (b"Z", b"X"):
                    found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- measurement and sealing ----------------------------------------------------------------------
def test_v1_digest_is_sha256_over_a_sha256sum_listing(package):
    import hashlib

    listing = package_listing(package).decode()
    assert listing.splitlines()[0].endswith("  cryptlet.json")
    assert package_digest(package, DIGEST_V1) == hashlib.sha256(listing.encode()).digest()
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    assert package_digest(package, DIGEST_V1) == hashlib.sha256(listing.encode()).digest()


def test_symlinks_are_refused(package):
    (package / "link.py").symlink_to(package / "validator.py")
    with pytest.raises(InvalidInput):
        package_digest(package)


def test_region_generates_key_and_signs(package, provider):
    region = provider.create_region(package, package_digest(package), domain=Domain(5))
    try:
        key = region.call("generate_key")
        region.call("bind", registration=REGISTRATION)
        envelope = Envelope.from_dict(run(region, "rules")["envelope"])
        assert verify_envelope(envelope, key["address"]) == key["address"]
        assert envelope.domain.chain_id == 5
        with pytest.raises(RegionError) as caught:  # sequences must increase
            run(region, "rules")
        assert caught.value.extra["region_code"] == "sequence_reused"
    finally:
        region.close()
    assert not region.alive


def test_changed_package_refuses_to_start(package, provider):
    digest = package_digest(package)
    (package / "validator.py").write_text((package / "validator.py").read_text() + "\n# changed\n")
    with pytest.raises(RegionError) as caught:
        provider.create_region(package, digest, domain=Domain())
    assert caught.value.extra["region_code"] == "digest_mismatch"
    assert "refusing to load" in caught.value.detail


def test_sealed_key_opens_only_for_the_same_digest_and_platform(package, provider):
    region = provider.create_region(package, package_digest(package), domain=Domain())
    try:
        key = region.call("generate_key")
    finally:
        region.close()
    blob = base64.b64decode(key["sealed_key"])
    secret = sealing.unseal(provider._sealing_secret, package_digest(package), key["address"], blob)
    assert len(secret) == 32
    with pytest.raises(SealingError):
        sealing.unseal(provider._sealing_secret, b"\x01" * 32, key["address"], blob)
    with pytest.raises(SealingError):
        sealing.unseal(os.urandom(32), package_digest(package), key["address"], blob)
    with pytest.raises(SealingError):
        sealing.unseal(provider._sealing_secret, package_digest(package), "0x" + "00" * 20, blob)
    # a fresh region of the same package unseals it and signs as the same address
    region = provider.create_region(package, package_digest(package), domain=Domain())
    try:
        assert region.call("unseal", address=key["address"], sealed_key=key["sealed_key"])["address"] == key["address"]
    finally:
        region.close()


def test_a_region_never_holds_the_platform_secret(tmp_path, provider):
    """Only the seal key of its own digest enters a region, so a cryptlet cannot open other packages' keys."""
    package = make_package(
        tmp_path,
        "memory_reader",
        (
            "import gc\nclass C:\n    def run(self):\n"
            "        values = []\n"
            "        for o in gc.get_objects():  # every container, and every object's attributes\n"
            "            fields = o if isinstance(o, (dict, list, tuple)) else getattr(o, '__dict__', None)\n"
            "            if isinstance(fields, dict):\n"
            "                fields = list(fields.values())\n"
            "            if isinstance(fields, (list, tuple)):\n"
            "                values.extend(fields)\n"
            "        return sorted({v.hex() for v in values if isinstance(v, bytes) and len(v) == 32})\n"
        ),
    )
    region = ready(provider, package)
    try:
        held = run(region)["envelope"]["payload"]
    finally:
        region.close()
    assert sealing.seal_key(provider._sealing_secret, package_digest(package)).hex() in held
    assert provider._sealing_secret.hex() not in held


# -- call-outs --------------------------------------------------------------------------------------
class RecordingCallOuts(HostCallOuts):
    def __init__(self) -> None:
        super().__init__("callouts")
        self.seen: list[tuple[str, dict]] = []

    def __call__(self, op, params):
        self.seen.append((op, params))
        if op == "explode":
            raise RuntimeError("handler bug")
        return super().__call__(op, params)


CALLOUT_CODE = """
import fabric_host

fabric_host.log("loading", level="debug")

class C:
    def run(self):
        fabric_host.log("hello from the region")
        now = fabric_host.now_ms()
        errors = []
        for op in ("teleport", "explode"):
            try:
                fabric_host.call(op, url="https://example.com")
            except fabric_host.CallOutError as exc:
                errors.append(exc.code)
        return {"now": now, "errors": errors}
"""


def test_call_outs_reach_the_host_handler_interleaved_with_the_call(tmp_path, provider, caplog):
    calls = RecordingCallOuts()
    region = ready(provider, make_package(tmp_path, "callouts", CALLOUT_CODE), call_out=calls)
    try:
        before = int(datetime.now(UTC).timestamp() * 1000)
        with caplog.at_level("DEBUG", logger="fabric.region"):
            payload = run(region)["envelope"]["payload"]
        assert before <= payload["now"] <= int(datetime.now(UTC).timestamp() * 1000)
        assert payload["errors"] == ["invalid_input", "host_error"]  # unknown call-out; failing handler
        assert [op for op, _ in calls.seen] == ["log", "log", "time", "teleport", "explode"]
        assert "cryptlet callouts: hello from the region" in caplog.text
        assert region.alive
    finally:
        region.close()


def test_a_region_without_a_handler_gets_refusals(tmp_path, provider):
    code = (
        "import fabric_host\nclass C:\n    def run(self):\n        try:\n            fabric_host.now_ms()\n"
        "        except fabric_host.CallOutError as exc:\n            return exc.code\n"
    )
    region = ready(provider, make_package(tmp_path, "no_handler", code))
    try:
        assert run(region)["envelope"]["payload"] == "no_callouts"
    finally:
        region.close()


# -- evidence ---------------------------------------------------------------------------------------
def test_region_evidence_binds_the_key_and_says_it_is_software(package, provider):
    region = provider.create_region(package, package_digest(package), domain=Domain())
    try:
        key = region.call("generate_key")
        nonce = os.urandom(32)
        public = from_hex(key["public_key"], length=65)
        evidence = region.evidence(cryptlet_report_data(public, nonce))
    finally:
        region.close()
    now = datetime.now(UTC)
    verified = provider.verify_evidence(evidence, provider.evidence_policy(), now=now)
    assert verified.kind == "process" and verified.debuggable is True
    assert verified.measurement == package_digest(package).hex()
    verified.require_binding(public, nonce)
    report = json.loads(evidence.blob)["report"]
    assert report["security"] == "software" and report["debug"] is True and "SOFTWARE/DEBUG" in report["notice"]
    with pytest.raises(AttestationError) as refused:  # the default policy refuses software evidence
        provider.verify_evidence(evidence, SoftwarePolicy(), now=now)
    assert refused.value.reason == Reason.SOFTWARE_EVIDENCE
    other_platform = ProcessProvider(os.urandom(32))
    with pytest.raises(AttestationError) as untrusted:  # another platform's key is not pinned
        provider.verify_evidence(evidence, other_platform.evidence_policy(), now=now)
    assert untrusted.value.reason == Reason.UNTRUSTED_KEY
    other_platform.close()


def test_platform_key_is_derived_from_the_sealing_secret_under_its_own_label():
    secret = os.urandom(32)
    assert platform_key(secret).private_bytes_raw() == platform_key(secret).private_bytes_raw()
    assert platform_key(secret).private_bytes_raw() != platform_key(os.urandom(32)).private_bytes_raw()
    assert platform_key(secret).private_bytes_raw() != sealing.seal_key(secret, b"")


# -- confinement ------------------------------------------------------------------------------------
CONFINEMENT_CODE = """
import os, resource, socket

class C:
    def run(self, port):
        facts = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd(),
                 "env": dict(os.environ), "fds": {}}
        for fd in os.listdir("/proc/self/fd"):
            try:
                facts["fds"][fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass  # the descriptor listdir itself used
        facts["limits"] = {name: resource.getrlimit(getattr(resource, name))[0]
                           for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_NPROC",
                                        "RLIMIT_FSIZE")}
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            facts["loopback"] = "connected"
        except OSError as exc:
            facts["loopback"] = exc.__class__.__name__
        try:
            open("package/main.py", "a").close()
            facts["package_writable"] = True
        except OSError:
            facts["package_writable"] = False
        try:
            open(f"/proc/{os.getppid()}/environ", "rb").read()
            facts["parent_environ"] = "read"
        except OSError:
            facts["parent_environ"] = "denied"
        return facts
"""


def test_region_is_confined(tmp_path):
    import socket

    listener = socket.create_server(("127.0.0.1", 0))  # a host service the region must not reach
    limits = RegionLimits(cpu_seconds=30, address_space=1 << 30, open_files=32, processes=8)
    provider = ProcessProvider(os.urandom(32), limits=limits)
    try:
        region = ready(provider, make_package(tmp_path, "confined", CONFINEMENT_CODE))
        facts = run(region, port=listener.getsockname()[1])["envelope"]["payload"]
        workdir = region.workdir
        region.close()
        isolation = provider.isolation()
    finally:
        provider.close()
        listener.close()
    assert set(facts["env"]) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR"}
    assert facts["cwd"] == workdir and facts["env"]["HOME"] == workdir
    assert facts["limits"] == {
        "RLIMIT_CPU": 30,
        "RLIMIT_AS": 1 << 30,
        "RLIMIT_NOFILE": 32,
        "RLIMIT_CORE": 0,
        "RLIMIT_NPROC": 8,
        "RLIMIT_FSIZE": limits.file_size,
    }
    assert facts["package_writable"] is False
    assert facts["parent_environ"] == "denied"
    # Besides stdio (the cryptlet's stdin is /dev/null, stdout goes to stderr) only the protocol socket
    # and read-only directories of the interpreter's libraries are open.
    assert facts["fds"]["0"] == "/dev/null"
    others = [target for fd, target in facts["fds"].items() if fd not in ("0", "1", "2")]
    assert all(t.startswith("socket:") or t == "/dev/null" or Path(t).is_dir() for t in others), others
    assert sum(t.startswith("socket:") for t in others) == 2  # the reader and the writer of one socket
    assert not Path(workdir).exists()  # removed when the region ended
    if AS_ROOT:  # what only a root host can apply
        assert isolation["uid_isolation"] and isolation["own_netns"]
        assert facts["uid"] != 0 and facts["gid"] != 0 and facts["groups"] == []
        assert facts["loopback"] != "connected"  # own network namespace: not even the host's loopback


def test_regions_of_one_provider_get_distinct_uids(tmp_path, provider):
    """As root each live region has its own uid (RLIMIT_NPROC then counts per region); else none."""
    package = make_package(tmp_path, "twins", "class C:\n    def run(self):\n        return 1\n")
    first, second = (provider.create_region(package, package_digest(package), domain=Domain()) for _ in range(2))
    try:
        if AS_ROOT:
            assert first.uid != second.uid and first.uid >= 0x6C000000
        else:  # pragma: no cover - CI runs as root
            assert first.uid is None and second.uid is None
    finally:
        first.close()
        second.close()


# -- contained failures -----------------------------------------------------------------------------
def test_region_that_breaks_the_protocol_is_stopped(tmp_path, provider):
    code = (
        "import os, stat\nclass C:\n    def run(self):\n        print('printing is fine')\n"
        "        for fd in range(64):\n            try:\n                if stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
        "                    os.write(fd, b'garbage\\n')\n            except OSError:\n                pass\n"
    )
    region = ready(provider, make_package(tmp_path, "noisy", code))
    with pytest.raises(RegionError) as caught:
        run(region)
    assert caught.value.extra["region_code"] == "protocol"
    assert "broke the container protocol" in caught.value.detail
    assert not region.alive
    region.close()


@pytest.mark.parametrize(
    "code, region_code, words",
    [
        (
            "import os\nclass C:\n    def run(self):\n        os._exit(3)\n",
            "crashed",
            "region exited during invoke (exit code 3)",
        ),
        (
            "import os, stat, time\nclass C:\n    def run(self):\n        for fd in range(64):\n            try:\n"
            "                if stat.S_ISSOCK(os.fstat(fd).st_mode):\n                    os.close(fd)\n"
            "            except OSError:\n                pass\n        time.sleep(60)\n",
            "protocol",
            "closed its protocol stream during invoke; it was stopped",
        ),
    ],
    ids=["exits", "closes_its_stream"],
)
def test_a_region_that_dies_or_hangs_up_is_reported(tmp_path, provider, code, region_code, words):
    region = ready(provider, make_package(tmp_path, "quitter", code))
    with pytest.raises(RegionError) as caught:
        run(region)
    assert caught.value.extra["region_code"] == region_code and words in caught.value.detail
    assert not region.alive
    region.close()


def test_hung_region_times_out_and_is_killed(tmp_path):
    provider = ProcessProvider(os.urandom(32), timeout=1.5)
    try:
        region = ready(
            provider,
            make_package(tmp_path, "sleepy", "import time\nclass C:\n    def run(self):\n        time.sleep(60)\n"),
        )
        with pytest.raises(RegionError) as caught:
            run(region)
        assert caught.value.extra["region_code"] == "timeout"
        assert not region.alive
        region.close()
    finally:
        provider.close()


def test_cpu_time_limit_kills_a_spinning_region(tmp_path):
    provider = ProcessProvider(os.urandom(32), timeout=20, limits=RegionLimits(cpu_seconds=1))
    try:
        region = ready(
            provider,
            make_package(tmp_path, "spinner", "class C:\n    def run(self):\n        while True:\n            pass\n"),
        )
        with pytest.raises(RegionError) as caught:
            run(region)
        assert caught.value.extra["region_code"] == "crashed"
        assert "SIGXCPU (CPU time limit)" in caught.value.detail
        region.close()
    finally:
        provider.close()


def test_a_region_is_retired_at_half_its_cpu_budget(tmp_path):
    code = (
        "import time\nclass C:\n    def run(self):\n        end = time.process_time() + 1.2\n"
        "        while time.process_time() < end:\n            pass\n        return 'done'\n"
    )
    provider = ProcessProvider(os.urandom(32), timeout=20, limits=RegionLimits(cpu_seconds=2))
    try:
        region = ready(provider, make_package(tmp_path, "worker", code))
        assert run(region)["envelope"]["payload"] == "done"  # the call itself succeeds
        assert not region.alive  # but the region will not take another one
        region.close()
    finally:
        provider.close()


def test_fork_bomb_hits_the_process_limit_and_leaves_nothing_behind(tmp_path, provider):
    region = ready(
        provider,
        make_package(
            tmp_path, "bomb", "import os\nclass C:\n    def run(self):\n        while True:\n            os.fork()\n"
        ),
    )
    uid = region.uid
    with pytest.raises(RegionError) as caught:
        run(region)
    assert caught.value.extra["region_code"] == "process_limit"
    assert "process limit (16 processes and threads)" in caught.value.detail
    assert not region.alive
    region.close()
    if uid is not None:
        assert processes_of_uid(uid) == []


def test_processes_left_running_after_a_call_stop_the_region(tmp_path, provider):
    code = (
        "import os, time\nclass C:\n    def run(self):\n        if os.fork() == 0:\n"
        "            if os.fork() == 0:\n                while True:\n                    time.sleep(1)\n"
        "            os._exit(0)\n        os.wait()\n        return 'returned normally'\n"
    )
    region = ready(provider, make_package(tmp_path, "daemonizer", code))  # leaves an orphaned grandchild
    uid = region.uid
    with pytest.raises(RegionError) as caught:
        run(region)
    assert caught.value.extra["region_code"] == "stray_processes"
    region.close()
    if uid is not None:
        assert processes_of_uid(uid) == []


def test_memory_limit_is_a_clear_error_and_retires_the_region(tmp_path, provider):
    region = ready(
        provider,
        make_package(tmp_path, "greedy", "class C:\n    def run(self):\n        return len(bytearray(4 << 30))\n"),
    )
    with pytest.raises(RegionError) as caught:
        run(region)
    assert caught.value.extra["region_code"] == "out_of_memory"
    assert "ran out of memory (region limit 2048 MiB" in caught.value.detail
    assert not region.alive
    region.close()


def test_pool_replaces_a_region_that_died_while_idle(package, provider):
    digest = package_digest(package)
    started: list[ProcessRegion] = []

    def factory() -> ProcessRegion:
        region = provider.create_region(package, digest, domain=Domain())
        started.append(region)
        return region

    pool = RegionPool(factory, max_size=1)
    try:
        with pool.lease() as region:
            region.call("report")
        os.kill(started[0].pid, 9)  # dies while idle (as if the kernel killed it)
        wait_for(lambda: not started[0].alive, timeout=5, interval=0.01)
        with pool.lease() as region:
            assert region is not started[0] and region.call("report")["digest"]
        assert len(started) == 2 and not started[0].alive
    finally:
        pool.close()
