"""Property-based fuzzing of the live HTTP API from its own OpenAPI document (schemathesis).

A real dev host serves the function app; every operation of ``/api/openapi.json`` gets
:data:`EXAMPLES` generated requests that fit the document, :data:`EXAMPLES` that break it (bodies,
parameters, headers) and :data:`EXAMPLES` built around the document's examples (the registered
``customer_validator``), sent with the admin (master) key, which the dev host accepts for
function-level routes too. A request fails the test if the server answers 5xx, or if the answer is
not what the document declares: its status code, content type, headers or JSON schema. Every
operation is fuzzed; the failures are reported together.

(schemathesis' pytest plugin does not run under this pytest, so the operations are driven here with
Hypothesis directly.)
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Cases per operation and mode: 30 keeps the module near a minute on the 2-core machine. CI runs the same
#: cases every time (derandomized); FABRIC_FUZZ_EXAMPLES=150 FABRIC_FUZZ_RANDOM=1 searches wider and anew.
EXAMPLES = int(os.environ.get("FABRIC_FUZZ_EXAMPLES", "30"))
RANDOM = os.environ.get("FABRIC_FUZZ_RANDOM") == "1"
#: Operations that change or end the registered cryptlet, fuzzed only on other names: a retirement
#: would leave nothing to fuzz, a rotation starts a region each time, and a valid policy may ask for
#: up to 64 warm regions. (A policy ``timeout_s`` below 0.1 s, which once stopped every region of the
#: cryptlet from starting, is now refused: tests/e2e/host/test_input_limits.py.)
NOT_ON_THE_REGISTERED_CRYPTLET = {
    "PUT /api/cryptlets/{name}/policy",
    "POST /api/cryptlets/{name}/keys/rotate",
    "POST /api/cryptlets/{name}/keys/revoke",
    "POST /api/cryptlets/{name}/retire",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz(strategy, fabric_host) -> None:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=not RANDOM,
    )
    def run(case) -> None:
        case.call_and_validate(
            base_url=fabric_host.url, headers={"x-functions-key": fabric_host.admin_key}, checks=CHECKS, timeout=60
        )

    run()


def test_every_operation_answers_as_documented(fabric_host, registered):
    schema = schemathesis.openapi.from_url(f"{fabric_host.url}/api/openapi.json")
    failures = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        strategies = {mode.value: operation.as_strategy(mode) for mode in GenerationMode}
        examples = schema.get_strategies_from_examples(operation)  # e.g. the registered cryptlet's name
        if examples:
            strategies["examples"] = st.one_of(examples)
        for kind, strategy in strategies.items():
            if operation.label in NOT_ON_THE_REGISTERED_CRYPTLET:
                strategy = strategy.filter(lambda case: case.path_parameters.get("name") != registered["name"])
            try:
                fuzz(strategy, fabric_host)
            except Unsatisfiable:  # nothing to break: an operation without parameters or body
                pass
            except (Exception, BaseExceptionGroup) as exc:  # one operation's failure must not hide another's
                failures.append(f"{operation.label} ({kind}):\n{exc}")
    assert operations >= 35
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
