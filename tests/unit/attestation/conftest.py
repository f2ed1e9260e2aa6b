"""Fixtures for the evidence verifiers: real recorded evidence (sha256-checked) and synthetic signers.

Real evidence lives in ``tests/fixtures/`` (attribution in ``tests/fixtures/README.md``).
Everything built here with a freshly generated key is SYNTHETIC: it exercises code paths for
which no real recording exists (SEV-SNP, debuggable enclaves, a foreign Nitro PKI).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# SHA-256 of every fixture file, copied from tests/fixtures/README.md (upstream handout table).
FIXTURE_SHA256 = {
    "maa/sgx_attest_request.json": "df7f33a6dc49f981449c5ea299ac31e9ab7819df4819e5473d599265137d6899",
    "maa/sgx_token.jwt": "7d6315391ca0a5d770f27f9068568c9fea77cb5b7e9f1123d8b68c795a8bfc06",
    "maa/sgx_token_runtime_json.jwt": "c229b785da3046cd22fc83f6e09c56f5f6f90c856f9835c44e6b1cf2c9e30407",
    "maa/sgx_certs.json": "be6e6664b92ea09145afc9e5c9cdfe6a2e31db5bd2087fa873082fdcf53e1096",
    "maa/sgx_certs_getsigningcertificates.json": "c95dae29effd517707f9857070ef0a80eef40295814d13ec4981fef8d640ec15",
    "nitro/attestation_document_valid.cbor": "52d1b329d5e4f38d0e26d286c3571907a1a74734ce692a2c41f2ee8f8963b061",
    "nitro/aws_nitro_root_g1.pem": "6eb9688305e4bbca67f44b59c29a0661ae930f09b5945b5d1d9ae01125c8d6c0",
}


def load_fixture(name: str) -> bytes:
    """The bytes of ``tests/fixtures/<name>``, after checking their pinned SHA-256."""
    data = (FIXTURES / name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert digest == FIXTURE_SHA256[name], f"fixture {name} was modified (sha256 {digest})"
    return data


# --------------------------------------------------------------------------- MAA facts

MAA_ISSUER = "https://sharedwus.wus.attest.azure.net"
MAA_KID = "15N2MHoj9iAdkF/c5nRE3J2HB8JG6Vue3Uzvu3K/Ses="
MAA_OTHER_KID = "rPtBGRWTlPmzs5u35L0QRD9WdymeKPRxteTeTlwN0Ec="
MRENCLAVE = "b779202618becb636768e5d902f28d524222735fafb539ea9ba07c3fc171a1c2"
MRSIGNER = "2c1a44952ae8207135c6c29b75b8c029372ee94b677e15c20bd42340f10d41aa"
SGX_IAT = 1620244716
SGX_EXP = 1620273516
RUNTIME_JWK = {
    "crv": "P-256",
    "kty": "EC",
    "use": "sig",
    "x": "18wHLeIgW9wVN6VD1Txgpqy2LszYkMf6J8njVAibvhM",
    "y": "cV4dS4UaLMgP_4fY4j8ir7cl1TXlFdAgcx55o7TkcSA",
}


def at(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="session")
def sgx_token() -> str:
    return load_fixture("maa/sgx_token.jwt").decode("ascii")


@pytest.fixture(scope="session")
def sgx_token_runtime_json() -> str:
    return load_fixture("maa/sgx_token_runtime_json.jwt").decode("ascii")


@pytest.fixture(scope="session")
def maa_jwks() -> dict[str, Any]:
    return json.loads(load_fixture("maa/sgx_certs.json"))


@pytest.fixture(scope="session")
def maa_jwks_other_recording() -> dict[str, Any]:
    return json.loads(load_fixture("maa/sgx_certs_getsigningcertificates.json"))


@pytest.fixture(scope="session")
def sgx_request() -> dict[str, Any]:
    return json.loads(load_fixture("maa/sgx_attest_request.json"))


# --------------------------------------------------------------------------- synthetic MAA

SYNTHETIC_ISSUER = "https://synthetic-test.attest.example"
SYNTHETIC_KID = "synthetic-test-kid"


def self_signed_rsa_cert(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2019, 5, 1, tzinfo=UTC))
        .not_valid_after(datetime(2050, 12, 31, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


@dataclass
class SyntheticMaa:
    """A SYNTHETIC attestation service: a test RSA key published in a test JWKS."""

    issuer: str
    kid: str
    key: rsa.RSAPrivateKey
    jwks: dict[str, Any]

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        header = {"jku": f"{self.issuer}/certs", "kid": self.kid, "typ": "JWT", **headers}
        return jwt.encode(claims, self.key, algorithm="RS256", headers=header)


@pytest.fixture(scope="session")
def synthetic_maa() -> SyntheticMaa:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed_rsa_cert(key, SYNTHETIC_ISSUER)
    der = cert.public_bytes(serialization.Encoding.DER)
    jwks = {"keys": [{"kty": "RSA", "kid": SYNTHETIC_KID, "x5c": [base64.b64encode(der).decode()]}]}
    return SyntheticMaa(SYNTHETIC_ISSUER, SYNTHETIC_KID, key, jwks)


@pytest.fixture
def synthetic_sgx_claims(sgx_token: str) -> dict[str, Any]:
    """SYNTHETIC: the genuine token's claims, re-issued by the synthetic issuer (tests edit them)."""
    claims = jwt.decode(sgx_token, options={"verify_signature": False})
    claims["iss"] = SYNTHETIC_ISSUER
    return claims


# --------------------------------------------------------------------------- Nitro facts

NITRO_NOW = datetime(2023, 3, 22, 14, 28, 27, 405000, tzinfo=UTC)
NITRO_EXPIRED = datetime(2023, 3, 22, 18, 28, 27, 405000, tzinfo=UTC)
NITRO_PCR4 = bytes.fromhex(
    "77bbaf8092c4ff65c8fa065ffa6024ffc9dd5d8e97cc2db6f28a568f9427e3ff1a3fd305931f689663412615fc15a759"
)


@pytest.fixture(scope="session")
def nitro_document() -> bytes:
    return load_fixture("nitro/attestation_document_valid.cbor")


def cose_parts(document: bytes) -> tuple[bytes, dict, bytes, bytes, dict[str, Any]]:
    protected, unprotected, payload, signature = cbor2.loads(document)
    return protected, unprotected, payload, signature, cbor2.loads(payload)


def cose_sign(
    key: ec.EllipticCurvePrivateKey, payload: dict[str, Any] | bytes, protected: bytes = cbor2.dumps({1: -35})
) -> bytes:
    """A COSE_Sign1 over ``payload`` signed with ``key`` (ES384, raw r||s)."""
    payload_bytes = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload_bytes])
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA384())))
    return cbor2.dumps([protected, {}, payload_bytes, r.to_bytes(48, "big") + s.to_bytes(48, "big")])


@dataclass
class SyntheticNitroPki:
    """A SYNTHETIC Nitro-like PKI: root -> intermediate -> leaf, all P-384."""

    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    intermediate_key: ec.EllipticCurvePrivateKey

    def document(self, **overrides: Any) -> bytes:
        payload = {
            "module_id": "i-synthetic-enc0",
            "digest": "SHA384",
            "timestamp": int(NITRO_NOW.timestamp() * 1000),
            "pcrs": {i: bytes([i + 1]) * 48 for i in range(16)},
            "certificate": self.leaf.public_bytes(serialization.Encoding.DER),
            "cabundle": [c.public_bytes(serialization.Encoding.DER) for c in (self.root, self.intermediate)],
            "public_key": None,
            "user_data": None,
            "nonce": None,
        }
        payload.update(overrides)
        return cose_sign(self.leaf_key, payload)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue_cert(
    subject_key: ec.EllipticCurvePrivateKey,
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: str,
    *,
    ca: bool,
    path_length: int | None = None,
    not_before: datetime = NITRO_NOW - timedelta(hours=1),
    not_after: datetime = NITRO_NOW + timedelta(hours=3),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA384())


@pytest.fixture(scope="session")
def synthetic_nitro() -> SyntheticNitroPki:
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
    root = issue_cert(
        root_key,
        "synthetic-root",
        root_key,
        "synthetic-root",
        ca=True,
        not_before=datetime(2019, 1, 1, tzinfo=UTC),
        not_after=datetime(2049, 1, 1, tzinfo=UTC),
    )
    inter = issue_cert(inter_key, "synthetic-intermediate", root_key, "synthetic-root", ca=True, path_length=0)
    leaf = issue_cert(leaf_key, "synthetic-leaf", inter_key, "synthetic-intermediate", ca=False)
    return SyntheticNitroPki(root, inter, leaf, leaf_key, inter_key)
