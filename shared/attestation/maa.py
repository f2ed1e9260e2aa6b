"""Verify Microsoft Azure Attestation (MAA) tokens for SGX enclaves and SEV-SNP VMs.

An MAA instance checks a hardware quote and answers with an RS256 JWT signed by one of the keys
it publishes at ``{issuer}/certs`` (a JWKS whose keys carry an ``x5c`` certificate). This module
checks such a token against a :class:`MaaPolicy`::

    policy = MaaPolicy(issuer="https://myattestation.weu.attest.azure.net",
                       allowed_mrsigners={"2c1a44...41aa"})
    claims = verify_maa_token(token, jwks, policy, now=datetime.now(timezone.utc),
                              expected_report_data=cryptlet_report_data(public_key, nonce))

The checks run in a fixed order (documented in ``docs/evidence.md``) and the first failure
raises :class:`~shared.errors.AttestationError` with a stable ``reason`` (:class:`Reason`).
The caller fetches the JWKS from :attr:`MaaPolicy.jwks_url` over TLS; this module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, overload
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.errors import ConfigurationError

from .evidence import Reason, VerifiedEvidence, as_utc, fail

__all__ = ["SGX", "SEVSNP", "MaaPolicy", "MaaClaims", "verify_maa_token", "check_runtime_binding"]

SGX = "sgx"
SEVSNP = "sevsnpvm"
_SUPPORTED_TYPES = frozenset({SGX, SEVSNP})
_ALGORITHM = "RS256"
MAX_TOKEN_BYTES = 256 * 1024

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HEX = re.compile(r"[0-9a-f]*")

# One PyJWS instance restricted to RS256: the JWS layer (signature check) is pyjwt's.
_JWS = jwt.PyJWS(algorithms=[_ALGORITHM])


# --------------------------------------------------------------------------- policy


def _hex_set(values: Iterable[str | bytes] | None, nbytes: int, name: str) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise ConfigurationError(f"{name} must be a collection of values, not one value", field=name)
    out = set()
    for value in values:
        text = value.hex() if isinstance(value, bytes) else str(value).strip().lower()
        if len(text) != 2 * nbytes or not _HEX.fullmatch(text):
            raise ConfigurationError(f"{name} entries must be {nbytes}-byte hex values", field=name)
        out.add(text)
    return frozenset(out)


@dataclass(frozen=True)
class MaaPolicy:
    """What an MAA token must say for the fabric to trust the region behind it.

    ``None`` allow-lists are not checked; a set must contain the token's value (an empty set
    therefore accepts nothing). An SGX policy must pin ``allowed_mrenclaves`` or
    ``allowed_mrsigners``; a SEV-SNP policy must pin ``allowed_launch_measurements``.
    Hex values are normalised to lowercase. ``min_svn`` applies to ``x-ms-sgx-svn`` (SGX) and
    ``x-ms-sevsnpvm-guestsvn`` (SEV-SNP). ``max_age`` bounds ``now - iat``; ``leeway`` absorbs
    clock skew for ``exp``/``nbf``/``iat``. Signing keys shorter than ``min_rsa_key_bits`` are
    refused (``untrusted_key``).
    """

    issuer: str
    attestation_types: frozenset[str] = frozenset({SGX})
    allowed_mrenclaves: frozenset[str] | None = None
    allowed_mrsigners: frozenset[str] | None = None
    allowed_product_ids: frozenset[int] | None = None
    min_svn: int | None = None
    allowed_launch_measurements: frozenset[str] | None = None
    allowed_host_data: frozenset[str] | None = None
    allow_debuggable: bool = False
    max_age: timedelta | None = None
    leeway: timedelta = timedelta(seconds=30)
    min_rsa_key_bits: int = 2048

    def __post_init__(self) -> None:
        parts = urlsplit(self.issuer)
        if (
            parts.scheme != "https"
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username
            or parts.password
        ):
            raise ConfigurationError(
                "issuer must be an https origin such as 'https://name.region.attest.azure.net'", field="issuer"
            )
        types = frozenset(self.attestation_types)
        if not types or not types <= _SUPPORTED_TYPES:
            raise ConfigurationError(
                f"attestation_types must be a non-empty subset of {sorted(_SUPPORTED_TYPES)}", field="attestation_types"
            )
        set_ = object.__setattr__
        set_(self, "attestation_types", types)
        set_(self, "allowed_mrenclaves", _hex_set(self.allowed_mrenclaves, 32, "allowed_mrenclaves"))
        set_(self, "allowed_mrsigners", _hex_set(self.allowed_mrsigners, 32, "allowed_mrsigners"))
        set_(
            self,
            "allowed_launch_measurements",
            _hex_set(self.allowed_launch_measurements, 48, "allowed_launch_measurements"),
        )
        set_(self, "allowed_host_data", _hex_set(self.allowed_host_data, 32, "allowed_host_data"))
        if self.allowed_product_ids is not None:
            set_(self, "allowed_product_ids", frozenset(int(p) for p in self.allowed_product_ids))
        if SGX in types and self.allowed_mrenclaves is None and self.allowed_mrsigners is None:
            raise ConfigurationError(
                "an SGX policy must pin allowed_mrenclaves or allowed_mrsigners", field="allowed_mrenclaves"
            )
        if SEVSNP in types and self.allowed_launch_measurements is None:
            raise ConfigurationError(
                "a SEV-SNP policy must pin allowed_launch_measurements", field="allowed_launch_measurements"
            )
        if self.leeway < timedelta(0) or (self.max_age is not None and self.max_age <= timedelta(0)):
            raise ConfigurationError("leeway must be >= 0 and max_age > 0", field="max_age")

    @property
    def jwks_url(self) -> str:
        """Where the issuer publishes its signing keys (fetch it over TLS)."""
        return f"{self.issuer}/certs"


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class MaaClaims:
    """The verified, typed content of an MAA token.

    ``runtime_data``: the raw runtime data bytes (``x-ms-sgx-ehd``) when the attester sent them
    as ``Binary``; ``runtime_claims``: ``x-ms-runtime`` (runtime data sent as ``JSON``);
    ``runtime_jwk``: ``x-ms-runtime.jwk``; ``report_data``: the 64-byte SEV-SNP report data.
    ``raw``: every claim of the token, read-only.
    """

    attestation_type: str
    issuer: str
    kid: str
    issued_at: datetime
    expires_at: datetime
    not_before: datetime | None
    debuggable: bool
    mrenclave: str | None = None
    mrsigner: str | None = None
    product_id: int | None = None
    svn: int | None = None
    launch_measurement: str | None = None
    host_data: str | None = None
    report_data: bytes | None = None
    runtime_data: bytes | None = None
    runtime_claims: Mapping[str, Any] | None = None
    runtime_jwk: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def binding_digest(self) -> bytes | None:
        """The 32 bytes the hardware report binds: SHA-256 of the SGX runtime data
        (MAA checked it equals the quote's ``report_data[0:32]``) or SEV-SNP ``report_data[0:32]``."""
        if self.report_data is not None:
            return self.report_data[:32]
        if self.runtime_data is not None:
            return hashlib.sha256(self.runtime_data).digest()
        return None

    def to_evidence(self) -> VerifiedEvidence:
        measurement = self.mrenclave if self.attestation_type == SGX else self.launch_measurement
        kind = "maa-sgx" if self.attestation_type == SGX else "maa-sevsnp"
        return VerifiedEvidence(
            kind=kind,
            measurement=measurement or "",
            debuggable=self.debuggable,
            report_data=self.binding_digest,
            issued_at=self.issued_at,
        )


# --------------------------------------------------------------------------- parsing helpers


def _b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding: alphabet, length and canonical trailing bits."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != segment:
        raise ValueError("non-canonical base64url")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise fail(Reason.MALFORMED, f"token {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise fail(Reason.MALFORMED, f"token {what} is not a JSON object")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@overload
def _int_claim(claims: Mapping[str, Any], name: str, *, required: Literal[True] = ...) -> int: ...
@overload
def _int_claim(claims: Mapping[str, Any], name: str, *, required: bool) -> int | None: ...
def _int_claim(claims: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not _is_int(value):
        raise fail(Reason.MALFORMED, f"claim {name} must be an integer")
    return value


def _bool_claim(claims: Mapping[str, Any], name: str) -> bool:
    value = claims.get(name)
    if not isinstance(value, bool):
        raise fail(Reason.MALFORMED, f"claim {name} must be a boolean")
    return value


def _hex_claim(claims: Mapping[str, Any], name: str, nbytes: int) -> str:
    value = claims.get(name)
    text = value.lower() if isinstance(value, str) else ""
    if len(text) != 2 * nbytes or not _HEX.fullmatch(text):
        raise fail(Reason.MALFORMED, f"claim {name} must be {nbytes} bytes of hex")
    return text


def _timestamp(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise fail(Reason.MALFORMED, "token time claim out of range") from None


# --------------------------------------------------------------------------- signing key


def _select_key(jwks: Mapping[str, Any], kid: str) -> Mapping[str, Any]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise fail(Reason.UNTRUSTED_KEY, "the JWKS has no 'keys' list")
    matches = [k for k in keys if isinstance(k, Mapping) and k.get("kid") == kid]
    if not matches:
        raise fail(Reason.UNKNOWN_KID, "no key in the issuer's JWKS has the token's kid", kid=kid)
    if len(matches) > 1:
        raise fail(Reason.UNTRUSTED_KEY, "the JWKS lists the token's kid more than once", kid=kid)
    return matches[0]


def _signing_key(jwk: Mapping[str, Any], policy: MaaPolicy, now: datetime) -> rsa.RSAPublicKey:
    """The RSA key of ``x5c[0]``, after checking the JWKS entry is self-consistent."""

    def bad(detail: str) -> Exception:
        return fail(Reason.UNTRUSTED_KEY, detail, kid=jwk.get("kid"))

    if jwk.get("kty", "RSA") != "RSA":
        raise bad("the JWKS key is not an RSA key")
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", _ALGORITHM) != _ALGORITHM:
        raise bad("the JWKS key is not meant for RS256 signatures")
    chain_b64 = jwk.get("x5c")
    if not isinstance(chain_b64, list) or not chain_b64 or not all(isinstance(c, str) for c in chain_b64):
        raise bad("the JWKS key has no x5c certificate")
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain_b64]
    except (binascii.Error, ValueError, x509.InvalidVersion):  # InvalidVersion is not a ValueError
        raise bad("the JWKS key's x5c is not a list of base64 DER certificates") from None
    leaf = chain[0]
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise bad("the x5c certificate does not hold an RSA key")
    numbers = key.public_numbers()
    if ("n" in jwk) != ("e" in jwk):
        raise bad("the JWKS key has only one of n and e")
    if "n" in jwk:
        try:
            n = int.from_bytes(_b64url_decode(jwk["n"]), "big")
            e = int.from_bytes(_b64url_decode(jwk["e"]), "big")
        except (TypeError, ValueError):
            raise bad("the JWKS key's n/e are not base64url") from None
        if (n, e) != (numbers.n, numbers.e):
            raise bad("the JWKS key's n/e differ from its x5c certificate")
    if key.key_size < policy.min_rsa_key_bits:
        raise bad(f"the signing key has {key.key_size} bits; the policy requires {policy.min_rsa_key_bits}")
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise bad("the signing certificate is outside its validity period")
    for child, issuer in zip(chain, chain[1:], strict=False):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise bad("the JWKS key's x5c chain is not linked by signatures") from None
    return key


# --------------------------------------------------------------------------- verification


def verify_maa_token(
    token: str,
    jwks: Mapping[str, Any],
    policy: MaaPolicy,
    *,
    now: datetime,
    expected_runtime_data: bytes | None = None,
    expected_report_data: bytes | None = None,
    expected_runtime_jwk: Mapping[str, Any] | None = None,
) -> MaaClaims:
    """Verify an MAA JWT against ``jwks`` (the issuer's ``/certs`` document) and ``policy``.

    ``now`` is the verification time (timezone-aware). The optional ``expected_*`` arguments
    are passed to :func:`check_runtime_binding`. Returns the typed claims; raises
    :class:`~shared.errors.AttestationError` on the first failed check.
    """
    now = as_utc(now)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise fail(Reason.MALFORMED, "the token is not a string of acceptable size")
    token = token.strip()
    segments = token.split(".")
    if len(segments) != 3:
        raise fail(Reason.MALFORMED, "the token is not a compact JWS (three segments)")
    try:
        header_bytes, _, _ = (_b64url_decode(s) for s in segments)
    except ValueError:
        raise fail(Reason.MALFORMED, "a token segment is not canonical base64url") from None
    header = _json_object(header_bytes, "header")

    # 1. Algorithm and header.
    alg = header.get("alg")
    if alg != _ALGORITHM:
        raise fail(Reason.UNSUPPORTED_ALG, f"token alg {alg!r} is not {_ALGORITHM}")
    if "crit" in header:
        raise fail(Reason.MALFORMED, "token header has critical extensions this verifier ignores")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise fail(Reason.MALFORMED, "token header has no kid")

    # 2. Signing key and signature.
    key = _signing_key(_select_key(jwks, kid), policy, now)
    try:
        decoded = _JWS.decode_complete(token, key=key, algorithms=[_ALGORITHM])
    except jwt.InvalidSignatureError:
        raise fail(Reason.BAD_SIGNATURE, "token signature does not verify with its kid's key", kid=kid) from None
    except jwt.InvalidAlgorithmError:
        raise fail(Reason.UNSUPPORTED_ALG, f"token alg is not {_ALGORITHM}") from None
    except jwt.PyJWTError as exc:
        raise fail(Reason.MALFORMED, f"token could not be decoded: {exc}") from None
    claims = _json_object(decoded["payload"], "payload")

    # 3. Issuer, key URL and time.
    if claims.get("iss") != policy.issuer:
        raise fail(Reason.WRONG_ISSUER, "token iss is not the pinned issuer")
    jku = header.get("jku")
    if jku is not None and not (isinstance(jku, str) and jku.startswith(policy.issuer + "/")):
        raise fail(Reason.UNTRUSTED_JKU, "token jku is not under the pinned issuer")
    exp = _timestamp(_int_claim(claims, "exp"))
    iat = _timestamp(_int_claim(claims, "iat"))
    nbf_s = _int_claim(claims, "nbf", required=False)
    nbf = _timestamp(nbf_s) if nbf_s is not None else None
    if now >= exp + policy.leeway:
        raise fail(Reason.EXPIRED, f"token expired at {exp.isoformat()}")
    if (nbf is not None and now + policy.leeway < nbf) or now + policy.leeway < iat:
        raise fail(Reason.NOT_YET_VALID, "token is not valid yet (nbf/iat in the future)")
    if policy.max_age is not None and now - iat > policy.max_age + policy.leeway:
        raise fail(Reason.STALE, f"token issued at {iat.isoformat()} is older than the policy allows")

    # 4. Attestation type and its claims.
    att_type = claims.get("x-ms-attestation-type")
    if att_type not in policy.attestation_types:
        raise fail(Reason.WRONG_ATTESTATION_TYPE, f"attestation type {att_type!r} is not one the policy accepts")
    common = dict(
        attestation_type=att_type,
        issuer=policy.issuer,
        kid=kid,
        issued_at=iat,
        expires_at=exp,
        not_before=nbf,
        raw=MappingProxyType(claims),
        **_runtime_claims(claims),
    )
    if att_type == SGX:
        result = MaaClaims(
            debuggable=_bool_claim(claims, "x-ms-sgx-is-debuggable"),
            mrenclave=_hex_claim(claims, "x-ms-sgx-mrenclave", 32),
            mrsigner=_hex_claim(claims, "x-ms-sgx-mrsigner", 32),
            product_id=_int_claim(claims, "x-ms-sgx-product-id"),
            svn=_int_claim(claims, "x-ms-sgx-svn"),
            **common,
        )
    else:
        result = MaaClaims(
            debuggable=_bool_claim(claims, "x-ms-sevsnpvm-is-debuggable"),
            launch_measurement=_hex_claim(claims, "x-ms-sevsnpvm-launchmeasurement", 48),
            host_data=_hex_claim(claims, "x-ms-sevsnpvm-hostdata", 32),
            report_data=bytes.fromhex(_hex_claim(claims, "x-ms-sevsnpvm-reportdata", 64)),
            svn=_int_claim(claims, "x-ms-sevsnpvm-guestsvn", required=False),
            **common,
        )
    _check_identity(result, policy)

    # 5. Runtime data binding.
    if expected_runtime_data is not None or expected_report_data is not None or expected_runtime_jwk is not None:
        check_runtime_binding(
            result,
            runtime_data=expected_runtime_data,
            report_data=expected_report_data,
            runtime_jwk=expected_runtime_jwk,
        )
    return result


def _runtime_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"runtime_data": None, "runtime_claims": None, "runtime_jwk": None}
    ehd = claims.get("x-ms-sgx-ehd")
    if ehd is not None:
        try:
            if not isinstance(ehd, str):
                raise ValueError("not a string")
            out["runtime_data"] = _b64url_decode(ehd)
        except ValueError:
            raise fail(Reason.MALFORMED, "claim x-ms-sgx-ehd is not base64url") from None
    runtime = claims.get("x-ms-runtime")
    if runtime is not None:
        if not isinstance(runtime, dict):
            raise fail(Reason.MALFORMED, "claim x-ms-runtime is not an object")
        out["runtime_claims"] = MappingProxyType(runtime)
        jwk_ = runtime.get("jwk")
        if jwk_ is not None:
            if not isinstance(jwk_, dict):
                raise fail(Reason.MALFORMED, "claim x-ms-runtime.jwk is not an object")
            out["runtime_jwk"] = MappingProxyType(jwk_)
    return out


def _check_identity(claims: MaaClaims, policy: MaaPolicy) -> None:
    if claims.debuggable and not policy.allow_debuggable:
        raise fail(Reason.DEBUGGABLE, f"the {claims.attestation_type} region is debuggable")
    if claims.attestation_type == SGX:
        if policy.allowed_mrenclaves is not None and claims.mrenclave not in policy.allowed_mrenclaves:
            raise fail(
                Reason.MRENCLAVE_NOT_ALLOWED, "MRENCLAVE is not in the policy's allow-list", mrenclave=claims.mrenclave
            )
        if policy.allowed_mrsigners is not None and claims.mrsigner not in policy.allowed_mrsigners:
            raise fail(
                Reason.MRSIGNER_NOT_ALLOWED, "MRSIGNER is not in the policy's allow-list", mrsigner=claims.mrsigner
            )
        if policy.allowed_product_ids is not None and claims.product_id not in policy.allowed_product_ids:
            raise fail(Reason.PRODUCT_ID_NOT_ALLOWED, "ISV product id is not in the policy's allow-list")
    else:
        if (
            policy.allowed_launch_measurements is not None
            and claims.launch_measurement not in policy.allowed_launch_measurements
        ):
            raise fail(
                Reason.MEASUREMENT_NOT_ALLOWED,
                "SEV-SNP launch measurement is not in the policy's allow-list",
                measurement=claims.launch_measurement,
            )
        if policy.allowed_host_data is not None and claims.host_data not in policy.allowed_host_data:
            raise fail(Reason.HOST_DATA_NOT_ALLOWED, "SEV-SNP host data is not in the policy's allow-list")
    if policy.min_svn is not None and (claims.svn is None or claims.svn < policy.min_svn):
        raise fail(Reason.SVN_TOO_LOW, f"security version {claims.svn} is below {policy.min_svn}")


_JWK_PUBLIC_MEMBERS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e"), "OKP": ("kty", "crv", "x")}


def _same_public_jwk(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    members = _JWK_PUBLIC_MEMBERS.get(a.get("kty"))  # type: ignore[arg-type]
    if members is None or a.get("kty") != b.get("kty"):
        return False
    return all(a.get(m) is not None and a.get(m) == b.get(m) for m in members)


def check_runtime_binding(
    claims: MaaClaims,
    *,
    runtime_data: bytes | None = None,
    report_data: bytes | None = None,
    runtime_jwk: Mapping[str, Any] | None = None,
) -> None:
    """Check that verified ``claims`` bind what the caller expects; raise ``runtime_data_mismatch``.

    ``runtime_data``: the exact bytes the region sent to MAA as ``runtimeData``. They must equal
    ``x-ms-sgx-ehd`` (Binary), their SHA-256 must equal SEV-SNP ``report_data[0:32]``, and when
    the token carries neither, their JSON must equal ``x-ms-runtime`` (runtime data sent as JSON).
    ``report_data``: the 32-byte binding digest, normally
    :func:`~shared.attestation.cryptlet_report_data`; it must equal :attr:`MaaClaims.binding_digest`.
    ``runtime_jwk``: a public JWK that must equal ``x-ms-runtime.jwk`` on its public members.
    Every argument given must match.
    """

    def mismatch(detail: str) -> Exception:
        return fail(Reason.RUNTIME_DATA_MISMATCH, detail)

    if runtime_data is None and report_data is None and runtime_jwk is None:
        raise TypeError("check_runtime_binding needs runtime_data, report_data or runtime_jwk")
    if runtime_data is not None:
        checked = False
        if claims.runtime_data is not None:
            checked = True
            if not hmac.compare_digest(claims.runtime_data, runtime_data):
                raise mismatch("x-ms-sgx-ehd differs from the expected runtime data")
        if claims.report_data is not None:
            checked = True
            if not hmac.compare_digest(claims.report_data[:32], hashlib.sha256(runtime_data).digest()):
                raise mismatch("SEV-SNP report data does not hash the expected runtime data")
        if not checked:
            if claims.runtime_claims is None:
                raise mismatch("the token carries no runtime data")
            try:
                expected_json = json.loads(runtime_data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise mismatch("the token carries JSON runtime data; the expected bytes are not JSON") from None
            if expected_json != dict(claims.runtime_claims):
                raise mismatch("x-ms-runtime differs from the expected runtime data")
    if report_data is not None:
        if len(report_data) != 32:
            raise ValueError("report_data must be the 32-byte binding digest")
        digest = claims.binding_digest
        if digest is None:
            raise mismatch("the token carries no raw runtime data or report data to bind")
        if not hmac.compare_digest(digest, report_data):
            raise mismatch("the token's report data does not match the expected binding digest")
    if runtime_jwk is not None:
        if claims.runtime_jwk is None or not _same_public_jwk(runtime_jwk, claims.runtime_jwk):
            raise mismatch("x-ms-runtime.jwk differs from the expected key")
