"""``cryptlet init``: scaffold a new cryptlet package folder.

A scaffold is a package that registers as it is: ``cryptlet.json`` (valid against the schema),
``main.py`` with the entry class and one method (``hello``), ``test_<name>.py`` that runs the
method in a real ``process`` region through :func:`shared.simulate.simulate`, and a
``pytest.ini`` that keeps pytest from writing a cache into the package (a cache would change the
package digest; ``__pycache__`` is not measured).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from shared.errors import Conflict, InvalidInput
from shared.header import camel_name
from shared.manifest import MANIFEST_FILE, validate_manifest

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
KINDS = ("utility", "contract")
RUNTIMES = ("python",)
#: Runtimes the schema will know but no container implements yet.
PLANNED_RUNTIMES = ("exec",)

_ENTRY = '''"""The {name} cryptlet ({kind}). Each public method listed in cryptlet.json is callable with
named JSON arguments; its return value is signed by the container and becomes the envelope's payload."""
from __future__ import annotations


class {cls}:
    """{description}"""

    def hello(self, name: str) -> dict:
        """Greet ``name``; a bad argument raises ValueError (the caller gets a 400 naming args)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("name must be a non-empty string")
        return {{"greeting": f"Hello, {{name}}!"}}
'''

_TEST = '''"""Tests of the {name} cryptlet: the method runs in a real `process` region (no storage, no host),
exactly as `cryptlet simulate . hello --args '{{"name": "Ada"}}'` runs it."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.envelope import Envelope, verify_envelope
from shared.errors import RegionError
from shared.simulate import SIMULATED_REGISTRATION, simulate

PACKAGE = Path(__file__).resolve().parent


def test_hello_returns_a_signed_greeting() -> None:
    envelope = simulate(PACKAGE, "hello", {{"name": "Ada"}})
    assert envelope["payload"] == {{"greeting": "Hello, Ada!"}}
    assert envelope["topic"] == "{name}.hello"
    assert envelope["registration"] == SIMULATED_REGISTRATION
    assert verify_envelope(Envelope.from_dict(envelope)) == envelope["cryptlet"]


def test_hello_refuses_an_empty_name() -> None:
    with pytest.raises(RegionError) as caught:
        simulate(PACKAGE, "hello", {{"name": ""}})
    assert caught.value.extra["region_code"] == "bad_arguments"
'''

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
        raise InvalidInput(f"invalid cryptlet name {name!r}: use 2-63 lowercase letters, digits and underscores, "
                           "starting with a letter", field="NAME")
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r} (use {' or '.join(KINDS)})", field="--kind")
    if runtime in PLANNED_RUNTIMES:
        raise InvalidInput(f"the {runtime} runtime is not implemented yet; use --runtime python", field="--runtime")
    if runtime not in RUNTIMES:
        raise InvalidInput(f"unknown runtime {runtime!r} (use python)", field="--runtime")
    target = Path(parent) / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise Conflict(f"{target} already exists and is not an empty folder", field="--dir")
    camel = camel_name(name)
    cls = camel if camel.endswith("Cryptlet") else camel + "Cryptlet"
    description = f"The {name} {kind} cryptlet (scaffolded by cryptlet init): greets a name."
    manifest = {
        "name": name, "version": "0.1.0", "kind": kind, "runtime": runtime, "entry": f"main:{cls}",
        "config": {"description": description, "isolation": True},
        "interface": {"methods": {"hello": {
            "description": "Greet a name.",
            "inputs": [{"name": "name", "type": "string"}],
            "outputs": [{"name": "greeting", "type": "string"}]}}},
    }
    validate_manifest(manifest)
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (target / "main.py").write_text(_ENTRY.format(name=name, kind=kind, cls=cls, description=description),
                                    encoding="utf-8")
    (target / f"test_{name}.py").write_text(_TEST.format(name=name), encoding="utf-8")
    (target / "pytest.ini").write_text(_PYTEST_INI, encoding="utf-8")
    return target
