"""The storage wrapper translates Azure errors in one place; the clock is defined once."""

from __future__ import annotations

import re
import time

import azure.identity  # at collection: importing it runs `uname`, which the unit tier refuses
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

from shared.clock import now_ms, utc_now
from shared.errors import NotFound, StorageError
from shared.settings import Settings
from shared.storage import Storage, storage_errors


def test_azure_errors_become_storage_errors_naming_what_was_unreachable():
    with pytest.raises(StorageError) as caught:
        with storage_errors("catalog"):
            raise ServiceRequestError("https://acct.table.core.windows.net/?sig=SECRET")
    assert caught.value.detail == "catalog unreachable: ServiceRequestError"
    assert "SECRET" not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(StorageError, match="ledger storage unreachable: HttpResponseError"):
        with storage_errors("ledger storage"):
            raise HttpResponseError("boom")


def test_specific_errors_handled_inside_are_not_translated():
    with pytest.raises(NotFound):
        with storage_errors("catalog"):
            try:
                raise ResourceNotFoundError("gone")
            except ResourceNotFoundError:
                raise NotFound("no such row", field="name") from None


def test_one_credential_per_identity_based_storage(monkeypatch):
    made = []
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", lambda: made.append(object()) or made[-1])
    storage = Storage("https://acct.table.core.windows.net")
    assert storage.identity_based and not Storage("UseDevelopmentStorage=true").identity_based
    assert storage.credential() is storage.credential() and len(made) == 1


def test_clock():
    before = time.time_ns() // 1_000_000
    assert before <= now_ms() <= time.time_ns() // 1_000_000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())


def test_settings_never_show_the_sealing_secret():
    secret = bytes(range(100, 132))
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "FABRIC_SEALING_SECRET": __import__("base64").b64encode(secret).decode(),
        }
    )
    assert settings.sealing_secret == secret
    assert "sealing_secret" not in repr(settings) and secret.hex() not in repr(settings)
