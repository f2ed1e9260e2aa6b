"""What regions print, on the host side without a region: escaping, line cutting, the rate limit and
the counted notices (:mod:`shared.isolation.region_output`; real regions printing through the pipe:
tests/integration/isolation/test_region_files_and_output.py)."""

from __future__ import annotations

import logging
import os

import pytest

from shared.isolation.callout import HostCallOuts
from shared.isolation.region_output import (
    BURST,
    LINE_COST,
    MAX_LINE,
    NOTICE_EVERY_S,
    RATE,
    OutputStream,
    RegionOutput,
    escape,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def output(clock: Clock) -> RegionOutput:
    return RegionOutput(logging.getLogger("test.region"), clock=clock)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.region"]


@pytest.mark.parametrize(
    "raw, shown",
    [
        (b"plain text: 1 + 2 = 3", "plain text: 1 + 2 = 3"),
        (b"\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
        (b"a\rINFO fabric: forged", "a\\x0dINFO fabric: forged"),
        (b"tab\there\x00\x7f", "tab\\x09here\\x00\\x7f"),
        (b"back\\slash \\x1b", "back\\\\slash \\\\x1b"),  # a literal "\x1b" cannot pass for an escape
        ("caf\u00e9 \u20ac \u2028 \u202e \x85".encode(), "caf\u00e9 \u20ac \\u2028 \\u202e \\x85"),
        (b"not utf-8: \xff\xfe", "not utf-8: \\xff\\xfe"),
    ],
)
def test_escape_keeps_printable_text_and_escapes_everything_else(raw, shown):
    assert escape(raw) == shown
    assert escape(raw).isprintable()


def test_lines_are_logged_escaped_and_prefixed(output, caplog):
    stream = OutputStream(fd=-1, label="evil\nname", pid=42)
    with caplog.at_level(logging.INFO, logger="test.region"):
        output._feed(stream, b"first\nINFO fabric: forged\x1b[0m\r\nhalf a ")
        output._feed(stream, b"line\n")
    assert lines(caplog) == [
        "cryptlet evil\nname[42]: first",  # the label is escaped when a stream is attached, not here
        "cryptlet evil\nname[42]: INFO fabric: forged\\x1b[0m",
        "cryptlet evil\nname[42]: half a line",
    ]


def test_long_lines_are_cut(output, caplog):
    stream = OutputStream(fd=-1, label="c", pid=1)
    with caplog.at_level(logging.INFO, logger="test.region"):
        output._feed(stream, b"x" * (MAX_LINE + 10))
        output._feed(stream, b"y" * 5 + b"\nnext\n")
    assert lines(caplog) == [f"cryptlet c[1]: {'x' * MAX_LINE}... (15 more bytes)", "cryptlet c[1]: next"]


def test_output_over_the_rate_is_dropped_and_counted(output, clock, caplog):
    stream = OutputStream(fd=-1, label="noisy", pid=7)
    line = b"z" * 1000 + b"\n"
    per_line = 1000 + LINE_COST
    with caplog.at_level(logging.INFO, logger="test.region"):
        output._feed(stream, line * 1000)  # ~1 MB at once
        logged = len(lines(caplog))
        assert logged == BURST // per_line  # the burst, then nothing
        clock.now += 1.0  # a second later: RATE more
        output._feed(stream, line * 100)
        assert len(lines(caplog)) == logged + RATE // per_line  # no notice yet: at most one every 10 s
        assert output.pending_notices()
        clock.now += NOTICE_EVERY_S
        output.flush_notices()
        assert not output.pending_notices()
    notice = lines(caplog)[-1]
    assert notice.startswith("cryptlet noisy: ") and "dropped" in notice
    assert int(notice.split(": ", 1)[1].split(" line(s)")[0]) == 1100 - logged - RATE // per_line


def test_a_region_that_ends_has_its_drops_counted_at_once(clock, caplog):
    output = RegionOutput(logging.getLogger("test.region"), rate=1, burst=1000, clock=clock)
    read, write = os.pipe()
    os.write(write, b"a" * 500 + b"\n" + b"y\n" * 10 + b"last words")
    os.close(write)
    stream = OutputStream(fd=read, label="brief", pid=3)
    with caplog.at_level(logging.INFO, logger="test.region"):
        output._finish(stream)  # reads to EOF, logs what the budget admits, counts the rest, closes
    assert lines(caplog) == [
        f"cryptlet brief[3]: {'a' * 500}",
        *["cryptlet brief[3]: y"] * 4,  # 1000 - (500 + 96) leaves room for four of (1 + 96)
        "cryptlet brief: 7 line(s), 22 bytes of its output dropped (over 1 bytes/s)",
    ]
    with pytest.raises(OSError):
        os.fstat(read)


def test_a_line_whose_start_was_dropped_is_dropped_whole(output, clock, caplog):
    stream = OutputStream(fd=-1, label="c", pid=1)
    with caplog.at_level(logging.INFO, logger="test.region"):
        output._feed(stream, (b"a" * 4000 + b"\n") * 100 + b"start of a line that is dropped")
        clock.now += 10.0
        output._feed(stream, b" ...its end\nthe next line\n")
    messages = lines(caplog)
    assert not any("its end" in m for m in messages)
    assert messages[-1] == "cryptlet c[1]: the next line"


def test_callout_logs_share_the_budget_and_are_escaped(output, clock, caplog):
    handler = output.limit_callouts(HostCallOuts("chatty", logging.getLogger("test.region")), "chatty")
    assert handler is not None
    with caplog.at_level(logging.INFO, logger="test.region"):
        assert handler("log", {"message": "one\nINFO fabric: forged\x1b[1m"}) == {}
        results = [handler("log", {"message": "m" * 4000}) for _ in range(200)]
        assert {"dropped": True} in results
        assert handler("time", {})["unix_ms"] > 0  # other call-outs are not metered
        clock.now += NOTICE_EVERY_S
        assert handler("log", {"message": "later"}) == {}
    messages = lines(caplog)
    assert messages[0] == "cryptlet chatty: one\\x0aINFO fabric: forged\\x1b[1m"
    assert any("dropped" in m for m in messages) and messages[-1] == "cryptlet chatty: later"
