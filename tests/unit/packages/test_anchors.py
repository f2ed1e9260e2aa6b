"""Names are matched in full: a trailing newline is refused with a 400 naming the field, by every
regular expression in the code and every ``pattern`` of the JSON Schemas."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from shared.errors import InvalidInput, ManifestError
from shared.host.policy import validate_policy
from shared.ledger import kinds
from shared.packages.folders import PackageFolders
from shared.packages.manifest import validate_manifest
from shared.packages.names import check_name, is_name
from shared.schemas import SCHEMAS, compiled, ecma_pattern

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = json.loads((ROOT / "cryptlet_packages" / "customer_validator" / "cryptlet.json").read_text("utf-8"))


def test_ecma_dollar_is_the_end_of_the_string():
    assert ecma_pattern("^[a-z]+$") == r"^[a-z]+\Z"
    assert ecma_pattern(r"^a\$[$]b$") == r"^a\$[$]b\Z"  # escaped and in-class dollars are literal
    assert ecma_pattern(r"^(?!.*(^|/)\.\.(/|$))x$") == r"^(?!.*(^|/)\.\.(/|\Z))x\Z"
    assert compiled("^[a-z]+$").search("abc") and not compiled("^[a-z]+$").search("abc\n")


def test_cryptlet_names():
    assert is_name("customer_validator") and not is_name("customer_validator\n") and not is_name("x")
    with pytest.raises(InvalidInput) as caught:
        check_name("customer_validator\n")
    assert caught.value.status == 400 and caught.value.field == "name"


def test_package_references(tmp_path):
    folders = PackageFolders(tmp_path)
    for bad in ("customer_validator\n", ".uploads/" + "a" * 64 + "\n"):
        with pytest.raises(InvalidInput) as caught:
            folders.resolve(bad)
        assert caught.value.status == 400 and caught.value.field == "package"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("name",), "customer_validator\n"),
        (("version",), "1.0.0\n"),
        (("entry",), "validator:CustomerValidator\n"),
        (("interface", "methods", "validate", "inputs", 1, "type"), "bytes32\n"),
        (("interface", "methods", "validate", "inputs", 1, "name"), "salt\n"),
    ],
)
def test_manifest_patterns_refuse_a_trailing_newline(path, value):
    document = json.loads(json.dumps(MANIFEST))
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ManifestError) as caught:
        validate_manifest(document)
    expected = "$" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path)
    assert caught.value.status == 400 and caught.value.field == expected


def test_manifest_method_names_refuse_a_trailing_newline():
    document = json.loads(json.dumps(MANIFEST))
    methods = document["interface"]["methods"]
    methods["rules\n"] = methods.pop(next(iter(methods)))
    with pytest.raises(ManifestError):
        validate_manifest(document)


def registered_payload(**overrides):
    payload = {
        "name": "customer_validator",
        "version": "1.0.0",
        "kind": "utility",
        "address": "0x" + "11" * 20,
        "public_key": "0x04" + "22" * 64,
        "digest": "0x" + "33" * 32,
        "provider": "process",
        "package": "customer_validator",
        "manifest": {},
        "key": {"store": "TableKeyStore", "version": 1},
    }
    return {**payload, **overrides}


def test_ledger_payload_patterns_refuse_a_trailing_newline():
    kinds.validate_entry(kinds.REGISTERED, registered_payload())
    for field_name, value in (("name", "customer_validator\n"), ("digest", "0x" + "33" * 32 + "\n")):
        with pytest.raises(InvalidInput) as caught:
            kinds.validate_entry(kinds.REGISTERED, registered_payload(**{field_name: value}))
        assert caught.value.field == f"$.payload.{field_name}"


def test_ledger_entries_record_the_digest_algorithm():
    kinds.validate_entry(kinds.REGISTERED, registered_payload(digest_alg="cfpkg-v2"))
    assert kinds.digest_alg(registered_payload(digest_alg="cfpkg-v2")) == "cfpkg-v2"
    assert kinds.digest_alg(registered_payload()) == kinds.LEGACY_DIGEST_ALG == "cfpkg-v1"
    with pytest.raises(InvalidInput) as caught:
        kinds.validate_entry(kinds.REGISTERED, registered_payload(digest_alg="cfpkg-v3"))
    assert caught.value.field == "$.payload.digest_alg"


def test_policy_patterns_refuse_a_trailing_newline():
    validate_policy({"egress": ["api.example.com"]})
    with pytest.raises(InvalidInput) as caught:
        validate_policy({"egress": ["api.example.com\n"]})
    assert caught.value.status == 400 and caught.value.field.startswith("$.egress")


def test_every_schema_is_validated_with_ecma_anchors():
    """The schemas' validators come from shared.schemas.validator, none from jsonschema directly."""
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == [
        "cryptlet.schema.json",
        "ledger-entries.schema.json",
        "policy.schema.json",
    ]
    direct = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "shared").rglob("*.py")
        if "Draft202012Validator(" in path.read_text("utf-8") and path.parent != SCHEMAS
    ]
    assert not direct, direct


def _patterns(tree: ast.AST):
    """``(line, pattern, flags)`` of every ``re.compile/match/search/fullmatch`` with a literal pattern."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.func.attr in ("compile", "match", "search")
            and node.args
        ):
            first = node.args[0]
            text = first.value if isinstance(first, ast.Constant) else None
            if isinstance(first, ast.JoinedStr):  # an f-string: its literal tail decides
                tail = first.values[-1]
                text = tail.value if isinstance(tail, ast.Constant) else None
            flags = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            if isinstance(text, str | bytes):
                yield node.lineno, text, flags


def test_no_name_pattern_in_the_code_ends_in_a_bare_dollar():
    """``$`` lets a trailing newline through ``re.match``; ``\\Z`` (or ``fullmatch``) does not."""
    found = []
    for folder in ("shared", "functions", "cryptlet_cli"):
        for path in (ROOT / folder).rglob("*.py"):
            for line, pattern, flags in _patterns(ast.parse(path.read_text("utf-8"))):
                end = b"$" if isinstance(pattern, bytes) else "$"
                if pattern.endswith(end) and "re.M" not in flags and "MULTILINE" not in flags:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {pattern!r}")
    assert not found, found


def test_the_scaffold_refuses_a_trailing_newline():
    from cryptlet_cli.scaffold import NAME_PATTERN

    assert re.match(NAME_PATTERN, "my_cryptlet") and not re.match(NAME_PATTERN, "my_cryptlet\n")
