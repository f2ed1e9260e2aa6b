"""The Bicep template, the settings the code reads, the sample settings and docs/settings.md agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
BICEP = (ROOT / "iac" / "main.bicep").read_text()
APP_SETTINGS = set(re.findall(r"\{\s*name:\s*'([A-Za-z0-9_]+)'\s*,\s*value:", BICEP))


def test_bicep_sets_every_setting_the_code_reads():
    for name in SETTINGS:
        if name == "AzureWebJobsStorage":
            assert "AzureWebJobsStorage__accountName" in APP_SETTINGS  # identity-based in Azure
        else:
            assert name in APP_SETTINGS, f"iac/main.bicep does not set {name}"


def test_bicep_sets_no_fabric_setting_the_code_does_not_read():
    assert {s for s in APP_SETTINGS if s.startswith("FABRIC_")} == {s for s in SETTINGS if s.startswith("FABRIC_")}


def test_bicep_keeps_secrets_in_key_vault_and_storage_keyless():
    assert "@Microsoft.KeyVault(SecretUri=" in BICEP
    assert "allowSharedKeyAccess: false" in BICEP
    assert re.search(r"name: guid\(", BICEP), "role assignments should be guid()-named"


def test_sample_settings_list_every_setting():
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert set(SETTINGS) <= set(values)
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_settings_doc_explains_every_setting():
    doc = (ROOT / "docs" / "settings.md").read_text()
    for name in list(SETTINGS) + ["DEVHOST_FUNCTION_KEY"]:
        assert f"`{name}`" in doc, f"docs/settings.md does not explain {name}"


def test_host_json_has_bundle_v4_and_queues():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensionBundle"]["version"].startswith("[4.")
    assert host["extensions"]["queues"]["maxDequeueCount"] >= 1
