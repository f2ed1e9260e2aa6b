"""Secrets out of log lines: function keys in ``?code=``, SAS signatures, credentials in URLs and the
values of authentication headers become ``REDACTED`` before anything is logged or printed.

Used by every place that logs or prints a request's URL or headers: ``functions/http.py``
(``handle_errors``), the dev host's log handler (access log and error lines) and the CLI's error line.
Standard library only, so that the dev host and the CLI can use it as well as the core.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

REDACTED = "REDACTED"

#: Query parameters whose value is a secret, by exact (lower-case) name ...
SECRET_PARAMS = frozenset({"code", "sig", "sas", "se_sig", "x-functions-key"})
#: ... or by a part of the name (``api_key``, ``access_token``, ``client_secret``, ``signature`` ...).
SECRET_PARAM_PARTS = ("key", "secret", "token", "password", "passwd", "signature", "credential", "auth")
#: Request headers whose value is a secret.
SECRET_HEADERS = frozenset(
    {
        "x-functions-key",
        "authorization",
        "proxy-authorization",
        "x-subscriber-signature",
        "x-webhook-signature",
        "cookie",
        "set-cookie",
    }
)

# name=value pairs of a query string or a connection string: after "?", "&", ";", a blank or the start
# of the text, up to the next "&", ";", "#", quote or blank.
_PARAM = re.compile(r"(?P<lead>^|[?&;\s])(?P<name>[^=&;#?\s\"'<>]+)=(?P<value>[^&;#\s\"'<>]*)")
# user:password@ in a URL's authority.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s\"']*):(?P<password>[^/@\s\"']+)@")
# "Header: value" or "'header': 'value'" of one of SECRET_HEADERS inside a line of text.
_HEADER = re.compile(
    r"(?P<name>(?:" + "|".join(re.escape(h) for h in sorted(SECRET_HEADERS)) + r"))"
    r"(?P<sep>['\"]?\s*[:=]\s*['\"]?)(?P<value>[^'\",\r\n}]+)",
    re.IGNORECASE,
)


def is_secret_param(name: str) -> bool:
    """Whether a query parameter called ``name`` (percent-encoded or not) carries a secret."""
    lowered = unquote(name).strip().lower()
    return lowered in SECRET_PARAMS or any(part in lowered for part in SECRET_PARAM_PARTS)


def redact_url(url: str) -> str:
    """``url`` with the values of secret query parameters and any password in it replaced by
    ``REDACTED``; everything else is left as it was (also a bare path with a query)."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """A line of text (a log message, an error line) with secrets in the URLs and header values it
    quotes replaced by ``REDACTED``."""
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    if ":" in text or "=" in text:
        text = _HEADER.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    return text


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` fit for a log: the values of :data:`SECRET_HEADERS` replaced."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {name: REDACTED if name.lower() in SECRET_HEADERS else value for name, value in pairs}


def _param(match: re.Match[str]) -> str:
    if not match["value"] or not is_secret_param(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"


class RedactingFilter(logging.Filter):
    """A logging filter (put it on a handler) that rewrites each record's message and formatted
    traceback with :func:`redact_text`, whichever logger it came from."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
