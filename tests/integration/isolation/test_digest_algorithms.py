"""Regions and the two package digest algorithms: a package registered under cfpkg-v1 still loads
and unseals its key; a package whose file names forge a v1 listing never loads."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from shared.envelope import Domain
from shared.errors import RegionError
from shared.packages.digest import DIGEST_V1, DIGEST_V2, measure, package_digest

SAMPLE = Path(__file__).resolve().parents[3] / "cryptlet_packages" / "customer_validator"


@pytest.fixture
def package(tmp_path) -> Path:
    target = tmp_path / "customer_validator"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_a_v1_registered_package_loads_and_unseals_its_key(package, provider):
    v1, v2 = package_digest(package, DIGEST_V1), package_digest(package, DIGEST_V2)
    assert v1 != v2
    region = provider.create_region(package, v1, domain=Domain())
    try:
        key = region.call("generate_key")
        assert region.call("report")["digest"] == "0x" + v1.hex() and region.digest == v1
    finally:
        region.close()
    again = provider.create_region(package, v1, domain=Domain())
    try:
        opened = again.call("unseal", address=key["address"], sealed_key=key["sealed_key"])
        assert opened["public_key"] == key["public_key"]
    finally:
        again.close()
    newer = provider.create_region(package, v2, domain=Domain())  # the v2 digest has another seal key
    try:
        with pytest.raises(RegionError):
            newer.call("unseal", address=key["address"], sealed_key=key["sealed_key"])
    finally:
        newer.close()


def test_a_changed_package_is_refused_under_either_algorithm(package, provider):
    digests = [package_digest(package, alg) for alg in (DIGEST_V1, DIGEST_V2)]
    (package / "validator.py").write_text((package / "validator.py").read_text() + "\n# changed\n")
    for digest in digests:
        with pytest.raises(RegionError) as caught:
            provider.create_region(package, digest, domain=Domain())
        assert caught.value.extra["region_code"] == "digest_mismatch"


def test_a_package_forging_a_v1_listing_never_loads(package, provider, tmp_path):
    """Package B: one file named "cryptlet.json\\n<sha256 of validator.py>  validator.py" holding A's
    manifest lists like A under v1, so it would have been given A's seal key."""
    a = measure(package)
    assert [p for p, _ in a.files] == ["cryptlet.json", "validator.py"]
    forged = tmp_path / "forged"
    forged.mkdir()
    name = "cryptlet.json\n" + hashlib.sha256((package / "validator.py").read_bytes()).hexdigest() + "  validator.py"
    (forged / name).write_bytes((package / "cryptlet.json").read_bytes())
    listing = f"{hashlib.sha256((package / 'cryptlet.json').read_bytes()).hexdigest()}  {name}\n"
    assert hashlib.sha256(listing.encode()).digest() == a.digest(DIGEST_V1)  # the v1 collision
    with pytest.raises(RegionError) as caught:
        provider.create_region(forged, a.digest(DIGEST_V1), domain=Domain())
    assert caught.value.extra["region_code"] == "package_rejected"
    assert "control character" in caught.value.detail
