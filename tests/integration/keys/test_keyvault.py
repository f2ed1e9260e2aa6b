"""The Key Vault key store through the real Azure SDK against a local HTTPS Key Vault.

The server below implements the Key Vault secrets REST calls the store makes (set secret, get
secret, and the bearer-token challenge: an unauthenticated request gets ``401`` with
``WWW-Authenticate: Bearer authorization=..., resource=...``), so the SDK's own pipeline
(challenge policy, token request, TLS verification, retries, deserialisation) runs unchanged.

Two concessions, both only here: the credential returns a static token (there is no Entra ID to
ask; in production the store uses ``DefaultAzureCredential``), and the client is built with
``verify_challenge_resource=False`` because the SDK accepts a challenge only from a subdomain of
its resource (``*.vault.azure.net``), which a vault at ``https://127.0.0.1:<port>`` cannot be.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.envelope import Domain
from shared.errors import ConfigurationError, NotFound, StorageError
from shared.host.composition import open_key_store
from shared.isolation.process import ProcessProvider
from shared.keys.keyvault import CONTENT_TYPE, KeyVaultKeyStore, secret_name
from shared.keys.store import SealedKey, TableKeyStore
from shared.packages.digest import package_digest
from shared.settings import Settings
from shared.storage import Storage

TOKEN = "static-test-token"
TENANT = "00000000-0000-0000-0000-0000000000aa"
SAMPLE = Path(__file__).resolve().parents[3] / "cryptlet_packages" / "customer_validator"


# -- a local Key Vault -------------------------------------------------------------------------------
@dataclass
class Vault:
    url: str
    ca_file: str
    secrets: dict[str, list[dict]] = field(default_factory=dict)
    deleted: dict[str, list[dict]] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), generated for this test run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cryptlet-fabric test vault")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "vault.pem", directory / "vault.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _handler(vault: Vault) -> type[BaseHTTPRequestHandler]:
    class KeyVaultSecrets(BaseHTTPRequestHandler):
        """``PUT /secrets/{name}``, ``GET /secrets/{name}[/{version}]`` and ``DELETE /secrets/{name}`` of the
        Key Vault REST API."""

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, body: dict | None, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            record = {
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query),
                "authorization": self.headers.get("Authorization"),
                "body": body,
            }
            vault.requests.append(record)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(
                    401,
                    {
                        "error": {
                            "code": "Unauthorized",
                            "message": "AKV10000: Request is missing a Bearer or PoP token.",
                        }
                    },
                    {
                        "WWW-Authenticate": f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                        'resource="https://vault.azure.net"'
                    },
                )
                return
            if "api-version" not in record["query"]:
                self._reply(400, {"error": {"code": "BadParameter", "message": "api-version is required"}})
                return
            parts = [p for p in url.path.split("/") if p]
            if len(parts) < 2 or parts[0] != "secrets":
                self._reply(404, {"error": {"code": "NotFound", "message": "no such route"}})
                return
            name = parts[1]
            if self.command == "PUT" and len(parts) == 2:
                request = json.loads(body)
                version = uuid.uuid4().hex
                now = int(dt.datetime.now(dt.UTC).timestamp())
                bundle = {
                    "value": request["value"],
                    "id": f"{vault.url}/secrets/{name}/{version}",
                    "attributes": {
                        "enabled": True,
                        "created": now,
                        "updated": now,
                        "recoveryLevel": "Recoverable+Purgeable",
                        "recoverableDays": 90,
                    },
                }
                if "contentType" in request:
                    bundle["contentType"] = request["contentType"]
                if "tags" in request:
                    bundle["tags"] = request["tags"]
                vault.secrets.setdefault(name, []).append(bundle)
                self._reply(200, bundle)
            elif self.command == "GET" and len(parts) in (2, 3):
                versions = vault.secrets.get(name, [])
                wanted = parts[2] if len(parts) == 3 and parts[2] else None
                match = [b for b in versions if wanted is None or b["id"].endswith("/" + wanted)]
                if not match:
                    self._reply(
                        404,
                        {
                            "error": {
                                "code": "SecretNotFound",
                                "message": f"A secret with (name/id) {name} was not found in this key vault.",
                            }
                        },
                    )
                else:
                    self._reply(200, match[-1])
            elif self.command == "DELETE" and len(parts) == 2:
                versions = vault.secrets.pop(name, None)
                if not versions:
                    self._reply(404, {"error": {"code": "SecretNotFound", "message": f"{name} was not found"}})
                    return
                vault.deleted[name] = versions
                self._reply(  # a soft-deleted secret: recoverable (recoveryId) until the retention ends
                    200,
                    {
                        **versions[-1],
                        "recoveryId": f"{vault.url}/deletedsecrets/{name}",
                        "deletedDate": int(dt.datetime.now(dt.UTC).timestamp()),
                    },
                )
            else:
                self._reply(405, {"error": {"code": "BadRequest", "message": "method not supported"}})

        do_GET = do_PUT = do_DELETE = _handle

    return KeyVaultSecrets


@pytest.fixture
def vault(tmp_path) -> Iterator[Vault]:
    cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Vault(url=f"https://127.0.0.1:{server.server_address[1]}", ca_file=str(cert))
    server.RequestHandlerClass = _handler(state)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class StaticToken:
    """A credential that hands out one fixed token (the test vault has no Entra ID behind it)."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(dt.datetime.now(dt.UTC).timestamp()) + 3600)


def store_for(vault: Vault, credential: StaticToken) -> KeyVaultKeyStore:
    return KeyVaultKeyStore.from_url(
        vault.url, credential, connection_verify=vault.ca_file, verify_challenge_resource=False, retry_total=0
    )


# -- tests --------------------------------------------------------------------------------------------
def test_sealed_key_round_trip_through_the_sdk_and_the_bearer_challenge(vault):
    credential = StaticToken()
    store = store_for(vault, credential)
    address = "0x" + "AB" * 20
    key = SealedKey(address=address, digest="0x" + "11" * 32, provider="process", blob=os.urandom(80), version=3)
    store.put(key)
    fetched = store.get(address)
    assert fetched == SealedKey(address=address, digest=key.digest, provider="process", blob=key.blob, version=3)
    # The SDK first sent the request without credentials, got the challenge, asked the credential
    # for a token for the challenge's resource, and retried with it.
    first, second = vault.requests[0], vault.requests[1]
    assert first["authorization"] is None and first["body"] == b""
    assert second["authorization"] == f"Bearer {TOKEN}" and second["method"] == "PUT"
    assert credential.scopes[0] == ("https://vault.azure.net/.default",)
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in vault.requests[1:])
    # One secret named from the address, holding only the sealed blob, tagged with digest and version.
    name = secret_name(address)
    assert name == "cryptlet-" + "ab" * 20 and list(vault.secrets) == [name]
    stored = vault.secrets[name][-1]
    assert stored["value"] == base64.b64encode(key.blob).decode() and stored["contentType"] == CONTENT_TYPE
    assert stored["tags"] == {"address": address.lower(), "digest": key.digest, "provider": "process", "version": "3"}
    store.close()


def test_newest_value_wins_and_unknown_addresses_are_not_found(vault):
    store = store_for(vault, StaticToken())
    address = "0x" + "cd" * 20
    store.put(SealedKey(address=address, digest="0x" + "11" * 32, provider="process", blob=b"\x01" * 40, version=1))
    store.put(SealedKey(address=address, digest="0x" + "22" * 32, provider="process", blob=b"\x02" * 40, version=2))
    assert store.get(address).version == 2 and store.get(address).blob == b"\x02" * 40
    assert len(vault.secrets[secret_name(address)]) == 2  # Key Vault keeps the older version
    with pytest.raises(NotFound):
        store.get("0x" + "ef" * 20)
    store.close()


def test_delete_removes_the_secret_and_is_idempotent(vault):
    """A failed registration's key is deleted: the vault soft-deletes the secret (recoverable until its
    retention ends) and the store no longer finds it; deleting a key that is not there is no error."""
    store = store_for(vault, StaticToken())
    address = "0x" + "de" * 20
    store.put(SealedKey(address=address, digest="0x" + "11" * 32, provider="process", blob=b"\x01" * 40))
    store.delete(address)
    assert secret_name(address) in vault.deleted and secret_name(address) not in vault.secrets
    with pytest.raises(NotFound):
        store.get(address)
    store.delete(address)
    store.delete("0x" + "ef" * 20)
    assert not any(r["path"].startswith("/deletedsecrets") for r in vault.requests)  # not waited for
    store.close()


def test_table_store_delete_removes_every_version(storage):
    store = TableKeyStore(Storage(storage).table(f"k{uuid.uuid4().hex[:10]}keys"))
    address = "0x" + "AB" * 20
    for version in (1, 2):
        store.put(SealedKey(address, "0x" + "11" * 32, "process", bytes([version]) * 40, version))
    other = SealedKey("0x" + "cd" * 20, "0x" + "11" * 32, "process", b"\x03" * 40)
    store.put(other)
    store.delete(address)
    with pytest.raises(NotFound):
        store.get(address)
    assert store.get(other.address) == other
    store.delete(address)  # nothing left: no error


def test_a_rejected_token_is_a_storage_error(vault):
    store = store_for(vault, StaticToken("wrong-token"))
    with pytest.raises(StorageError) as caught:
        store.get("0x" + "ab" * 20)
    assert "refused the credential" in caught.value.detail
    store.close()


def test_keys_generated_in_a_region_unseal_from_the_vault(vault, tmp_path):
    """The registration path with Key Vault: region key -> sealed blob in the vault -> new region unseals."""
    package = tmp_path / "customer_validator"
    shutil.copytree(SAMPLE, package, ignore=shutil.ignore_patterns("__pycache__"))
    digest = package_digest(package)
    provider = ProcessProvider(os.urandom(32))
    store = store_for(vault, StaticToken())
    try:
        region = provider.create_region(package, digest, domain=Domain())
        key = region.call("generate_key")
        region.close()
        store.put(
            SealedKey(
                address=key["address"],
                digest="0x" + digest.hex(),
                provider=provider.name,
                blob=base64.b64decode(key["sealed_key"]),
            )
        )
        sealed = store.get(key["address"])
        region = provider.create_region(package, digest, domain=Domain())
        unsealed = region.call("unseal", address=key["address"], sealed_key=base64.b64encode(sealed.blob).decode())
        region.close()
    finally:
        provider.close()
        store.close()
    assert unsealed["address"] == key["address"] and unsealed["public_key"] == key["public_key"]


def test_the_setting_chooses_the_store(storage):
    base = {"AzureWebJobsStorage": storage, "FABRIC_SEALING_SECRET": base64.b64encode(os.urandom(32)).decode()}
    assert isinstance(open_key_store(Settings.from_env(base)), TableKeyStore)
    chosen = open_key_store(
        Settings.from_env(
            {**base, "FABRIC_KEY_STORE": "keyvault", "FABRIC_KEY_VAULT_URL": "https://kv-fabric.vault.azure.net/"}
        )
    )
    assert isinstance(chosen, KeyVaultKeyStore)
    assert chosen.client.vault_url == "https://kv-fabric.vault.azure.net"
    assert type(chosen.client._client._config.authentication_policy._credential).__name__ == "DefaultAzureCredential"
    chosen.close()
    for bad, field_name in (
        ({"FABRIC_KEY_STORE": "keyvault"}, "FABRIC_KEY_VAULT_URL"),
        ({"FABRIC_KEY_STORE": "keyvault", "FABRIC_KEY_VAULT_URL": "http://kv"}, "FABRIC_KEY_VAULT_URL"),
        ({"FABRIC_KEY_STORE": "disk"}, "FABRIC_KEY_STORE"),
    ):
        with pytest.raises(ConfigurationError) as caught:
            Settings.from_env({**base, **bad})
        assert caught.value.field == field_name
