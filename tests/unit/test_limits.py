"""The bounds of shared/limits.py are the ones the policy and manifest schemas, the settings and
host.json state, and policies and manifests outside them are refused naming the JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import limits
from shared.errors import ConfigurationError, InvalidInput, ManifestError
from shared.host.policy import validate_policy
from shared.packages.manifest import validate_manifest
from shared.settings import SETTINGS, Settings, declared_int

ROOT = Path(__file__).resolve().parents[2]
POLICY = json.loads((ROOT / "shared/schemas/policy.schema.json").read_text())["properties"]
MANIFEST = json.loads((ROOT / "shared/schemas/cryptlet.schema.json").read_text())


def test_the_schemas_state_the_bounds_of_shared_limits() -> None:
    assert POLICY["timeout_s"]["minimum"] == limits.MIN_TIMEOUT_S
    assert POLICY["timeout_s"]["maximum"] == limits.MAX_TIMEOUT_S
    assert POLICY["min_instances"]["maximum"] == POLICY["max_instances"]["maximum"] == limits.MAX_INSTANCES
    assert POLICY["egress"]["maxItems"] == limits.MAX_EGRESS_HOSTS
    assert POLICY["egress"]["items"]["maxLength"] == limits.MAX_HOST_PATTERN_CHARS
    assert POLICY["note"]["maxLength"] == limits.MAX_NOTE_CHARS
    timeout = MANIFEST["properties"]["config"]["properties"]["timeoutSeconds"]
    assert (timeout["minimum"], timeout["maximum"]) == (limits.MIN_TIMEOUT_S, limits.MAX_TIMEOUT_S)
    assert MANIFEST["properties"]["maximumInstances"]["maximum"] == limits.MAX_INSTANCES
    assert MANIFEST["properties"]["egress"]["maxItems"] == limits.MAX_EGRESS_HOSTS
    assert MANIFEST["$defs"]["hostPattern"]["maxLength"] == limits.MAX_HOST_PATTERN_CHARS
    assert MANIFEST["$defs"]["hostPattern"]["pattern"] == POLICY["egress"]["items"]["pattern"]


def test_a_call_may_not_outlast_the_function_timeout() -> None:
    hours, minutes, seconds = json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":")
    function_timeout = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    assert function_timeout >= limits.MAX_TIMEOUT_S


@pytest.mark.parametrize(
    "policy,field",
    [
        ({"timeout_s": 0.0004}, "$.timeout_s"),
        ({"timeout_s": 0}, "$.timeout_s"),
        ({"timeout_s": 300.5}, "$.timeout_s"),
        ({"max_instances": 0}, "$.max_instances"),
        ({"max_instances": 65}, "$.max_instances"),
        ({"min_instances": -1}, "$.min_instances"),
        ({"egress": ["example.com:0"]}, "$.egress[0]"),
        ({"egress": ["example.com:65536"]}, "$.egress[0]"),
        ({"egress": ["ok.example", ("a" * 60 + ".") * 5 + "com"]}, "$.egress[1]"),
        ({"egress": [("a" * 63 + ".") * 3 + "a" * 62]}, "$.egress[0]"),  # a 254-character name
        ({"egress": [f"h{i}.example" for i in range(65)]}, "$.egress"),
        ({"note": "x" * 1001}, "$.note"),
    ],
)
def test_policies_outside_the_bounds_are_refused_naming_the_path(policy: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_policy(policy)
    assert caught.value.field == field and caught.value.status == 400


@pytest.mark.parametrize(
    "policy",
    [
        {"timeout_s": 0.1},
        {"timeout_s": 300},
        {"min_instances": 0, "max_instances": 64},
        {"egress": ["example.com:1", "*.example.org:65535", "api.example.net:443"]},
        {"egress": ["*." + ("a" * 63 + ".") * 3 + "a" * 61 + ":65535"]},  # the longest: 261 characters
    ],
)
def test_policies_at_the_bounds_are_accepted(policy: dict) -> None:
    assert validate_policy(policy) == policy


def manifest(**config: object) -> dict:
    return {
        "name": "bounded",
        "version": "1.0.0",
        "kind": "utility",
        "runtime": "python",
        "entry": "main:Bounded",
        "interface": {"methods": {"run": {}}},
        "config": config,
    }


@pytest.mark.parametrize("seconds", [0.0004, 0, 301])
def test_manifest_timeouts_outside_the_bounds_are_refused(seconds: float) -> None:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest(timeoutSeconds=seconds))
    assert caught.value.field == "$.config.timeoutSeconds"


def test_manifest_timeouts_at_the_bounds_are_accepted() -> None:
    for seconds in (0.1, 300):
        validate_manifest(manifest(timeoutSeconds=seconds))


def test_a_manifest_asking_for_more_minimum_than_maximum_instances_is_refused() -> None:
    document = {**manifest(), "kind": "contract", "minimumInstances": 3, "maximumInstances": 2}
    with pytest.raises(ManifestError) as caught:
        validate_manifest(document)
    assert caught.value.field == "$.minimumInstances"
    validate_manifest({**document, "minimumInstances": 2})


def environment(**values: str) -> dict[str, str]:
    return {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "FABRIC_SEALING_SECRET": "A" * 44, **values}


def test_the_body_limit_is_a_setting_with_a_default() -> None:
    assert SETTINGS["FABRIC_MAX_BODY_BYTES"][0] == str(limits.DEFAULT_MAX_BODY_BYTES)
    assert Settings.from_env(environment()).max_body_bytes == limits.DEFAULT_MAX_BODY_BYTES
    assert Settings.from_env(environment(FABRIC_MAX_BODY_BYTES="4096")).max_body_bytes == 4096
    assert declared_int("FABRIC_MAX_BODY_BYTES", {"FABRIC_MAX_BODY_BYTES": "4096"}) == 4096
    assert declared_int("FABRIC_MAX_BODY_BYTES", {"FABRIC_MAX_BODY_BYTES": "lots"}) == limits.DEFAULT_MAX_BODY_BYTES


@pytest.mark.parametrize(
    "name,value",
    [
        ("FABRIC_MAX_BODY_BYTES", "100"),
        ("FABRIC_MAX_BODY_BYTES", str(200 * 1024 * 1024)),
        ("FABRIC_REGION_TIMEOUT_S", "301"),
        ("FABRIC_REGIONS_PER_CRYPTLET", "65"),
    ],
)
def test_settings_outside_their_bounds_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environment(**{name: value}))
    assert caught.value.field == name
