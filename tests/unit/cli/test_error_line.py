"""The CLI's one error line never shows a key given in the URL."""

from __future__ import annotations

import pytest

from cryptlet_cli.main import fail

SECRET = "AbC123-function-key"


def test_the_error_line_redacts_a_key_in_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        fail(f"Fabric unreachable: cannot reach the fabric at http://127.0.0.1:7071/?code={SECRET} (ConnectError)")
    line = capsys.readouterr().err
    assert exited.value.code == 1 and line.count("\n") == 1
    assert SECRET not in line and "?code=REDACTED" in line
