"""HTTP bodies become typed requests at the edge (functions/models.py); bad ones are 400s naming the field."""

from __future__ import annotations

import pytest

from functions import models
from shared.errors import InvalidInput
from shared.host.models import Call, Revocation, RevokeRequest

REQUEST_ID = "0x" + "ab" * 32


def field_of(parse, body) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    assert caught.value.status == 400
    return caught.value.field


def test_a_call_is_parsed_into_a_typed_call():
    call = models.call({"method": "quote", "args": {"symbol": "SPX"}, "request_id": REQUEST_ID})
    assert call == Call("quote", {"symbol": "SPX"}, bytes.fromhex("ab" * 32))
    assert models.call({"method": "quote"}) == Call("quote", {}, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "$"),
        ("quote", "$"),
        (None, "$"),
        ({"method": "quote", "args": []}, "args"),
        ({"method": "quote", "args": "x"}, "args"),
        ({"method": "quote", "request_id": "0x12"}, "request_id"),
        ({"method": "quote", "request_id": 5}, "request_id"),
    ],
)
def test_a_malformed_call_names_the_field(body, field):
    assert field_of(models.call, body) == field


def test_a_method_that_is_not_a_string_is_left_for_the_interface_check():
    # the core names the methods the cryptlet has ("method must be one of [...]"): the edge cannot
    assert models.call({"method": 7}).method == ""


def test_deadline_is_an_integer_or_absent():
    assert models.deadline({"method": "m"}) is None
    assert models.deadline({"deadline_ms": 1_700_000_000_000}) == 1_700_000_000_000
    for bad in (True, 1.5, "soon"):
        assert field_of(models.deadline, {"deadline_ms": bad}) == "deadline_ms"


def test_registration_needs_a_package_name():
    assert models.registration_package({"package": "hello"}) == "hello"
    assert field_of(models.registration_package, {}) == "package"
    assert field_of(models.registration_package, {"package": 3}) == "package"
    assert field_of(models.registration_package, [1]) == "$"


def test_revocations_and_rotations():
    assert models.rotation({}) is None
    assert models.rotation({"revoke": {"reason": "superseded"}}) == Revocation("superseded")
    assert field_of(models.rotation, {"revoke": "yes"}) == "revoke"
    assert models.revoke_request({}) == RevokeRequest(None, Revocation())
    assert models.revoke_request({"address": "0xabc", "note": "n"}) == RevokeRequest("0xabc", Revocation(note="n"))
    assert field_of(models.revoke_request, {"reason": 5}) == "reason"
    assert field_of(models.revoke_request, {"invalid_after": 5}) == "invalid_after"
    assert field_of(models.revoke_request, {"address": ["x"]}) == "address"


def test_retirement_note_is_optional_and_a_string():
    assert models.retirement_note({}) is None
    assert models.retirement_note("not an object") is None  # as before: a retirement needs no body
    assert models.retirement_note({"note": "done"}) == "done"
    assert field_of(models.retirement_note, {"note": 1}) == "note"


def test_policy_errors_name_the_json_path():
    assert models.policy({"max_instances": 2}) == {"max_instances": 2}
    assert field_of(models.policy, {"max_instances": 0}) == "$.max_instances"
    assert field_of(models.policy, {"bogus": 1}) == "$.bogus"
    assert field_of(models.policy, [1]) == "$"


def test_a_new_subscriber_has_only_name_and_public_key():
    assert models.new_subscriber({"name": "a", "public_key": "0x04"}) == ("a", "0x04")
    assert field_of(models.new_subscriber, {"name": "a", "extra": 1}) == "$.extra"
    assert field_of(models.new_subscriber, "x") == "$"
