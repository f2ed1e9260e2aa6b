"""`cryptlet header`'s ABI type check, without solc or a process (header generation compiled with
solc-js: tests/e2e/cli/test_author_tools.py)."""

from __future__ import annotations

import pytest

from cryptlet_cli.header import abi_type
from shared.errors import InvalidInput


@pytest.mark.parametrize(
    "bad",
    ["uint7", "uint512", "int0", "bytes33", "bytes0", "float", "json[]", "uint256[0]", "tuple", "", "string[01]", 5],
)
def test_header_refuses_non_abi_types(bad):
    with pytest.raises(InvalidInput) as caught:
        abi_type(bad, field="$.interface.methods.m.inputs[0].type")
    assert caught.value.field == "$.interface.methods.m.inputs[0].type"
