"""``shared.redact``: function keys, signatures and passwords never reach a log line."""

from __future__ import annotations

import logging
import sys

import pytest

from shared.redact import REDACTED, RedactingFilter, redact_headers, redact_text, redact_url

SECRET = "s3cr3t-K3y_value=="


@pytest.mark.parametrize(
    "url,kept",
    [
        (f"http://127.0.0.1:7071/api/cryptlets/x/invoke?code={SECRET}", "/api/cryptlets/x/invoke?code="),
        (f"https://h.example/api/x?a=1&code={SECRET}&b=2", "?a=1&code=REDACTED&b=2"),
        (f"/api/x?sig={SECRET}&sv=2022-11-02&se=2030-01-01", "&sv=2022-11-02&se=2030-01-01"),
        (f"https://acct.blob.core.windows.net/c/b?sv=2022&sp=r&signature={SECRET}", "?sv=2022&sp=r&signature="),
        (f"https://h/x?api_key={SECRET}", "?api_key="),
        (f"https://h/x?access_token={SECRET}#frag", "#frag"),
        (f"https://h/x?Code={SECRET}", "?Code="),
        (f"https://h/x?x-functions-key={SECRET}", "?x-functions-key="),
        (f"https://user:{SECRET}@h.example/path", "https://user:REDACTED@h.example/path"),
    ],
)
def test_secret_query_parameters_and_passwords_are_redacted(url: str, kept: str) -> None:
    redacted = redact_url(url)
    assert SECRET not in redacted and REDACTED in redacted and kept in redacted


def test_urls_without_secrets_are_left_alone() -> None:
    for url in ("http://127.0.0.1:7071/api/ledger/entries?from=0&limit=10", "/api/ping", "https://h/x?code="):
        assert redact_url(url) == url


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1:50211 - "POST /api/cryptlets/x/invoke?code={SECRET} HTTP/1.1" 500',
        f"POST http://127.0.0.1:7071/api/x?code={SECRET} failed unexpectedly",
        f"cannot reach the fabric at http://127.0.0.1:1/?code={SECRET} (ConnectError)",
        f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={SECRET};EndpointSuffix=core.windows.net",
        f"{{'x-functions-key': '{SECRET}', 'accept': '*/*'}}",
        f"Authorization: Bearer {SECRET}",
        f"X-Subscriber-Signature: 0x{SECRET}",
        f"x-webhook-signature={SECRET}",
    ],
)
def test_secrets_quoted_in_a_line_of_text_are_redacted(line: str) -> None:
    assert SECRET not in redact_text(line) and REDACTED in redact_text(line)


def test_header_values_are_redacted_by_name() -> None:
    headers = {
        "x-functions-key": SECRET,
        "Authorization": SECRET,
        "X-Subscriber-Signature": SECRET,
        "X-Webhook-Signature": SECRET,
        "content-type": "application/json",
    }
    redacted = redact_headers(headers)
    assert SECRET not in str(redacted) and redacted["content-type"] == "application/json"
    assert redact_headers([("Cookie", SECRET)]) == {"Cookie": REDACTED}


def test_the_logging_filter_redacts_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("fabric.http", logging.ERROR, __file__, 1, "%s failed", (f"GET /x?code={SECRET}",), None)
    assert RedactingFilter().filter(record) is True
    assert SECRET not in record.getMessage() and "code=REDACTED" in record.getMessage()
    try:
        raise RuntimeError(f"could not fetch https://h/x?sig={SECRET}")
    except RuntimeError:
        failed = logging.LogRecord("devhost", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    RedactingFilter().filter(failed)
    assert SECRET not in logging.Formatter().format(failed)
