"""Author tools: `cryptlet init` (scaffold), `cryptlet simulate` (a real region, no storage) and
`cryptlet header` (Solidity interface + JSON ABI, compiled with the pinned solc-js)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cryptlet_cli.header import HeaderSource, interface_name, json_abi, library_name, solidity_header
from cryptlet_cli.simulate import SIMULATED_REGISTRATION
from shared.encoding import canonical_json, keccak256, to_hex
from shared.envelope import DOMAIN_TYPEHASH, ENVELOPE_TYPE, ENVELOPE_TYPEHASH, Envelope, verify_envelope
from shared.packages.digest import package_digest
from shared.packages.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[3]
CLI = Path(sys.executable).with_name("cryptlet")
SAMPLES = sorted(p for p in (ROOT / "cryptlet_packages").iterdir() if (p / "cryptlet.json").is_file())
BROKEN = ROOT / "tests" / "packages" / "broken_manifest"
CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}
SALT = "0x" + "5a" * 32


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The `cryptlet` command in a subprocess, with no host and no storage configured."""
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "CRYPTLET_URL")}
    return subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def solc(sources: dict[str, str]) -> dict[str, Any]:
    """Compile with solc-js (pinned in package.json) through tests/solc/compile.js."""
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "solc" / "compile.js")],
        input=json.dumps({"sources": sources}),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    output = json.loads(done.stdout)
    problems = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] in ("error", "warning")]
    assert not problems, "\n".join(problems)
    return output


def by_name(abi: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(abi, key=lambda item: (item["type"], item.get("name", "")))


SCAFFOLDS = [("utility", "python"), ("utility", "exec"), ("contract", "python"), ("contract", "exec")]


@pytest.fixture(scope="module", params=SCAFFOLDS, ids=lambda p: "-".join(p))
def scaffold_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    kind, runtime = request.param
    parent = tmp_path_factory.mktemp("scaffold")
    result = cli("init", "price_quote", "--kind", kind, "--runtime", runtime, "--dir", str(parent))
    assert result.returncode == 0, result.stderr
    return parent / "price_quote"


# -- cryptlet init -------------------------------------------------------------------------------
def test_init_scaffolds_a_valid_package(scaffold_dir):
    manifest = load_manifest(scaffold_dir)
    files = sorted(p.name for p in scaffold_dir.iterdir())
    if manifest.runtime == "python":
        assert (manifest.name, manifest.entry) == ("price_quote", "main:PriceQuoteCryptlet")
        assert files == ["cryptlet.json", "main.py", "pytest.ini", "test_price_quote.py"]
    else:
        assert (manifest.name, manifest.entry, manifest.interpreter) == ("price_quote", "main.js", "node")
        assert files == ["cryptlet.js", "cryptlet.json", "main.js", "pytest.ini", "test_price_quote.py"]
        assert (scaffold_dir / "cryptlet.js").read_bytes() == (
            ROOT / "cryptlet_sdk" / "js" / "cryptlet.js"
        ).read_bytes()
    assert list(manifest.events) == ["Greeted"]


def test_scaffold_simulates_with_positional_args(scaffold_dir):
    result = cli("simulate", str(scaffold_dir), "hello", "Ada")
    assert result.returncode == 0, result.stderr
    envelope = json.loads(result.stdout)
    contract = load_manifest(scaffold_dir).kind == "contract"
    result_payload = envelope["payload"]["result"] if contract else envelope["payload"]
    assert result_payload["greeting"] == "Hello, Ada!"
    assert [e["payload"] for e in envelope["events"]] == [{"name": "Ada"}]
    for document in (envelope, *envelope["events"]):
        assert verify_envelope(Envelope.from_dict(document)) == envelope["cryptlet"]
    if contract:
        assert envelope["state"] == {"greetings": 1}
        assert envelope["payload"]["state"]["hash"] == "0x" + keccak256(canonical_json({"greetings": 1})).hex()


def test_scaffold_own_test_passes_and_leaves_the_package_unchanged(scaffold_dir):
    digest = package_digest(scaffold_dir)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(scaffold_dir)],
        cwd=scaffold_dir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b2 passed\b", done.stdout), done.stdout
    assert package_digest(scaffold_dir) == digest  # no .pytest_cache; __pycache__ is not measured


def test_contract_simulation_runs_over_the_given_state(tmp_path):
    assert cli("init", "escrow_book", "--kind", "contract", "--dir", str(tmp_path)).returncode == 0
    result = cli("simulate", str(tmp_path / "escrow_book"), "hello", "name=B", "--state", '{"greetings": 41}')
    assert result.returncode == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["payload"]["result"] == {"greeting": "Hello, B!", "greetings": 42}
    assert envelope["state"] == {"greetings": 42}
    assert envelope["payload"]["state"]["previous"] == "0x" + keccak256(canonical_json({"greetings": 41})).hex()


def test_simulate_argument_errors_are_one_line(tmp_path):
    assert cli("init", "args_check", "--dir", str(tmp_path)).returncode == 0
    package = str(tmp_path / "args_check")
    one_line_error(cli("simulate", package, "hello", "a", "b"), "too many arguments")
    one_line_error(cli("simulate", package, "hello", "Ada", "--args", "{}"), "either as ARGS or as --args")
    one_line_error(cli("simulate", package, "hello", "--state", "{nope"), "--state is not valid JSON")
    one_line_error(cli("simulate", package, "wave", "x"), "has no method 'wave'")


def test_init_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "empty_one").mkdir()
    assert cli("init", "empty_one", "--dir", str(tmp_path)).returncode == 0
    assert (tmp_path / "empty_one" / "cryptlet.json").is_file()


def test_init_refuses_an_existing_non_empty_target(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    one_line_error(cli("init", "taken", "--dir", str(tmp_path)), "already exists")
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]
    (tmp_path / "afile").write_text("x")
    one_line_error(cli("init", "afile", "--dir", str(tmp_path)), "already exists")


@pytest.mark.parametrize("name", ["My", "x", "9lives", "has-dash", "dot.name", "a" * 64, "../escape", "_x"])
def test_init_refuses_invalid_names(tmp_path, name):
    one_line_error(cli("init", name, "--dir", str(tmp_path)), "invalid cryptlet name")
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_an_unknown_runtime(tmp_path):
    result = cli("init", "rusty", "--runtime", "wasm", "--dir", str(tmp_path))
    assert result.returncode != 0 and "wasm" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- cryptlet simulate ---------------------------------------------------------------------------
def test_simulate_customer_validator(tmp_path):
    out = tmp_path / "env.json"
    result = cli(
        "simulate",
        str(ROOT / "cryptlet_packages" / "customer_validator"),
        "validate",
        "--args",
        json.dumps({"customer": CUSTOMER, "salt": SALT}),
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    envelope = Envelope.from_dict(document)
    assert verify_envelope(envelope) == document["cryptlet"]
    assert document["payload"]["approved"] is True
    assert document["topic"] == "customer_validator.validate"
    assert document["digest"] == to_hex(package_digest(ROOT / "cryptlet_packages" / "customer_validator"))
    assert document["registration"] == SIMULATED_REGISTRATION
    assert envelope.registration_hash == b"\x00" * 32
    assert document["evidence"]["kind"] and len(document["evidence"]["hash"]) == 66


def test_simulations_use_fresh_keys():
    package = str(ROOT / "cryptlet_packages" / "customer_validator")
    first, second = (json.loads(cli("simulate", package, "rules").stdout) for _ in range(2))
    assert first["cryptlet"] != second["cryptlet"]


def test_simulated_envelope_is_refused_by_verify(tmp_path):
    out = tmp_path / "env.json"
    assert (
        cli("simulate", str(ROOT / "cryptlet_packages" / "customer_validator"), "rules", "-o", str(out)).returncode == 0
    )
    one_line_error(cli("verify", str(out)), "registration")


def test_simulate_unknown_method():
    one_line_error(
        cli("simulate", str(ROOT / "cryptlet_packages" / "customer_validator"), "steal"),
        "no method 'steal'",
        "field method",
    )


def test_simulate_bad_manifest():
    one_line_error(cli("simulate", str(BROKEN), "run"), "$.kind")


def test_simulate_missing_package(tmp_path):
    one_line_error(cli("simulate", str(tmp_path / "nothing"), "run"), "not a package folder")
    one_line_error(cli("simulate", str(tmp_path), "run"), "cryptlet.json")


def test_simulate_bad_args():
    package = str(ROOT / "cryptlet_packages" / "customer_validator")
    one_line_error(cli("simulate", package, "validate", "--args", "{nope"), "--args is not valid JSON")
    one_line_error(cli("simulate", package, "validate", "--args", "[1]"), "JSON object")
    one_line_error(
        cli("simulate", package, "validate", "--args", '{"wrong": 1}'), "unexpected keyword argument 'wrong'"
    )


# -- header export -------------------------------------------------------------------------------
def check_header(package: Path, tmp_path: Path) -> dict[str, Any]:
    """Generate both formats with the CLI, compile the Solidity, compare solc's ABI with ours."""
    sol, abi = tmp_path / f"{package.name}.sol", tmp_path / f"{package.name}.abi.json"
    for fmt, out in (("solidity", sol), ("abi", abi)):
        result = cli("header", str(package), "--format", fmt, "-o", str(out))
        assert result.returncode == 0, result.stderr
    name = load_manifest(package).name
    output = solc({sol.name: sol.read_text()})
    contracts = output["contracts"][sol.name]
    assert set(contracts) == {interface_name(name), library_name(name)}
    assert by_name(contracts[interface_name(name)]["abi"]) == by_name(json.loads(abi.read_text()))
    return {"source": sol.read_text(), "abi": json.loads(abi.read_text())}


@pytest.mark.parametrize("package", SAMPLES, ids=[p.name for p in SAMPLES])
def test_header_of_sample_packages_compiles(package, tmp_path):
    header = check_header(package, tmp_path)
    manifest = load_manifest(package)
    assert sorted(f["name"] for f in header["abi"]) == sorted([*manifest.methods, *manifest.events])
    for event in manifest.events:
        assert f"    event {event}(" in header["source"]
    assert f"bytes32 internal constant DIGEST = {to_hex(package_digest(package))};" in header["source"]
    assert f"bytes32 internal constant ENVELOPE_TYPEHASH = {to_hex(ENVELOPE_TYPEHASH)};" in header["source"]
    assert f'string internal constant ENVELOPE_TYPE = "{ENVELOPE_TYPE}";' in header["source"]
    assert f"bytes32 internal constant DOMAIN_TYPEHASH = {to_hex(DOMAIN_TYPEHASH)};" in header["source"]
    assert "address internal constant CRYPTLET" not in header["source"]  # unknown before registration


def test_header_of_customer_validator_types(tmp_path):
    abi = {f["name"]: f for f in check_header(ROOT / "cryptlet_packages" / "customer_validator", tmp_path)["abi"]}
    assert [(p["name"], p["type"]) for p in abi["validate"]["inputs"]] == [("customer", "string"), ("salt", "bytes32")]
    assert [p["type"] for p in abi["validate"]["outputs"]] == ["bool", "string[]", "bytes32", "string"]


def test_header_of_a_scaffold_compiles(scaffold_dir, tmp_path):
    header = check_header(scaffold_dir, tmp_path)
    assert "interface IPriceQuoteCryptlet {" in header["source"]
    assert "function hello(string calldata name) external returns (string memory greeting" in header["source"]
    assert "    event Greeted(string name);" in header["source"]
    assert [f["type"] for f in header["abi"] if f["name"] == "Greeted"] == ["event"]


def test_header_type_mapping_compiles(tmp_path):
    """Every kind of ABI type a manifest may use, compiled: solc agrees with our ABI."""
    types = [
        "uint",
        "int",
        "uint8",
        "int256",
        "uint64",
        "address",
        "bool",
        "bytes",
        "bytes1",
        "bytes32",
        "string",
        "json",
        "uint256[]",
        "address[3]",
        "string[]",
        "bytes32[][]",
        "bool[2][]",
    ]
    methods = {
        "all_types": {
            "inputs": [{"name": f"p{i}", "type": t} for i, t in enumerate(types)],
            "outputs": [{"name": f"r{i}", "type": t} for i, t in enumerate(types)],
        },
        "nothing": {},
    }
    source = HeaderSource(
        name="type_zoo", methods=methods, version="1.2.3", address="0x" + "ab" * 20, digest="0x" + "cd" * 32
    )
    text = solidity_header(source)
    assert "address internal constant CRYPTLET = 0x" in text
    output = solc({"zoo.sol": text})
    ours = json_abi(source)
    assert by_name(output["contracts"]["zoo.sol"]["ITypeZooCryptlet"]["abi"]) == by_name(ours)
    mapped = [p["type"] for p in next(f for f in ours if f["name"] == "all_types")["inputs"]]
    assert mapped[:2] == ["uint256", "int256"] and mapped[11] == "string"


def test_header_refuses_solidity_keywords_and_duplicates(tmp_path):
    package = tmp_path / "kw"
    package.mkdir()
    manifest = {
        "name": "kw_pkg",
        "version": "1.0.0",
        "kind": "utility",
        "runtime": "python",
        "entry": "main:C",
        "interface": {"methods": {"run": {"inputs": [{"name": "address", "type": "address"}]}}},
    }
    (package / "cryptlet.json").write_text(json.dumps(manifest))
    (package / "main.py").write_text("class C:\n    def run(self, address):\n        return address\n")
    one_line_error(cli("header", str(package)), "Solidity keyword", "$.interface.methods.run.inputs[0].name")
    manifest["interface"]["methods"]["run"] = {
        "inputs": [{"name": "a", "type": "uint8"}],
        "outputs": [{"name": "a", "type": "uint8"}],
    }
    (package / "cryptlet.json").write_text(json.dumps(manifest))
    one_line_error(cli("header", str(package)), "used twice")
    manifest["interface"]["methods"]["run"] = {"inputs": [{"name": "a", "type": "decimal"}]}
    (package / "cryptlet.json").write_text(json.dumps(manifest))
    one_line_error(cli("header", str(package), "--format", "abi"), "'decimal' is not an ABI type")


def test_header_bad_manifest_and_missing_folder(tmp_path):
    one_line_error(cli("header", str(BROKEN)), "$.kind")
    one_line_error(cli("header", str(tmp_path / "none") + "/"), "not a package folder")


def test_solc_is_the_pinned_version():
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["solc"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "solc must be pinned to an exact version"
    assert solc({"a.sol": "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\ninterface A {}\n"})[
        "solcVersion"
    ].startswith(pinned + "+")


# -- header of a registered cryptlet (from the fabric API) ---------------------------------------
def test_header_of_a_registered_cryptlet(fabric_host, registered, tmp_path):
    with fabric_host.client() as client:
        registration = client.get("/api/cryptlets/customer_validator").json()
    result = fabric_host.cli("header", "customer_validator", "--format", "solidity")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"address internal constant CRYPTLET = {registration['address']};" in text
    assert f"bytes32 internal constant DIGEST = {registration['digest']};" in text
    output = solc({"cv.sol": text})
    abi = fabric_host.cli("header", "customer_validator", "--format", "abi")
    assert abi.returncode == 0, abi.stderr
    assert by_name(output["contracts"]["cv.sol"]["ICustomerValidatorCryptlet"]["abi"]) == by_name(
        json.loads(abi.stdout)
    )
    assert by_name(json.loads(abi.stdout)) == by_name(
        json_abi(HeaderSource.from_package(ROOT / "cryptlet_packages" / "customer_validator"))
    )


def test_header_of_an_unknown_registered_name(fabric_host):
    result = fabric_host.cli("header", "no_such_cryptlet")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_shows_the_cryptlets_log_on_stderr(tmp_path):
    assert cli("init", "log_demo", "--dir", str(tmp_path)).returncode == 0
    main = tmp_path / "log_demo" / "main.py"
    main.write_text(
        main.read_text().replace(
            '        return {"greeting"',
            '        import fabric_host\n        fabric_host.log("greeting " + name)\n        return {"greeting"',
        )
    )
    result = cli("simulate", str(tmp_path / "log_demo"), "hello", "--args", '{"name": "Zoe"}')
    assert result.returncode == 0, result.stderr
    assert "cryptlet log_demo: greeting Zoe" in result.stderr
    assert json.loads(result.stdout)["payload"] == {"greeting": "Hello, Zoe!"}
