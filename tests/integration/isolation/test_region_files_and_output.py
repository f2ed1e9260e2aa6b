"""What a region can read and leave behind, and where what it prints goes (real region processes):

- the host's data folders (Azurite's, the uploads folder, ``.devdata``) are ``0700`` and a region
  reads nothing in them;
- a region's ``/tmp``, ``/var/tmp``, ``/dev/shm`` (and SysV IPC) are its own, size-limited, and gone
  when it exits: nothing is left for a later region of the same uid;
- what a region prints reaches the host log escaped, prefixed and rate-limited, and no longer goes
  to the host's stderr: a host log file over ``RLIMIT_FSIZE`` kills nothing;
- as a non-root user (``runuser -u nobody``) the same provider runs, with per-region ``TMPDIR``
  folders, a disk quota and the same log pipe.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import DEVDATA, Azurite, private_folder
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider
from shared.isolation.region_output import BURST, LINE_COST, RATE
from shared.isolation.zygote import kill_uid
from shared.packages.digest import package_digest
from shared.packages.folders import PackageFolders
from shared.packages.upload import extract_package
from shared.storage import table_client
from tests.helpers import wait_for
from tests.integration.isolation.test_regions import make_package, ready, run

ROOT = Path(__file__).resolve().parents[3]
AS_ROOT = os.geteuid() == 0
MARKER = "region-leftover-" + secrets.token_hex(6)

READER_CODE = """
import os

class C:
    def run(self, paths):
        seen = {}
        for path in paths:
            try:
                if os.path.isdir(path):
                    seen[path] = "listed: " + ",".join(sorted(os.listdir(path)))
                else:
                    with open(path, "rb") as handle:
                        seen[path] = "read: " + handle.read(4096).decode("utf-8", "replace")
            except OSError as exc:
                seen[path] = type(exc).__name__
        return seen
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A world-traversable folder outside /tmp (a region's /tmp hides the host's): only the data
    folders' own modes stand between a region and what is in them."""
    folder = Path(tempfile.mkdtemp(prefix=".test-private-", dir=ROOT))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def upload_zip(marker: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        manifest = {"name": "uploaded", "version": "1.0.0", "kind": "utility", "runtime": "python", "entry": "main:C"}
        archive.writestr("cryptlet.json", json.dumps({**manifest, "interface": {"methods": {"run": {}}}}))
        archive.writestr("main.py", f"SECRET = {marker!r}\nclass C:\n    def run(self):\n        return SECRET\n")
    return buffer.getvalue()


# -- the host's data folders ------------------------------------------------------------------------
def test_data_folders_are_private_and_regions_read_nothing_in_them(scratch, provider):
    # An Azurite data folder and an uploads folder made before they were private: world-readable.
    data = scratch / "azurite"
    data.mkdir(mode=0o755)
    (data / "old.json").write_text(MARKER)
    os.chmod(data / "old.json", 0o644)
    uploads = scratch / "packages" / ".uploads"
    uploads.mkdir(parents=True, mode=0o755)
    os.chmod(uploads, 0o755)
    PackageFolders(scratch / "packages", uploads)  # a host starting: tightens the uploads folder
    assert mode(uploads) == 0o700
    folder, _ = extract_package(upload_zip(MARKER), uploads, 1 << 20, package_digest)
    with Azurite(data) as azurite:  # tightened, and what Azurite writes is the host user's only
        assert mode(data) == 0o700
        table = table_client(azurite.connection_string, "privatecheck")
        table.create_entity({"PartitionKey": "p", "RowKey": "r", "secret": MARKER})
        files = [p for p in data.rglob("*") if p.is_file()]
        assert any(MARKER in p.read_text(errors="replace") for p in files)  # the row is on disk
        assert all(mode(p) & 0o077 == 0 for p in files if p.name != "old.json"), [(p, oct(mode(p))) for p in files]
        targets = [str(data), str(uploads), str(folder), str(folder / "main.py"), *map(str, files)]
        region = ready(provider, make_package(scratch, "reader", READER_CODE))
        try:
            seen = run(region, paths=targets)["envelope"]["payload"]
        finally:
            region.close()
    if AS_ROOT:  # a region runs as its own uid: nothing readable (same-uid regions: docs/isolation.md)
        assert set(seen.values()) == {"PermissionError"}, seen
        assert MARKER not in json.dumps(seen)


def test_the_devdata_folder_is_tightened_with_azurites_data_folder():
    probe = DEVDATA / f"test-{secrets.token_hex(4)}"
    try:
        private_folder(probe)
        assert mode(probe) == 0o700 and mode(DEVDATA) == 0o700 and probe.stat().st_uid == os.geteuid()
    finally:
        shutil.rmtree(probe, ignore_errors=True)


# -- scratch folders --------------------------------------------------------------------------------
LEAVER_CODE = """
import ctypes, os

class C:
    def run(self, marker):
        written = {}
        for folder in ("/tmp", "/var/tmp", "/dev/shm", os.environ["TMPDIR"], os.environ["HOME"]):
            path = os.path.join(folder, marker)
            try:
                with open(path, "w") as handle:
                    handle.write(marker)
                os.chmod(path, 0o644)
                written[folder] = path
            except OSError as exc:
                written[folder] = type(exc).__name__
        libc = ctypes.CDLL(None, use_errno=True)
        shm = libc.shmget(0x6C0FFEE, 4096, 0o1644)  # IPC_CREAT | 0644: a SysV segment outlives its creator
        return {"written": written, "shm": shm, "uid": os.getuid(), "tmpdir": os.environ["TMPDIR"]}
"""

LOOKER_CODE = """
import ctypes, os

class C:
    def run(self, paths):
        found = {path: os.path.exists(path) for path in paths}
        listed = {folder: sorted(os.listdir(folder)) for folder in ("/tmp", "/var/tmp", "/dev/shm")}
        libc = ctypes.CDLL(None, use_errno=True)
        quota = {}
        for name in ("a", "b"):  # two files under the 64 MiB file-size limit: the second overflows /tmp
            try:
                with open(os.path.join(os.environ["TMPDIR"], name), "wb") as handle:
                    for _ in range(40):
                        handle.write(b"q" * (1 << 20))
                quota[name] = "written"
            except OSError as exc:
                quota[name] = os.strerror(exc.errno)
        return {"found": found, "listed": listed, "shm": libc.shmget(0x6C0FFEE, 0, 0), "quota": quota}
"""


def files_of_uid(uid: int, roots: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm")) -> list[str]:
    """Everything ``uid`` owns directly in ``roots`` (or anywhere named like the marker)."""
    found = []
    for root in roots:
        for entry in os.scandir(root):
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid or MARKER in entry.name:
                    found.append(entry.path)
            except OSError:
                continue
    return found


def as_uid(uid: int, paths: list[str]) -> dict[str, str]:
    """What a process of ``uid`` (a later region's uid) can see at ``paths`` on the host."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            seen = {}
            for path in paths:
                try:
                    seen[path] = Path(path).read_text()
                except OSError as exc:
                    seen[path] = type(exc).__name__
            os.write(write, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return seen


def test_what_a_region_leaves_in_scratch_folders_dies_with_it(tmp_path, provider):
    isolation = provider.isolation()
    leaver = ready(provider, make_package(tmp_path, "leaver", LEAVER_CODE))
    workdir, uid = leaver.workdir, leaver.uid
    try:
        left = run(leaver, marker=MARKER)["envelope"]["payload"]
    finally:
        leaver.close()
    assert all(p.startswith("/") for p in left["written"].values()), left  # it could write everywhere it may
    paths = sorted(set(left["written"].values()))
    assert not Path(workdir).exists()
    if isolation["private_tmp"]:
        assert left["tmpdir"] == "/tmp"
        assert left["shm"] >= 0  # its own IPC namespace: gone with it
    else:  # pragma: no cover - CI runs as root
        assert left["tmpdir"] == os.path.join(workdir, "tmp")
    if AS_ROOT:
        assert files_of_uid(uid) == []  # nothing on the host is the leaver's
        assert not any(os.path.lexists(p) for p in paths)  # gone for every user on the host
        assert set(as_uid(uid, paths).values()) <= {"FileNotFoundError", "PermissionError"}  # a later holder
    looker = ready(provider, make_package(tmp_path, "looker", LOOKER_CODE))
    try:
        seen = run(looker, paths=paths)["envelope"]["payload"]
    finally:
        looker.close()
    assert not any(seen["found"].values()), seen["found"]
    assert not any(MARKER in name for names in seen["listed"].values() for name in names)
    if isolation["private_tmp"]:
        assert seen["shm"] == -1  # the leaver's SysV segment is not there
        assert seen["quota"] == {"a": "written", "b": "No space left on device"}  # /tmp holds 64 MiB
        assert all(not names or names == [Path(workdir).parent.name] for names in seen["listed"].values()), seen


def test_files_of_a_region_uid_are_removed_from_shared_scratch_folders_without_a_mount_namespace():
    """The fallback of a root host without mount namespaces: the zygote removes, as the region's uid,
    what that uid owns in the shared scratch folders, even behind a folder it made unreadable."""
    if not AS_ROOT:
        pytest.skip("needs root (a region uid)")
    uid = 0x6B000000 + secrets.randbelow(1 << 16)  # outside the region range: no live region has it
    root = Path(tempfile.mkdtemp(prefix="scratch-"))
    try:
        os.chmod(root, 0o1777)
        shared = root / "shared"  # someone else's world-writable folder
        shared.mkdir(mode=0o777)
        os.chmod(shared, 0o1777)
        theirs = root / "theirs.txt"
        theirs.write_text("stays")
        for path in (root / "left.txt", shared / "left.txt", root / "hidden" / "deep" / "left.txt"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(MARKER)
        for path in (root / "left.txt", shared / "left.txt", root / "hidden", root / "hidden" / "deep"):
            os.chown(path, uid, uid)
        os.chown(root / "hidden" / "deep" / "left.txt", uid, uid)
        os.chmod(root / "hidden", 0o000)  # it took its own permissions away
        kill_uid(uid, remove_from=[str(root)])
        assert sorted(p.name for p in root.rglob("*")) == ["shared", "theirs.txt"]
        assert theirs.read_text() == "stays"
    finally:
        shutil.rmtree(root, ignore_errors=True)


CHECKOUT_CODE = """
import os

class C:
    def run(self, marker):
        import shared.ledger.merkle as module  # not preloaded: imported from the checkout now
        checkout = os.path.dirname(os.path.dirname(os.path.dirname(module.__file__)))
        outcome = {"module": module.__file__, "parent": sorted(os.listdir(os.path.join(checkout, "..")))}
        targets = {"in_checkout": os.path.join(checkout, marker), "beside": os.path.join(checkout, "..", marker)}
        for name, path in targets.items():
            try:
                with open(path, "w") as handle:
                    handle.write(marker)
                outcome[name] = "written"
            except OSError as exc:
                outcome[name] = type(exc).__name__
        return outcome
"""

CHECKOUT_SCRIPT = """
import json, os, sys
checkout, package = sys.argv[1], sys.argv[2]
sys.path.insert(0, checkout)
from pathlib import Path
from shared.envelope import Domain
from shared.isolation.process import ProcessProvider
from shared.packages.digest import package_digest

provider = ProcessProvider(os.urandom(32))
region = provider.create_region(Path(package), package_digest(Path(package)), domain=Domain())
region.call("generate_key")
region.call("bind", registration={"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32})
args = {"marker": sys.argv[3]}
reply = region.call("invoke", method="run", args=args, sequence=1, request_id="0x" + "00" * 32)
region.close()
provider.close()
print(json.dumps({"zygote": sys.modules["shared.isolation.zygote"].__file__, **reply["envelope"]["payload"]}))
"""


def test_a_checkout_under_tmp_stays_importable_and_the_hosts_tmp_stays_hidden(tmp_path, provider):
    """A fabric checked out under /tmp: its import paths come back read-only at their paths inside the
    region's own /tmp, and ``..`` from them leads into that tmpfs, not to the host's /tmp."""
    if not provider.isolation()["private_tmp"]:
        pytest.skip("regions here have no mount namespace")
    checkout = Path(tempfile.mkdtemp(prefix="checkout-"))
    visible = Path(tempfile.mkdtemp(prefix=f"{MARKER}-host-"))  # something of the host's in /tmp
    try:
        os.chmod(checkout, 0o755)
        shutil.copytree(ROOT / "shared", checkout / "shared", ignore=shutil.ignore_patterns("__pycache__"))
        package = make_package(tmp_path, "checkout_probe", CHECKOUT_CODE)
        marker = f"{MARKER}-written"
        done = subprocess.run(
            [sys.executable, "-c", CHECKOUT_SCRIPT, str(checkout), str(package), marker],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["zygote"].startswith(str(checkout)) and seen["module"].startswith(str(checkout))
        assert visible.name not in seen["parent"] and checkout.name in seen["parent"]
        assert seen["in_checkout"] in ("OSError", "PermissionError")  # read-only (EROFS), or not its own
        assert seen["beside"] == "written"  # into its own /tmp ...
        assert not (checkout.parent / marker).exists() and not (checkout / marker).exists()  # ... not the host's
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
        shutil.rmtree(visible, ignore_errors=True)


# -- what regions print -----------------------------------------------------------------------------
FORGER_CODE = r"""
import sys, fabric_host

class C:
    def run(self):
        sys.stdout.write("2026-01-01 00:00:00,000 INFO fabric: forged one\n")
        sys.stderr.write("visible\r2026-01-01 00:00:00,000 INFO fabric: forged two\x1b[2K\x1b[1A done\n")
        sys.stderr.flush()
        fabric_host.log("note\n2026-01-01 00:00:00,000 INFO fabric: forged three\x1b[0m")
        return "ok"
"""


def region_records(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fabric.region" and needle in r.getMessage()]


def test_what_a_region_prints_is_logged_escaped_and_prefixed(tmp_path, provider, caplog):
    region = ready(provider, make_package(tmp_path, "forger", FORGER_CODE), call_out=HostCallOuts("forger"))
    pid = region.pid
    with caplog.at_level(logging.INFO, logger="fabric.region"):
        try:
            assert run(region)["envelope"]["payload"] == "ok"
        finally:
            region.close()
        lines = wait_for(lambda: len(region_records(caplog, "forged")) == 3 and region_records(caplog, "forged"))
    assert lines == [
        f"cryptlet forger[{pid}]: 2026-01-01 00:00:00,000 INFO fabric: forged one",
        f"cryptlet forger[{pid}]: visible\\x0d2026-01-01 00:00:00,000 INFO fabric: forged two\\x1b[2K\\x1b[1A done",
        "cryptlet forger: note\\x0a2026-01-01 00:00:00,000 INFO fabric: forged three\\x1b[0m",
    ]


def test_a_provider_reads_its_regions_again_after_close(tmp_path, caplog):
    """``close`` stops the reader thread with the zygote; the next region starts both again."""
    package = make_package(tmp_path, "again", "class C:\n    def run(self):\n        print('again here')\n")
    provider = ProcessProvider(os.urandom(32))
    try:
        with caplog.at_level(logging.INFO, logger="fabric.region"):
            for _ in range(2):
                region = ready(provider, package)
                run(region)
                region.close()
                provider.close()
        assert len(region_records(caplog, "]: again here")) == 2
    finally:
        provider.close()


SPEW_CODE = """
import sys

class C:
    def run(self, mib):
        line = "spew " + "x" * 1018 + "\\n"  # 1 KiB a line
        for _ in range(mib * 1024):
            sys.stderr.write(line)
        sys.stderr.flush()
        return mib
"""


def test_a_region_printing_100_mib_is_cut_to_the_rate_and_others_keep_working(tmp_path, caplog):
    provider = ProcessProvider(os.urandom(32), timeout=60)
    try:
        spewer = ready(provider, make_package(tmp_path, "spewer", SPEW_CODE), call_out=HostCallOuts("spewer"))
        other = ready(provider, make_package(tmp_path, "quiet", "class C:\n    def run(self):\n        return 1\n"))
        outcome: dict[str, object] = {}
        with caplog.at_level(logging.INFO, logger="fabric.region"):
            start = time.monotonic()
            spewing = threading.Thread(target=lambda: outcome.update(mib=run(spewer, mib=100)["envelope"]["payload"]))
            spewing.start()
            served = 0
            while spewing.is_alive():
                assert run(other, sequence=served + 1)["envelope"]["payload"] == 1
                served += 1
                time.sleep(0.01)
            spewing.join()
            elapsed = time.monotonic() - start
            spewer.close()
            notices = wait_for(lambda: region_records(caplog, "of its output dropped"))
        other.close()
    finally:
        provider.close()
    assert outcome["mib"] == 100 and served >= 1
    logged = sum("spew " in m for m in region_records(caplog, "spewer["))
    assert 0 < logged * (1023 + LINE_COST) <= BURST + RATE * (elapsed + 1)  # 100 MiB printed; the rate logged
    dropped = sum(int(m.split(", ")[1].split(" bytes")[0]) for m in notices)
    assert dropped + logged * 1024 == 100 << 20  # every line logged or counted


FULL_LOG_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
from shared.envelope import Domain
from shared.isolation.process import ProcessProvider
from shared.packages.digest import package_digest
from pathlib import Path

package = Path({package!r})
provider = ProcessProvider(os.urandom(32))
region = provider.create_region(package, package_digest(package), domain=Domain())
region.call("generate_key")
region.call("bind", registration={{"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32}})
reply = region.call("invoke", method="run", args={{}}, sequence=1, request_id="0x" + "00" * 32)
region.close()
provider.close()
print(json.dumps(reply["envelope"]["payload"]))
"""


def test_a_host_log_file_over_the_file_size_limit_kills_no_region(tmp_path):
    """Before: regions wrote to the host's stderr under RLIMIT_FSIZE (64 MiB), so once the dev host's
    log file had grown past it, every cryptlet that printed died with SIGXFSZ / exit 71."""
    package = make_package(
        tmp_path, "printer", "class C:\n    def run(self):\n        print('hello from a region')\n        return 'ok'\n"
    )
    log = tmp_path / "host.log"
    with open(log, "wb") as handle:
        handle.truncate(65 << 20)  # sparse: a host log already past the regions' file-size limit
    script = FULL_LOG_SCRIPT.format(root=str(ROOT), package=str(package))
    with open(log, "ab") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120
        )
    assert done.returncode == 0, log.read_bytes()[65 << 20 :].decode(errors="replace")
    assert json.loads(done.stdout.strip().splitlines()[-1]) == "ok"


# -- as a user that is not root ---------------------------------------------------------------------
NOBODY_CODE = r"""
import os, sys

class C:
    def run(self):
        tmp = os.environ["TMPDIR"]
        with open(os.path.join(tmp, "left"), "w") as handle:
            handle.write("x")
        print("forged\x1b[31m\rINFO fabric: forged by nobody")
        sys.stdout.flush()
        return {"tmpdir": tmp, "mode": oct(os.stat(tmp).st_mode & 0o777), "home": os.environ["HOME"]}

    def fill(self):
        for n in range(3):
            with open(os.path.join(os.environ["TMPDIR"], f"fill{n}"), "wb") as handle:
                handle.write(b"f" * (1 << 20))
        return "filled"
"""

NOBODY_SCRIPT = """
import json, logging, os, sys, tempfile
from pathlib import Path
from devhost.azurite import private_folder
from shared.envelope import Domain
from shared.errors import RegionError
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider
from shared.isolation.sandbox import RegionLimits
from shared.packages.digest import package_digest
from shared.packages.upload import extract_package

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
package, zip_hex = Path(sys.argv[1]), sys.argv[2]
work = Path(tempfile.mkdtemp())
data = private_folder(work / "data" / "azurite")
uploads = work / "packages" / ".uploads"
extract_package(bytes.fromhex(zip_hex), uploads, 1 << 20, package_digest)
report = {"modes": {"azurite": oct(data.stat().st_mode & 0o777), "uploads": oct(uploads.stat().st_mode & 0o777)}}
provider = ProcessProvider(os.urandom(32), limits=RegionLimits(scratch_bytes=2 << 20))
report["isolation"] = provider.isolation()


def region_calling(method):
    region = provider.create_region(
        package, package_digest(package), domain=Domain(), call_out=HostCallOuts("nobody_probe")
    )
    region.call("generate_key")
    region.call("bind", registration={"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32})
    try:
        return region.call("invoke", method=method, args={}, sequence=1, request_id="0x" + "00" * 32)
    except RegionError as exc:
        return {"region_code": exc.extra["region_code"]}
    finally:
        region.close()


report["run"] = region_calling("run")["envelope"]["payload"]
report["tmpdir_left"] = os.path.exists(report["run"]["tmpdir"])
report["fill"] = region_calling("fill").get("region_code", "allowed")
provider.close()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def nobody_python() -> Iterator[Path]:
    """A Python that the user ``nobody`` can run with this project's packages: a venv of the system's
    Python 3 of the same minor version, pointing at .venv's site-packages (the interpreter itself may
    live under a home only root can enter)."""
    if not AS_ROOT or not shutil.which("runuser"):
        pytest.skip("needs root and runuser to run a user that is not root")
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"no {system} for the user nobody")
    home = Path(tempfile.mkdtemp(prefix="nobody-venv-"))
    os.chmod(home, 0o755)
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(home / "venv")], check=True, timeout=120)
    site = next((home / "venv" / "lib").glob("python3*/site-packages"))
    project_site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    (site / "cryptlet_fabric.pth").write_text(f"import site; site.addsitedir({str(project_site)!r})\n")
    yield home / "venv" / "bin" / "python"
    shutil.rmtree(home, ignore_errors=True)


def test_as_a_user_that_is_not_root(nobody_python):
    package = make_package(nobody_python.parents[2], "nobody_probe", NOBODY_CODE, ("run", "fill"))
    done = subprocess.run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            str(nobody_python),
            "-c",
            NOBODY_SCRIPT,
            str(package),
            upload_zip(MARKER).hex(),
        ],
        cwd="/",
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modes"] == {"azurite": "0o700", "uploads": "0o700"}
    assert report["isolation"]["uid_isolation"] is False and report["isolation"]["private_tmp"] is False
    ran = report["run"]
    assert ran["tmpdir"] == os.path.join(ran["home"], "tmp") and ran["mode"] == "0o700"
    assert report["tmpdir_left"] is False  # removed with the region
    assert report["fill"] == "disk_quota"  # 3 MiB in a 2 MiB quota: stopped after the call
    forged = [line for line in done.stderr.splitlines() if "forged by nobody" in line]
    assert len(forged) == 1 and forged[0].startswith("INFO fabric.region: cryptlet nobody_probe[")
    assert "forged\\x1b[31m\\x0dINFO fabric: forged by nobody" in forged[0]
