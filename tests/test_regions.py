"""Process regions: measurement before load, sealing bound to the digest, contained failures."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shared import sealing
from shared.digest import package_digest, package_listing
from shared.envelope import Domain, Envelope, verify_envelope
from shared.errors import InvalidInput, RegionError, SealingError
from shared.isolation.process import ProcessProvider

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "cryptlet_packages" / "customer_validator"


@pytest.fixture
def package(tmp_path) -> Path:
    target = tmp_path / "customer_validator"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def provider() -> ProcessProvider:
    return ProcessProvider(os.urandom(32), timeout=10)


def test_digest_is_sha256_over_a_sha256sum_listing(package):
    import hashlib

    listing = package_listing(package).decode()
    assert listing.splitlines()[0].endswith("  cryptlet.json")
    assert package_digest(package) == hashlib.sha256(listing.encode()).digest()
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    assert package_digest(package) == hashlib.sha256(listing.encode()).digest()


def test_symlinks_are_refused(package):
    (package / "link.py").symlink_to(package / "validator.py")
    with pytest.raises(InvalidInput):
        package_digest(package)


def test_region_generates_key_and_signs(package, provider):
    region = provider.create_region(package, package_digest(package), domain=Domain(5))
    try:
        key = region.call("generate_key")
        region.call("bind", registration={"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32})
        result = region.call("invoke", method="rules", args={}, sequence=1, request_id="0x" + "00" * 32)
        envelope = Envelope.from_dict(result["envelope"])
        assert verify_envelope(envelope, key["address"]) == key["address"]
        assert envelope.domain.chain_id == 5
        with pytest.raises(RegionError) as caught:  # sequences must increase
            region.call("invoke", method="rules", args={}, sequence=1, request_id="0x" + "00" * 32)
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


def test_sealed_key_opens_only_for_the_same_digest_and_platform(package, provider):
    region = provider.create_region(package, package_digest(package), domain=Domain())
    try:
        key = region.call("generate_key")
    finally:
        region.close()
    import base64

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


def test_region_that_breaks_the_protocol_is_stopped(tmp_path, provider):
    package = tmp_path / "noisy"
    package.mkdir()
    (package / "cryptlet.json").write_text(
        '{"name":"noisy","version":"1.0.0","kind":"utility","runtime":"python","entry":"main:Noisy",'
        '"interface":{"methods":{"spam":{}}}}')
    (package / "main.py").write_text(
        "import os\nclass Noisy:\n    def spam(self):\n        os.write(int(os.environ.get('FD', '3')), b'garbage\\n')\n"
        "        print('printing is fine')\n        return 1\n")
    region = provider.create_region(package, package_digest(package), domain=Domain())
    try:
        region.call("generate_key")
        region.call("bind", registration={"stream": "r", "sequence": 1, "entry_hash": "0x" + "aa" * 32})
        # print() goes to stderr, so a plain print never corrupts the protocol stream
        with pytest.raises(RegionError):
            region.call("invoke", method="spam", args={}, sequence=1, request_id="0x" + "00" * 32)
    finally:
        region.close()


def test_hung_region_times_out_and_is_killed(tmp_path):
    package = tmp_path / "sleepy"
    package.mkdir()
    (package / "cryptlet.json").write_text(
        '{"name":"sleepy","version":"1.0.0","kind":"utility","runtime":"python","entry":"main:Sleepy",'
        '"interface":{"methods":{"nap":{}}}}')
    (package / "main.py").write_text("import time\nclass Sleepy:\n    def nap(self):\n        time.sleep(60)\n")
    provider = ProcessProvider(os.urandom(32), timeout=1.5)
    region = provider.create_region(package, package_digest(package), domain=Domain())
    region.call("generate_key")
    region.call("bind", registration={"stream": "r", "sequence": 1, "entry_hash": "0x" + "aa" * 32})
    with pytest.raises(RegionError) as caught:
        region.call("invoke", method="nap", args={}, sequence=1, request_id="0x" + "00" * 32)
    assert caught.value.extra["region_code"] == "timeout"
    assert not region.alive
    region.close()
