"""``cryptlet init``: scaffold a new cryptlet package folder.

A scaffold is a package that registers as it is: ``cryptlet.json`` (valid against the schema),
the entry (``main.py`` with an SDK class for the ``python`` runtime; ``main.js`` plus the Node
SDK file ``cryptlet.js`` for the ``exec`` runtime) with one method (``hello``) that emits one
event (``Greeted``) and, for a contract, counts greetings in its state; ``test_<name>.py`` that
runs the method in a real ``process`` region through :func:`cryptlet_cli.simulate.simulate`; and a
``pytest.ini`` that keeps pytest from writing a cache into the package (a cache would change the
package digest; ``__pycache__`` is not measured).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cryptlet_cli.header import camel_name
from shared.errors import Conflict, InvalidInput
from shared.packages.manifest import MANIFEST_FILE, validate_manifest

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,62}\Z"
KINDS = ("utility", "contract")
RUNTIMES = ("python", "exec")
NODE_SDK = Path(__file__).resolve().parent.parent / "cryptlet_sdk" / "js" / "cryptlet.js"

_PY_ENTRY = '''"""The {name} cryptlet ({kind}). Methods marked @method and listed in cryptlet.json are callable
with named JSON arguments; the container signs each return value (the envelope's payload) and each
emitted event. The private key never reaches this code."""
from __future__ import annotations

from cryptlet_sdk import {base}, method


class {cls}({base}):
    """{description}"""

    @method
    def hello(self, name: str) -> dict:
        """Greet ``name``; a bad argument raises ValueError (the caller gets a 400 naming args)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("name must be a non-empty string")
        self.context.emit("Greeted", name=name)
{py_body}
'''

_PY_UTILITY = """        return {{"greeting": f"Hello, {{name}}!"}}"""
_PY_CONTRACT = """        greetings = self.state.get("greetings", 0) + 1  # the fabric keeps the state between calls
        self.state["greetings"] = greetings
        return {{"greeting": f"Hello, {{name}}!", "greetings": greetings}}"""

_JS_ENTRY = """\'use strict\';
// The {name} cryptlet ({kind}), for the exec runtime (Node.js). The container starts this program,
// sends requests on stdin and signs what each method returns; the private key never reaches it.
const {{ serve, CryptletError }} = require(\'./cryptlet\');

serve({{
  async hello(args, ctx) {{
    if (typeof args.name !== \'string\' || !args.name.trim()) {{
      throw CryptletError.badArguments(\'name must be a non-empty string\');
    }}
    ctx.emit(\'Greeted\', {{ name: args.name }});
{js_body}
  }},
}});
"""

_JS_UTILITY = """    return {{ greeting: `Hello, ${{args.name}}!` }};"""
_JS_CONTRACT = """    ctx.state.greetings = (ctx.state.greetings || 0) + 1;  // the fabric keeps the state between calls
    return {{ greeting: `Hello, ${{args.name}}!`, greetings: ctx.state.greetings }};"""

_TEST = '''"""Tests of the {name} cryptlet: the method runs in a real `process` region (no storage, no host),
exactly as `cryptlet simulate . hello Ada` runs it."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.envelope import Envelope, verify_envelope
from shared.errors import RegionError
from cryptlet_cli.simulate import SIMULATED_REGISTRATION, simulate

PACKAGE = Path(__file__).resolve().parent


def test_hello_returns_a_signed_greeting_and_event() -> None:
    envelope = simulate(PACKAGE, "hello", {{"name": "Ada"}}{state_arg})
{payload_check}
    assert envelope["topic"] == "{name}.hello"
    assert envelope["registration"] == SIMULATED_REGISTRATION
    assert [(e["topic"], e["payload"]) for e in envelope["events"]] == [("{name}.Greeted", {{"name": "Ada"}})]
    for document in (envelope, *envelope["events"]):
        assert verify_envelope(Envelope.from_dict(document)) == envelope["cryptlet"]


def test_hello_refuses_an_empty_name() -> None:
    with pytest.raises(RegionError) as caught:
        simulate(PACKAGE, "hello", {{"name": ""}})
    assert caught.value.extra["region_code"] == "bad_arguments"
'''

_UTILITY_CHECK = """    assert envelope["payload"] == {"greeting": "Hello, Ada!"}"""
_CONTRACT_CHECK = """    assert envelope["payload"]["result"] == {"greeting": "Hello, Ada!", "greetings": 3}
    assert envelope["state"] == {"greetings": 3}  # the new state; the envelope signs its hash
    assert envelope["payload"]["state"]["version"] == 1"""

_PYTEST_INI = """[pytest]
# No .pytest_cache in the package: every file here is part of the measured package (digest).
addopts = -p no:cacheprovider
"""


def scaffold(name: str, *, kind: str = "utility", runtime: str = "python", parent: Path = Path(".")) -> Path:
    """Create ``parent/name`` holding a new package; return its path.

    Refuses (with :class:`InvalidInput` / :class:`Conflict`) an invalid name, kind or runtime and an
    existing target that is not an empty folder.
    """
    if not re.match(NAME_PATTERN, name or ""):
        raise InvalidInput(
            f"invalid cryptlet name {name!r}: use 2-63 lowercase letters, digits and underscores, "
            "starting with a letter",
            field="NAME",
        )
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r} (use {' or '.join(KINDS)})", field="--kind")
    if runtime not in RUNTIMES:
        raise InvalidInput(f"unknown runtime {runtime!r} (use {' or '.join(RUNTIMES)})", field="--runtime")
    target = Path(parent) / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{target} already exists and is not an empty folder", field="--dir")
    camel = camel_name(name)
    cls = camel if camel.endswith("Cryptlet") else camel + "Cryptlet"
    contract = kind == "contract"
    description = f"The {name} {kind} cryptlet (scaffolded by cryptlet init): greets a name" + (
        " and counts greetings in its state." if contract else "."
    )
    outputs = [{"name": "greeting", "type": "string"}] + (
        [{"name": "greetings", "type": "uint256"}] if contract else []
    )
    manifest: dict = {
        "name": name,
        "version": "0.1.0",
        "kind": kind,
        "runtime": runtime,
        "entry": f"main:{cls}" if runtime == "python" else "main.js",
    }
    if runtime == "exec":
        manifest["interpreter"] = "node"
    manifest.update(
        {
            "config": {"description": description, "isolation": True},
            "interface": {
                "methods": {
                    "hello": {
                        "description": "Greet a name.",
                        "inputs": [{"name": "name", "type": "string"}],
                        "outputs": outputs,
                    }
                },
                "events": {
                    "Greeted": {"description": "Someone was greeted.", "inputs": [{"name": "name", "type": "string"}]}
                },
            },
        }
    )
    validate_manifest(manifest)
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if runtime == "python":
        base = "ContractCryptlet" if contract else "UtilityCryptlet"
        body = (_PY_CONTRACT if contract else _PY_UTILITY).format()
        (target / "main.py").write_text(
            _PY_ENTRY.format(name=name, kind=kind, cls=cls, description=description, base=base, py_body=body),
            encoding="utf-8",
        )
    else:
        (target / "main.js").write_text(
            _JS_ENTRY.format(name=name, kind=kind, js_body=(_JS_CONTRACT if contract else _JS_UTILITY).format()),
            encoding="utf-8",
        )
        (target / "cryptlet.js").write_bytes(NODE_SDK.read_bytes())
    (target / f"test_{name}.py").write_text(
        _TEST.format(
            name=name,
            state_arg=', state={"greetings": 2}' if contract else "",
            payload_check=_CONTRACT_CHECK if contract else _UTILITY_CHECK,
        ),
        encoding="utf-8",
    )
    (target / "pytest.ini").write_text(_PYTEST_INI, encoding="utf-8")
    return target
