"""The package measurement: the cfpkg-v2 encoding against the published vectors, the v1 collision it
removes, v1 kept for older registrations, and the file names a package may not hold."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from shared.errors import InvalidInput
from shared.packages.digest import (
    DIGEST_ALG,
    DIGEST_V1,
    DIGEST_V2,
    Measurement,
    check_alg,
    measure,
    package_digest,
    package_listing,
)
from shared.packages.names import MAX_COMPONENT_BYTES, PackageRejected, check_path
from shared.packages.upload import check_archive

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "package-digest.json").read_text("utf-8"))


def write_package(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = root.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
    return root


def measurement_of(files: dict[str, str]) -> Measurement:
    """A measurement built from file contents directly (names are not checked here)."""
    ordered = sorted(files, key=lambda p: p.encode("utf-8"))
    return Measurement(tuple((p, hashlib.sha256(files[p].encode("utf-8")).digest()) for p in ordered))


def test_new_registrations_use_v2():
    assert DIGEST_ALG == DIGEST_V2 == "cfpkg-v2"


@pytest.mark.parametrize("vector", VECTORS, ids=[v["label"][:40] for v in VECTORS])
def test_encodings_match_the_published_vectors(vector):
    m = measurement_of(vector["files"])
    assert m.encoding(DIGEST_V2).hex() == vector["cfpkg-v2"]["encoding"]
    assert "0x" + m.digest(DIGEST_V2).hex() == vector["cfpkg-v2"]["digest"]
    assert m.encoding(DIGEST_V1).decode("utf-8") == vector["cfpkg-v1"]["listing"]
    assert "0x" + m.digest(DIGEST_V1).hex() == vector["cfpkg-v1"]["digest"]


def test_a_package_folder_measures_the_first_vector(tmp_path):
    vector = VECTORS[0]
    package = write_package(tmp_path / "pkg", vector["files"])
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "util.pyc").write_bytes(b"not measured")
    assert "0x" + package_digest(package).hex() == vector["cfpkg-v2"]["digest"]
    assert "0x" + package_digest(package, DIGEST_V1).hex() == vector["cfpkg-v1"]["digest"]
    assert package_listing(package).decode("utf-8") == vector["cfpkg-v1"]["listing"]


def test_the_protocol_document_publishes_the_vector():
    text = (Path(__file__).resolve().parents[3] / "docs" / "container-protocol.md").read_text("utf-8")
    assert VECTORS[0]["cfpkg-v2"]["digest"] in text and VECTORS[0]["cfpkg-v1"]["digest"] in text
    encoding = VECTORS[0]["cfpkg-v2"]["encoding"]
    block = text.split("encoding   ", 1)[1].split("cfpkg-v2   ", 1)[0]
    assert "".join(block.split()) == encoding


def test_the_v1_collision_gets_two_v2_digests():
    """Package A {x, y} and package B with one file "x\\n<sha256(y)>  y" list alike under v1."""
    a, b = (measurement_of(VECTORS[i]["files"]) for i in (1, 2))
    assert a.encoding(DIGEST_V1) == b.encoding(DIGEST_V1)
    assert a.digest(DIGEST_V1) == b.digest(DIGEST_V1)
    assert a.digest(DIGEST_V2) != b.digest(DIGEST_V2)


def test_the_newline_file_is_refused_when_measured(tmp_path):
    name = next(iter(VECTORS[2]["files"]))
    package = tmp_path / "b"
    package.mkdir()
    (package / name).write_text("1")
    with pytest.raises(PackageRejected) as caught:
        measure(package)
    problem = caught.value.problem()
    assert problem["status"] == 400 and problem["field"] == "package"
    assert problem["reason"] == "bad_name" and problem["entry"] == name


def test_a_v2_encoding_is_never_a_v1_listing():
    """v1 listings start with 64 hex digits; v2 with "cfp": a digest names its algorithm too."""
    v2 = measurement_of({"a": "1"}).encoding(DIGEST_V2)
    assert not all(chr(c) in "0123456789abcdef" for c in v2[:3])
    assert measurement_of({}).encoding(DIGEST_V2) == b"cfpkg-v2\x00\x00\x00\x00\x00"


def test_a_v1_registered_package_is_recognised_by_its_v1_digest(tmp_path):
    package = write_package(tmp_path / "pkg", VECTORS[0]["files"])
    m = measure(package)
    assert m.algorithm_of(m.digest(DIGEST_V1)) == DIGEST_V1
    assert m.algorithm_of(m.digest(DIGEST_V2)) == DIGEST_V2
    assert m.algorithm_of(bytes(32)) is None


def test_unknown_algorithms_are_refused():
    assert check_alg("cfpkg-v1") == "cfpkg-v1"
    for bad in ("cfpkg-v3", "", None, "cfpkg-v2\n"):
        with pytest.raises(InvalidInput) as caught:
            check_alg(bad)
        assert caught.value.field == "digest_alg"
    with pytest.raises(InvalidInput):
        measurement_of({}).digest("sha256sum")


@pytest.mark.parametrize(
    "path",
    [
        "a\nb",
        "a\rb",
        "nul\x00",
        "tab\there",
        "del\x7f",
        "c1\x85",
        "bidi\u202e.py",
        "line\u2028sep",
        "nbsp\u00a0",
        "back\\slash",
        " lead",
        "trail ",
        "dir /x",
        "a//b",
        "./a",
        "a/../b",
        "x" * (MAX_COMPONENT_BYTES + 1),
        "/".join(["d" * 200] * 6),
    ],
)
def test_names_outside_the_portable_set_are_refused(path):
    with pytest.raises(PackageRejected) as caught:
        check_path(path)
    assert caught.value.extra["reason"] in ("bad_name", "name_too_long")
    assert caught.value.field == "package" and caught.value.extra["entry"]


@pytest.mark.parametrize(
    "path", ["cryptlet.json", "main.py", "data/sp500_daily.csv", "README.md", "a b.txt", "données.csv", "x-y_z.1"]
)
def test_names_the_samples_use_are_accepted(path):
    check_path(path)


def test_every_sample_package_measures(tmp_path):
    samples = Path(__file__).resolve().parents[3] / "cryptlet_packages"
    for package in sorted(p for p in samples.iterdir() if (p / "cryptlet.json").is_file()):
        assert len(package_digest(package)) == 32


def zipped(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in (("cryptlet.json", b"{}"), *members):
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (next(iter(VECTORS[2]["files"])), "bad_name"),
        ("evil\r.py", "bad_name"),
        ("trailing .py ", "bad_name"),
        ("x" * 300 + ".py", "name_too_long"),
        ("/".join(["d" * 250] * 5) + "/f.py", "name_too_long"),
    ],
)
def test_uploads_with_such_names_are_refused_naming_the_entry(name, reason):
    with pytest.raises(PackageRejected) as caught:
        check_archive(zipped((name, b"1")), 1 << 20)
    problem = caught.value.problem()
    assert (problem["status"], problem["reason"], problem["field"]) == (400, reason, "package")
    assert problem["entry"].startswith(name[:50])
