"""Header export: a cryptlet's interface as a Solidity header file and a JSON ABI (the paper's
"header file" a contract developer compiles against).

The Solidity header holds ``interface I<CamelName>Cryptlet`` with one ``external`` function per
manifest method (parameters and returns with their ABI types) and one ``event`` per manifest
event (``indexed`` as declared; the fabric signs each emitted event as an envelope with topic
``<name>.<Event>``), and ``library <CamelName>Cryptlet``
with constants: the cryptlet's name, version and package digest (when known), its signing address
(registered cryptlets only), and the EIP-712 type strings and type hashes of the envelope and its
domain (:mod:`shared.envelope`), so a contract can verify envelopes with ``ecrecover``.

Type mapping: every ABI elementary type (``uint<M>``, ``int<M>``, ``address``, ``bool``,
``bytes<M>``, ``bytes``, ``string``) and arrays of them (``T[]``, ``T[k]``) map to themselves
(``uint``/``int`` are written as ``uint256``/``int256``); the manifest type ``json`` maps to
``string`` (the JSON text, UTF-8). Dynamic types are ``calldata`` parameters and ``memory`` returns.
The JSON ABI is what solc emits for the interface (``internalType`` included).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.encoding import from_hex, to_hex
from shared.envelope import (
    DOMAIN_NAME,
    DOMAIN_TYPE,
    DOMAIN_TYPEHASH,
    DOMAIN_VERSION,
    ENVELOPE_TYPE,
    ENVELOPE_TYPEHASH,
    to_checksum_address,
)
from shared.errors import InvalidInput
from shared.packages.digest import DIGEST_ALG, check_alg, package_digest
from shared.packages.manifest import load_manifest
from shared.packages.names import is_name

FORMATS = ("solidity", "abi")
SOLIDITY_PRAGMA = "^0.8.4"
#: Manifest types that are not ABI types, and the ABI type each is written as.
TYPE_ALIASES = {"json": "string", "uint": "uint256", "int": "int256"}

# ``\Z``, not ``$``: a trailing newline is no part of a name, version or type
_ELEMENTARY = re.compile(r"(?:u?int(?P<bits>[0-9]*)|address|bool|string|bytes(?P<size>[0-9]*))\Z")
_VERSION = re.compile(r"([0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?)?\Z")
_ARRAY = re.compile(r"\[(?P<len>[0-9]*)\]\Z")
#: Solidity keywords and reserved words that cannot name a function or parameter.
SOLIDITY_RESERVED = frozenset(
    [
        "abstract",
        "after",
        "alias",
        "anonymous",
        "apply",
        "assembly",
        "auto",
        "break",
        "byte",
        "calldata",
        "case",
        "catch",
        "constant",
        "constructor",
        "continue",
        "contract",
        "copyof",
        "default",
        "define",
        "delete",
        "do",
        "else",
        "emit",
        "enum",
        "error",
        "event",
        "external",
        "fallback",
        "false",
        "final",
        "for",
        "function",
        "global",
        "if",
        "immutable",
        "implements",
        "import",
        "in",
        "indexed",
        "inline",
        "interface",
        "internal",
        "is",
        "let",
        "library",
        "macro",
        "mapping",
        "match",
        "memory",
        "modifier",
        "mutable",
        "new",
        "null",
        "of",
        "override",
        "partial",
        "payable",
        "pragma",
        "private",
        "promise",
        "public",
        "pure",
        "receive",
        "reference",
        "relocatable",
        "return",
        "returns",
        "revert",
        "sealed",
        "sizeof",
        "static",
        "storage",
        "struct",
        "super",
        "supports",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "type",
        "typedef",
        "typeof",
        "unchecked",
        "unicode",
        "using",
        "var",
        "view",
        "virtual",
        "while",
        "wei",
        "gwei",
        "ether",
        "seconds",
        "minutes",
        "hours",
        "days",
        "weeks",
        "years",
        "address",
        "bool",
        "string",
        "bytes",
        "int",
        "uint",
        "fixed",
        "ufixed",
    ]
)


@dataclass(frozen=True)
class HeaderSource:
    """What a header is generated from: a package's manifest, or a registration from the API."""

    name: str
    methods: dict[str, dict[str, Any]]
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: str = ""
    kind: str = ""
    description: str = ""
    digest: str | None = None  # 0x-hex SHA-256 package measurement
    digest_alg: str = DIGEST_ALG  # how ``digest`` was measured
    address: str | None = None  # signing address (registered cryptlets only)

    @classmethod
    def from_package(cls, package_dir: Path) -> HeaderSource:
        """Read and validate a package folder's manifest; its digest is measured here."""
        manifest = load_manifest(Path(package_dir))
        return cls(
            name=manifest.name,
            methods=manifest.methods,
            events=manifest.events,
            version=manifest.version,
            kind=manifest.kind,
            description=manifest.description,
            digest=to_hex(package_digest(Path(package_dir))),
            digest_alg=DIGEST_ALG,
        )

    @classmethod
    def from_registration(cls, document: Any) -> HeaderSource:
        """From ``GET /api/cryptlets/{name}`` (:meth:`shared.host.registry.Registration.to_dict`)."""
        if not isinstance(document, dict) or not isinstance(document.get("name"), str) or not is_name(document["name"]):
            raise InvalidInput("registration has no valid name", field="name")
        methods = document.get("methods")
        if not isinstance(methods, dict) or not methods:
            raise InvalidInput("registration has no methods", field="methods")
        address = document.get("address") or None
        digest = document.get("digest") or None
        if address is not None:
            from_hex(address, length=20, field="address")
        if digest is not None:
            from_hex(digest, length=32, field="digest")
        version = str(document.get("version") or "")
        if not _VERSION.match(version):
            raise InvalidInput(f"registration version {version!r} is not a semantic version", field="version")
        events = document.get("events") or {}
        if not isinstance(events, dict):
            raise InvalidInput("registration events must be an object", field="events")
        return cls(
            name=document["name"],
            methods=methods,
            events=events,
            version=version,
            kind=str(document.get("kind") or ""),
            description=str(document.get("description") or ""),
            digest=digest,
            digest_alg=check_alg(document.get("digest_alg") or "cfpkg-v1"),  # absent: registered before v2
            address=address,
        )


def abi_type(manifest_type: Any, *, field: str) -> str:
    """The canonical ABI type of a manifest parameter type; :class:`InvalidInput` if it has none."""
    if not isinstance(manifest_type, str):
        raise InvalidInput(f"{field}: type must be a string", field=field)
    base, dims = manifest_type.strip(), ""
    while (match := _ARRAY.search(base)) is not None:
        if match["len"] and (match["len"].startswith("0") or int(match["len"]) == 0):
            raise InvalidInput(f"{field}: array length in {manifest_type!r} must be a positive integer", field=field)
        dims = match.group(0) + dims
        base = base[: match.start()]
    if base == "json" and dims:
        raise InvalidInput(f"{field}: json cannot be an array element type", field=field)
    base = TYPE_ALIASES.get(base, base)
    match = _ELEMENTARY.match(base)
    if match is None:
        raise InvalidInput(f"{field}: {manifest_type!r} is not an ABI type (or json)", field=field)
    bits, size = match["bits"], match["size"]
    if bits and (int(bits) % 8 or not 8 <= int(bits) <= 256 or bits.startswith("0")):
        raise InvalidInput(f"{field}: {manifest_type!r}: integer width must be 8..256 in steps of 8", field=field)
    if size and (not 1 <= int(size) <= 32 or size.startswith("0")):
        raise InvalidInput(f"{field}: {manifest_type!r}: fixed bytes size must be 1..32", field=field)
    if base in ("uint", "int"):
        base += "256"
    return base + dims


def _is_dynamic(type_: str) -> bool:
    return type_.endswith("]") or type_ in ("string", "bytes")


def _identifier(name: Any, *, field: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise InvalidInput(f"{field}: {name!r} is not a Solidity identifier", field=field)
    if name in SOLIDITY_RESERVED:
        raise InvalidInput(f"{field}: {name!r} is a Solidity keyword", field=field)
    return name


def _params(method: dict[str, Any], key: str, path: str) -> list[tuple[str, str]]:
    params = method.get(key) or []
    if not isinstance(params, list):
        raise InvalidInput(f"{path}.{key} must be a list", field=f"{path}.{key}")
    result: list[tuple[str, str]] = []
    for i, param in enumerate(params):
        where = f"{path}.{key}[{i}]"
        if not isinstance(param, dict):
            raise InvalidInput(f"{where} must be an object", field=where)
        name = _identifier(param.get("name"), field=f"{where}.name")
        result.append((name, abi_type(param.get("type"), field=f"{where}.type")))
    return result


@dataclass(frozen=True)
class _Function:
    name: str
    description: str
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]


def _functions(source: HeaderSource) -> list[_Function]:
    functions = []
    for name in sorted(source.methods):
        path = f"$.interface.methods.{name}"
        method = source.methods[name] if isinstance(source.methods[name], dict) else {}
        inputs, outputs = _params(method, "inputs", path), _params(method, "outputs", path)
        seen: set[str] = set()
        for key, params in (("inputs", inputs), ("outputs", outputs)):
            for i, (param, _) in enumerate(params):
                if param in seen:
                    raise InvalidInput(
                        f"{path}: parameter name {param!r} is used twice", field=f"{path}.{key}[{i}].name"
                    )
                seen.add(param)
        functions.append(
            _Function(_identifier(name, field=path), str(method.get("description") or ""), inputs, outputs)
        )
    return functions


@dataclass(frozen=True)
class _Event:
    name: str
    description: str
    inputs: list[tuple[str, str, bool]]  # (name, ABI type, indexed)


def _events(source: HeaderSource) -> list[_Event]:
    events = []
    for name in sorted(source.events):
        path = f"$.interface.events.{name}"
        event = source.events[name] if isinstance(source.events[name], dict) else {}
        params = _params(event, "inputs", path)
        raw = event.get("inputs") or []
        indexed = [bool(p.get("indexed")) for p in raw]
        if sum(indexed) > 3:
            raise InvalidInput(f"{path}: at most 3 parameters may be indexed", field=f"{path}.inputs")
        if len({n for n, _ in params}) != len(params):
            raise InvalidInput(f"{path}: a parameter name is used twice", field=f"{path}.inputs")
        events.append(
            _Event(
                _identifier(name, field=path),
                str(event.get("description") or ""),
                [(n, t, i) for (n, t), i in zip(params, indexed, strict=False)],
            )
        )
    return events


def camel_name(name: str) -> str:
    """``customer_validator`` -> ``CustomerValidator``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def interface_name(name: str) -> str:
    return f"I{camel_name(name)}Cryptlet"


def library_name(name: str) -> str:
    return f"{camel_name(name)}Cryptlet"


def json_abi(source: HeaderSource) -> list[dict[str, Any]]:
    """The standard JSON ABI of the header's interface (as solc emits it)."""

    def params(items: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"internalType": t, "name": n, "type": t} for n, t in items]

    functions = [
        {
            "inputs": params(f.inputs),
            "name": f.name,
            "outputs": params(f.outputs),
            "stateMutability": "nonpayable",
            "type": "function",
        }
        for f in _functions(source)
    ]
    events = [
        {
            "anonymous": False,
            "inputs": [{"indexed": i, "internalType": t, "name": n, "type": t} for n, t, i in e.inputs],
            "name": e.name,
            "type": "event",
        }
        for e in _events(source)
    ]
    return events + functions


def _comment(text: str) -> str:
    return " ".join(text.split()).replace("*/", "* /")


def solidity_header(source: HeaderSource) -> str:
    """The Solidity header file: the interface plus a library of the cryptlet's constants."""
    functions = _functions(source)
    lib, iface = library_name(source.name), interface_name(source.name)
    lines = [
        "// SPDX-License-Identifier: MIT",
        f"// Generated by `cryptlet header` from cryptlet {source.name!r}"
        + (f" {source.version}" if source.version else "")
        + ". Do not edit.",
        f"pragma solidity {SOLIDITY_PRAGMA};",
        "",
    ]
    lines.append(f"/// @title Constants of the {source.name} cryptlet and of the envelopes it signs (EIP-712).")
    lines.append(f"library {lib} {{")
    lines.append(f'    string internal constant NAME = "{source.name}";')
    if source.version:
        lines.append(f'    string internal constant VERSION = "{source.version}";')
    if source.digest:
        lines.append("    /// SHA-256 package measurement (digest) the cryptlet's key is bound to.")
        lines.append(f"    bytes32 internal constant DIGEST = {to_hex(from_hex(source.digest, length=32))};")
        lines.append("    /// How DIGEST was measured (the package digest algorithm, docs/container-protocol.md).")
        lines.append(f'    string internal constant DIGEST_ALG = "{source.digest_alg}";')
    else:
        lines.append("    // DIGEST: unknown (generate from a package folder or a registered cryptlet).")
    if source.address:
        lines.append("    /// The registered cryptlet's signing address (envelope signer).")
        lines.append(f"    address internal constant CRYPTLET = {to_checksum_address(source.address)};")
    else:
        lines.append(
            "    // CRYPTLET address: unknown until registered (generate the header from the registered name)."
        )
    lines += [
        f'    string internal constant DOMAIN_NAME = "{DOMAIN_NAME}";',
        f'    string internal constant DOMAIN_VERSION = "{DOMAIN_VERSION}";',
        f'    string internal constant DOMAIN_TYPE = "{DOMAIN_TYPE}";',
        f"    bytes32 internal constant DOMAIN_TYPEHASH = {to_hex(DOMAIN_TYPEHASH)};",
        f'    string internal constant ENVELOPE_TYPE = "{ENVELOPE_TYPE}";',
        "    /// keccak256(ENVELOPE_TYPE): the EIP-712 struct type hash of every envelope this cryptlet signs.",
        f"    bytes32 internal constant ENVELOPE_TYPEHASH = {to_hex(ENVELOPE_TYPEHASH)};",
        "}",
        "",
    ]
    description = _comment(source.description)
    lines.append(f"/// @title {source.name}" + (f" ({source.kind} cryptlet)" if source.kind else ""))
    if description:
        lines.append(f"/// @notice {description}")
    lines.append("/// @dev Manifest type json is written as string (the JSON text).")
    lines.append(f"interface {iface} {{")
    for e in _events(source):
        lines.append(
            "    /// @notice "
            + (
                _comment(e.description)
                if e.description
                else f"Signed by the cryptlet as an envelope with topic {source.name}.{e.name}."
            )
        )
        params = ", ".join(f"{t}{' indexed' if i else ''} {n}" for n, t, i in e.inputs)
        lines.append(f"    event {e.name}({params});")
    for f in functions:
        if f.description:
            lines.append(f"    /// @notice {_comment(f.description)}")
        ins = ", ".join(f"{t}{' calldata' if _is_dynamic(t) else ''} {n}" for n, t in f.inputs)
        outs = ", ".join(f"{t}{' memory' if _is_dynamic(t) else ''} {n}" for n, t in f.outputs)
        returns = f" returns ({outs})" if f.outputs else ""
        lines.append(f"    function {f.name}({ins}) external{returns};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(source: HeaderSource, fmt: str) -> str:
    """The header in ``fmt`` (``solidity`` or ``abi``) as text."""
    if fmt == "solidity":
        return solidity_header(source)
    if fmt == "abi":
        return json.dumps(json_abi(source), indent=2) + "\n"
    raise InvalidInput(f"unknown header format {fmt!r} (use one of {', '.join(FORMATS)})", field="--format")
