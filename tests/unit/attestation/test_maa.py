"""Azure Attestation (MAA) tokens: the real recorded SGX tokens, and SYNTHETIC variants.

Real: ``sgx_token.jwt`` / ``sgx_token_runtime_json.jwt`` signed by sharedwus (2021-05-05), the
JWKS recorded with them, and the attest request that produced them. The signing key of those
tokens is a 1024-bit RSA key, below the default ``min_rsa_key_bits=2048``, so policies for the
real tokens lower it explicitly (and pyjwt warns about it).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.attestation import (
    SEVSNP,
    AttestationError,
    MaaPolicy,
    Reason,
    check_runtime_binding,
    verify_maa_token,
)
from shared.errors import ConfigurationError, VerificationError

from .conftest import (
    MAA_ISSUER,
    MAA_KID,
    MAA_OTHER_KID,
    MRENCLAVE,
    MRSIGNER,
    RUNTIME_JWK,
    SGX_EXP,
    SGX_IAT,
    SYNTHETIC_ISSUER,
    at,
    b64url,
    b64url_decode,
)

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

INSIDE = at(SGX_IAT + 600)  # ten minutes after issue, well before exp


def real_policy(**changes: Any) -> MaaPolicy:
    """The policy the recorded token satisfies (1024-bit signing key allowed explicitly)."""
    fields: dict[str, Any] = dict(
        issuer=MAA_ISSUER,
        allowed_mrenclaves={MRENCLAVE},
        allowed_mrsigners={MRSIGNER},
        allowed_product_ids={1},
        min_svn=1,
        min_rsa_key_bits=1024,
    )
    fields.update(changes)
    return MaaPolicy(**fields)


def reason_of(excinfo: pytest.ExceptionInfo[AttestationError]) -> str:
    return excinfo.value.reason


def rebuild(
    token: str, *, header: dict | None = None, payload: bytes | None = None, signature: bytes | None = None
) -> str:
    h, p, s = token.split(".")
    if header is not None:
        h = b64url(json.dumps(header, separators=(",", ":")).encode())
    if payload is not None:
        p = b64url(payload)
    if signature is not None:
        s = b64url(signature)
    return ".".join((h, p, s))


def header_of(token: str) -> dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[0]))


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# --------------------------------------------------------------------------- the genuine token


def test_genuine_sgx_token_verifies_inside_its_validity(sgx_token, maa_jwks):
    claims = verify_maa_token(sgx_token, maa_jwks, real_policy(), now=INSIDE)

    assert claims.attestation_type == "sgx"
    assert claims.issuer == MAA_ISSUER
    assert claims.kid == MAA_KID
    assert claims.mrenclave == MRENCLAVE
    assert claims.mrsigner == MRSIGNER
    assert claims.debuggable is False
    assert (claims.product_id, claims.svn) == (1, 1)
    assert claims.issued_at == at(SGX_IAT) and claims.expires_at == at(SGX_EXP)
    assert claims.raw["x-ms-ver"] == "1.0"
    assert (
        claims.raw["x-ms-sgx-collateral"]["quotehash"]
        == "af0e05631c145d7dc1a33b214d43c6aa34a7859622a0ac7d880ab7b24e2f18d2"
    )
    evidence = claims.to_evidence()
    assert (evidence.kind, evidence.measurement, evidence.debuggable) == ("maa-sgx", MRENCLAVE, False)


def test_genuine_token_verifies_just_before_exp_and_at_iat(sgx_token, maa_jwks):
    policy = real_policy(leeway=timedelta(0))
    verify_maa_token(sgx_token, maa_jwks, policy, now=at(SGX_IAT))
    verify_maa_token(sgx_token, maa_jwks, policy, now=at(SGX_EXP - 1))


def test_genuine_token_verifies_against_the_other_recorded_jwks(sgx_token, maa_jwks_other_recording):
    # The README: the self-signed sharedwus certs differ but carry the same public keys.
    verify_maa_token(sgx_token, maa_jwks_other_recording, real_policy(), now=INSIDE)


def test_runtime_json_token_carries_the_runtime_jwk(sgx_token_runtime_json, maa_jwks):
    claims = verify_maa_token(sgx_token_runtime_json, maa_jwks, real_policy(), now=at(SGX_IAT + 1))
    assert claims.runtime_data is None and "x-ms-sgx-ehd" not in claims.raw
    assert dict(claims.runtime_jwk) == RUNTIME_JWK
    assert claims.binding_digest is None


def test_default_policy_refuses_the_1024_bit_signing_key(sgx_token, maa_jwks):
    policy = MaaPolicy(issuer=MAA_ISSUER, allowed_mrenclaves={MRENCLAVE})
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, policy, now=INSIDE)
    assert reason_of(excinfo) == Reason.UNTRUSTED_KEY


def test_attestation_error_is_a_verification_error_with_a_problem_body(sgx_token, maa_jwks):
    with pytest.raises(VerificationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, real_policy(), now=at(SGX_EXP + 3600))
    problem = excinfo.value.problem()
    assert problem["status"] == 422 and problem["reason"] == "expired"
    assert "expired" in excinfo.value.diagnostics()


# --------------------------------------------------------------------------- tampering


def test_one_flipped_signature_byte_is_a_bad_signature(sgx_token, maa_jwks):
    signature = b64url_decode(sgx_token.split(".")[2])
    for index in (0, len(signature) // 2, len(signature) - 1):
        tampered = rebuild(sgx_token, signature=flip(signature, index))
        with pytest.raises(AttestationError) as excinfo:
            verify_maa_token(tampered, maa_jwks, real_policy(), now=INSIDE)
        assert reason_of(excinfo) == Reason.BAD_SIGNATURE


def test_one_flipped_payload_byte_is_a_bad_signature(sgx_token, maa_jwks):
    payload = b64url_decode(sgx_token.split(".")[1])
    index = payload.index(b'"x-ms-sgx-is-debuggable":false') + len(b'"x-ms-sgx-is-debuggable":')
    forged = payload[:index] + b"true " + payload[index + 5 :]  # same length, now "true"
    for tampered_payload in (flip(payload, len(payload) // 2), forged):
        with pytest.raises(AttestationError) as excinfo:
            verify_maa_token(rebuild(sgx_token, payload=tampered_payload), maa_jwks, real_policy(), now=INSIDE)
        assert reason_of(excinfo) == Reason.BAD_SIGNATURE


def test_flipped_character_in_the_token_text_never_verifies(sgx_token, maa_jwks):
    middle = len(sgx_token) // 2
    replacement = "A" if sgx_token[middle] != "A" else "B"
    tampered = sgx_token[:middle] + replacement + sgx_token[middle + 1 :]
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(tampered, maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.BAD_SIGNATURE


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), char=st.sampled_from("AQgw_-09zZ."))
def test_any_single_character_change_is_rejected(sgx_token, maa_jwks, position, char):
    position %= len(sgx_token)
    if sgx_token[position] == char:
        return
    tampered = sgx_token[:position] + char + sgx_token[position + 1 :]
    with pytest.raises(AttestationError):
        verify_maa_token(tampered, maa_jwks, real_policy(), now=INSIDE)


def test_unknown_kid(sgx_token, maa_jwks):
    header = header_of(sgx_token) | {"kid": "not-a-key-of-this-issuer"}
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(rebuild(sgx_token, header=header), maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.UNKNOWN_KID


def test_other_kid_of_the_same_issuer_is_a_bad_signature(sgx_token, maa_jwks):
    header = header_of(sgx_token) | {"kid": MAA_OTHER_KID}
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(rebuild(sgx_token, header=header), maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.BAD_SIGNATURE


def test_the_untouched_token_does_not_verify_with_the_rPtB_key(sgx_token, maa_jwks):
    # Same kid, but the JWKS entry now holds the certificate of key rPtB...: the README says the
    # token's signature does not verify against it.
    jwks = copy.deepcopy(maa_jwks)
    other = next(k for k in jwks["keys"] if k["kid"] == MAA_OTHER_KID)
    mine = next(k for k in jwks["keys"] if k["kid"] == MAA_KID)
    mine["x5c"] = other["x5c"]
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", "PS256", "ES256", None])
def test_only_rs256_is_accepted(sgx_token, maa_jwks, alg):
    header = header_of(sgx_token) | {"alg": alg}
    signature = b"" if alg == "none" else b64url_decode(sgx_token.split(".")[2])
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(rebuild(sgx_token, header=header, signature=signature), maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.UNSUPPORTED_ALG


def test_hs256_signed_with_the_public_certificate_is_refused(sgx_token, maa_jwks):
    # The classic key-confusion forgery: HMAC keyed with public material the attacker knows.
    header = header_of(sgx_token) | {"alg": "HS256"}
    h = b64url(json.dumps(header).encode())
    p = sgx_token.split(".")[1]
    secret = base64.b64decode(next(k for k in maa_jwks["keys"] if k["kid"] == MAA_KID)["x5c"][0])
    mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(f"{h}.{p}.{b64url(mac)}", maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.UNSUPPORTED_ALG


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!!.e30.AA", "e30.e30.AA="])
def test_malformed_tokens(maa_jwks, token):
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(token, maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.MALFORMED


def test_non_canonical_base64_is_malformed(sgx_token, maa_jwks):
    h, p, s = sgx_token.split(".")
    # 128-byte signature -> 171 chars; the last char carries 2 data bits and 4 zero bits.
    last = s[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = alphabet[alphabet.index(last) ^ 0x01]
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(f"{h}.{p}.{s[:-1]}{sibling}", maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.MALFORMED


def test_duplicate_header_members_are_malformed(sgx_token, maa_jwks):
    h = b64url(b'{"alg":"RS256","kid":"x","kid":"' + MAA_KID.encode() + b'"}')
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(f"{h}.{sgx_token.split('.', 1)[1]}", maa_jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.MALFORMED


# --------------------------------------------------------------------------- JWKS consistency


def _jwks_with(maa_jwks, **changes) -> dict:
    jwks = copy.deepcopy(maa_jwks)
    entry = next(k for k in jwks["keys"] if k["kid"] == MAA_KID)
    for name, value in changes.items():
        if value is None:
            entry.pop(name, None)
        else:
            entry[name] = value
    return jwks


@pytest.mark.parametrize(
    "changes",
    [
        {"kty": "EC"},
        {"use": "enc"},
        {"x5c": None},
        {"x5c": ["not base64 !"]},
        {"x5c": [base64.b64encode(b"not a certificate").decode()]},
        {"n": "AQAB"},  # only one of n/e
        {"n": "AQAB", "e": "AQAB"},  # n/e that differ from the certificate
    ],
)
def test_inconsistent_jwks_key_is_untrusted(sgx_token, maa_jwks, changes):
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, _jwks_with(maa_jwks, **changes), real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.UNTRUSTED_KEY


def test_jwks_n_and_e_that_match_the_certificate_are_accepted(sgx_token, maa_jwks):
    from cryptography import x509

    entry = next(k for k in maa_jwks["keys"] if k["kid"] == MAA_KID)
    numbers = x509.load_der_x509_certificate(base64.b64decode(entry["x5c"][0])).public_key().public_numbers()
    n = b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
    e = b64url(numbers.e.to_bytes(3, "big"))
    verify_maa_token(sgx_token, _jwks_with(maa_jwks, n=n, e=e), real_policy(), now=INSIDE)


def test_duplicate_kid_in_the_jwks_is_untrusted(sgx_token, maa_jwks):
    jwks = copy.deepcopy(maa_jwks)
    jwks["keys"].append(copy.deepcopy(next(k for k in jwks["keys"] if k["kid"] == MAA_KID)))
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, jwks, real_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.UNTRUSTED_KEY


def test_jwks_x5c_chains_must_be_linked_by_signatures(maa_jwks):
    # The four Microsoft chains in the recording (leaf -> PCA 2019 -> Root 2011) pass the key
    # consistency check inside the leaf's validity; a chain with a missing link does not, and
    # neither does a leaf outside its validity.
    from cryptography import x509

    from shared.attestation.maa import _signing_key

    policy = real_policy()
    chains = [entry for entry in maa_jwks["keys"] if len(entry["x5c"]) == 3]
    assert len(chains) == 4
    for entry in chains:
        leaf = x509.load_der_x509_certificate(base64.b64decode(entry["x5c"][0]))
        inside = leaf.not_valid_before_utc + timedelta(days=1)
        _signing_key(entry, policy, inside)
        broken = entry | {"x5c": [entry["x5c"][0], entry["x5c"][2]]}
        for jwk, now in ((broken, inside), (entry, leaf.not_valid_after_utc + timedelta(days=1))):
            with pytest.raises(AttestationError) as excinfo:
                _signing_key(jwk, policy, now)
            assert reason_of(excinfo) == Reason.UNTRUSTED_KEY


# --------------------------------------------------------------------------- issuer and time


def test_wrong_issuer_policy(sgx_token, maa_jwks):
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, real_policy(issuer="https://contoso.wus.attest.azure.net"), now=INSIDE)
    assert reason_of(excinfo) == Reason.WRONG_ISSUER


def test_expired_clock(sgx_token, maa_jwks):
    for now in (at(SGX_EXP), at(SGX_EXP + 3600), at(SGX_EXP + 86400 * 365)):
        with pytest.raises(AttestationError) as excinfo:
            verify_maa_token(sgx_token, maa_jwks, real_policy(leeway=timedelta(0)), now=now)
        assert reason_of(excinfo) == Reason.EXPIRED


def test_clock_before_issue_is_not_yet_valid(sgx_token, maa_jwks):
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, real_policy(), now=at(SGX_IAT - 3600))
    assert reason_of(excinfo) == Reason.NOT_YET_VALID


def test_leeway_absorbs_small_clock_skew(sgx_token, maa_jwks):
    verify_maa_token(sgx_token, maa_jwks, real_policy(leeway=timedelta(seconds=30)), now=at(SGX_IAT - 10))
    verify_maa_token(sgx_token, maa_jwks, real_policy(leeway=timedelta(seconds=30)), now=at(SGX_EXP + 10))


def test_max_age(sgx_token, maa_jwks):
    policy = real_policy(max_age=timedelta(hours=1), leeway=timedelta(0))
    verify_maa_token(sgx_token, maa_jwks, policy, now=at(SGX_IAT + 3600))
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, policy, now=at(SGX_IAT + 7200))
    assert reason_of(excinfo) == Reason.STALE


def test_naive_clock_is_refused(sgx_token, maa_jwks):
    with pytest.raises(ValueError):
        verify_maa_token(sgx_token, maa_jwks, real_policy(), now=INSIDE.replace(tzinfo=None))


# --------------------------------------------------------------------------- enclave identity


def test_mrenclave_not_in_allow_list(sgx_token, maa_jwks):
    policy = real_policy(allowed_mrenclaves={"00" * 32, "ab" * 32})
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, policy, now=INSIDE)
    assert reason_of(excinfo) == Reason.MRENCLAVE_NOT_ALLOWED


def test_mrsigner_not_in_allow_list(sgx_token, maa_jwks):
    policy = real_policy(allowed_mrenclaves=None, allowed_mrsigners={"11" * 32})
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, policy, now=INSIDE)
    assert reason_of(excinfo) == Reason.MRSIGNER_NOT_ALLOWED


def test_mrsigner_only_policy_accepts_upgrades_of_the_same_signer(sgx_token, maa_jwks):
    verify_maa_token(sgx_token, maa_jwks, real_policy(allowed_mrenclaves=None), now=INSIDE)


def test_allow_lists_accept_uppercase_hex_and_bytes(sgx_token, maa_jwks):
    policy = real_policy(allowed_mrenclaves={MRENCLAVE.upper()}, allowed_mrsigners={bytes.fromhex(MRSIGNER)})
    verify_maa_token(sgx_token, maa_jwks, policy, now=INSIDE)


def test_product_id_and_svn(sgx_token, maa_jwks):
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, real_policy(allowed_product_ids={2}), now=INSIDE)
    assert reason_of(excinfo) == Reason.PRODUCT_ID_NOT_ALLOWED
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, real_policy(min_svn=2), now=INSIDE)
    assert reason_of(excinfo) == Reason.SVN_TOO_LOW


def test_sgx_token_under_a_sev_snp_only_policy(sgx_token, maa_jwks):
    policy = real_policy(attestation_types={SEVSNP}, allowed_launch_measurements={"00" * 48})
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, policy, now=INSIDE)
    assert reason_of(excinfo) == Reason.WRONG_ATTESTATION_TYPE


# --------------------------------------------------------------------------- runtime data binding


def _runtime_bytes(sgx_request) -> bytes:
    return b64url_decode(sgx_request["runtimeData"]["data"])


def _quote(sgx_request) -> bytes:
    return b64url_decode(sgx_request["quote"])


def test_recorded_request_matches_the_token(sgx_token, maa_jwks, sgx_request):
    # Facts from the handout README, checked on the real quote.
    claims = verify_maa_token(sgx_token, maa_jwks, real_policy(), now=INSIDE)
    quote = _quote(sgx_request)
    assert hashlib.sha256(quote).hexdigest() == claims.raw["x-ms-sgx-collateral"]["quotehash"]
    assert quote[112:144].hex() == claims.mrenclave and quote[176:208].hex() == claims.mrsigner
    report_data = quote[368:432]  # 48-byte quote header + offset 320 of the report body
    assert report_data[:32] == hashlib.sha256(_runtime_bytes(sgx_request)).digest()
    assert report_data[32:] == bytes(32)
    assert claims.raw["x-ms-sgx-ehd"] == sgx_request["runtimeData"]["data"]
    assert claims.runtime_data == _runtime_bytes(sgx_request)
    assert claims.binding_digest == report_data[:32] == claims.to_evidence().report_data


def test_runtime_data_binding_passes_for_the_request_bytes(sgx_token, maa_jwks, sgx_request):
    verify_maa_token(
        sgx_token,
        maa_jwks,
        real_policy(),
        now=INSIDE,
        expected_runtime_data=_runtime_bytes(sgx_request),
        expected_report_data=_quote(sgx_request)[368:400],
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b + b" ",
        lambda b: b[:-1],
        lambda b: flip(b, 40),
        lambda b: b"",
    ],
)
def test_runtime_data_binding_fails_for_other_bytes(sgx_token, maa_jwks, sgx_request, mutate):
    wrong = mutate(_runtime_bytes(sgx_request))
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(sgx_token, maa_jwks, real_policy(), now=INSIDE, expected_runtime_data=wrong)
    assert reason_of(excinfo) == Reason.RUNTIME_DATA_MISMATCH
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(
            sgx_token, maa_jwks, real_policy(), now=INSIDE, expected_report_data=hashlib.sha256(wrong).digest()
        )
    assert reason_of(excinfo) == Reason.RUNTIME_DATA_MISMATCH


def test_json_runtime_data_binds_through_x_ms_runtime(sgx_token_runtime_json, maa_jwks, sgx_request):
    now = at(SGX_IAT + 1)
    claims = verify_maa_token(
        sgx_token_runtime_json,
        maa_jwks,
        real_policy(),
        now=now,
        expected_runtime_data=_runtime_bytes(sgx_request),
        expected_runtime_jwk=RUNTIME_JWK,
    )
    other_jwk = RUNTIME_JWK | {"x": RUNTIME_JWK["y"]}
    for kwargs in (
        {"runtime_jwk": other_jwk},
        {"runtime_data": b'{"jwk": {}}'},
        {"runtime_data": b"not json"},
        {"report_data": hashlib.sha256(_runtime_bytes(sgx_request)).digest()},
    ):
        with pytest.raises(AttestationError) as excinfo:
            check_runtime_binding(claims, **kwargs)
        assert reason_of(excinfo) == Reason.RUNTIME_DATA_MISMATCH, kwargs


def test_binary_token_has_no_runtime_jwk_claim(sgx_token, maa_jwks):
    claims = verify_maa_token(sgx_token, maa_jwks, real_policy(), now=INSIDE)
    with pytest.raises(AttestationError) as excinfo:
        check_runtime_binding(claims, runtime_jwk=RUNTIME_JWK)
    assert reason_of(excinfo) == Reason.RUNTIME_DATA_MISMATCH


def test_binding_needs_something_to_check(sgx_token, maa_jwks):
    claims = verify_maa_token(sgx_token, maa_jwks, real_policy(), now=INSIDE)
    with pytest.raises(TypeError):
        check_runtime_binding(claims)
    with pytest.raises(ValueError):
        check_runtime_binding(claims, report_data=b"short")


# --------------------------------------------------------------------------- SYNTHETIC SGX tokens


def synthetic_policy(**changes: Any) -> MaaPolicy:
    fields: dict[str, Any] = dict(issuer=SYNTHETIC_ISSUER, allowed_mrenclaves={MRENCLAVE})
    fields.update(changes)
    return MaaPolicy(**fields)


def test_synthetic_debuggable_enclave_is_refused_unless_allowed(synthetic_maa, synthetic_sgx_claims):
    synthetic_sgx_claims["x-ms-sgx-is-debuggable"] = True
    token = synthetic_maa.sign(synthetic_sgx_claims)
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(token, synthetic_maa.jwks, synthetic_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.DEBUGGABLE
    claims = verify_maa_token(token, synthetic_maa.jwks, synthetic_policy(allow_debuggable=True), now=INSIDE)
    assert claims.debuggable is True and claims.to_evidence().debuggable is True


def test_synthetic_token_is_not_accepted_with_the_real_jwks(synthetic_maa, synthetic_sgx_claims, maa_jwks):
    token = synthetic_maa.sign(synthetic_sgx_claims, kid=MAA_KID)
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(token, maa_jwks, real_policy(issuer=SYNTHETIC_ISSUER), now=INSIDE)
    assert reason_of(excinfo) == Reason.BAD_SIGNATURE


def test_synthetic_jku_outside_the_issuer(synthetic_maa, synthetic_sgx_claims):
    for jku in ("https://evil.example/certs", SYNTHETIC_ISSUER + ".evil.example/certs", 42):
        token = synthetic_maa.sign(synthetic_sgx_claims, jku=jku)
        with pytest.raises(AttestationError) as excinfo:
            verify_maa_token(token, synthetic_maa.jwks, synthetic_policy(), now=INSIDE)
        assert reason_of(excinfo) == Reason.UNTRUSTED_JKU


@pytest.mark.parametrize(
    "claim, value",
    [
        ("x-ms-sgx-mrenclave", None),
        ("x-ms-sgx-mrenclave", "xyz"),
        ("x-ms-sgx-is-debuggable", "false"),
        ("x-ms-sgx-product-id", True),
        ("x-ms-sgx-svn", "1"),
        ("x-ms-sgx-ehd", "*not base64*"),
        ("x-ms-runtime", ["not", "an", "object"]),
        ("exp", None),
        ("iat", "1620244716"),
    ],
)
def test_synthetic_malformed_claims(synthetic_maa, synthetic_sgx_claims, claim, value):
    if value is None:
        del synthetic_sgx_claims[claim]
    else:
        synthetic_sgx_claims[claim] = value
    token = synthetic_maa.sign(synthetic_sgx_claims)
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(token, synthetic_maa.jwks, synthetic_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.MALFORMED


def test_synthetic_missing_attestation_type(synthetic_maa, synthetic_sgx_claims):
    del synthetic_sgx_claims["x-ms-attestation-type"]
    token = synthetic_maa.sign(synthetic_sgx_claims)
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(token, synthetic_maa.jwks, synthetic_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.WRONG_ATTESTATION_TYPE


def test_synthetic_nbf_in_the_future(synthetic_maa, synthetic_sgx_claims):
    synthetic_sgx_claims["nbf"] = SGX_IAT + 3600
    token = synthetic_maa.sign(synthetic_sgx_claims)
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(token, synthetic_maa.jwks, synthetic_policy(), now=INSIDE)
    assert reason_of(excinfo) == Reason.NOT_YET_VALID


# --------------------------------------------------------------------------- policy construction


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer": "http://sharedwus.wus.attest.azure.net"},
        {"issuer": "https://sharedwus.wus.attest.azure.net/"},
        {"issuer": "https://sharedwus.wus.attest.azure.net/certs"},
        {"allowed_mrenclaves": None, "allowed_mrsigners": None},
        {"allowed_mrenclaves": {"abcd"}},
        {"allowed_mrenclaves": MRENCLAVE},  # one string, not a set
        {"attestation_types": {"tdxvm"}},
        {"attestation_types": {SEVSNP}},  # without a launch measurement pin
        {"max_age": timedelta(0)},
    ],
)
def test_bad_policies_are_configuration_errors(changes):
    with pytest.raises(ConfigurationError):
        real_policy(**changes)


def test_policy_exposes_the_jwks_url():
    assert real_policy().jwks_url == "https://sharedwus.wus.attest.azure.net/certs"
