"""The progress call-out on the host, without a region: its parameter checks, and where a report goes
(the sink, or only the log; best effort when the job store is down). (The option pricer reporting
progress from real regions and through the dev host: tests/e2e/samples/test_option_pricer.py.)"""

from __future__ import annotations

import logging

import pytest

from shared.errors import Conflict, InvalidInput, StorageError
from shared.isolation.callout import HostCallOuts

REQUEST = "0x" + "ab" * 32


@pytest.mark.parametrize(
    "params, field",
    [
        ({"request_id": "0x12", "fraction": 0.5}, "request_id"),
        ({"fraction": 0.5}, "request_id"),
        ({"request_id": REQUEST, "fraction": 1.5}, "fraction"),
        ({"request_id": REQUEST, "fraction": -0.1}, "fraction"),
        ({"request_id": REQUEST, "fraction": True}, "fraction"),
        ({"request_id": REQUEST, "fraction": "0.5"}, "fraction"),
        ({"request_id": REQUEST, "fraction": 0.5, "message": 5}, "message"),
        ({"request_id": REQUEST, "fraction": 0.5, "message": "x" * 501}, "message"),
        ({"request_id": REQUEST, "fraction": 0.5, "eta": 3}, "eta"),
    ],
)
def test_progress_call_out_checks_its_parameters(params, field):
    sink: list = []
    with pytest.raises(InvalidInput) as caught:
        HostCallOuts("c", progress=lambda *r: sink.append(r))("progress", params)
    assert caught.value.field == field and not sink


def test_progress_call_out_goes_to_the_sink_or_only_the_log(caplog):
    sink: list = []
    assert HostCallOuts("c", progress=lambda *r: sink.append(r))(
        "progress", {"request_id": REQUEST.upper().replace("0X", "0x"), "fraction": 1, "message": "done"}
    ) == {"recorded": True}
    assert sink == [("c", REQUEST, 1.0, "done")]
    with caplog.at_level(logging.DEBUG, logger="fabric.region"):
        assert HostCallOuts("c")("progress", {"request_id": REQUEST, "fraction": 0.25}) == {"recorded": False}
    assert "cryptlet c: progress" in caplog.text

    def unreachable(*_):
        raise StorageError("job store unreachable: ServiceRequestError")

    def intruder(*_):
        raise Conflict("request reports the progress of another cryptlet", field="request_id")

    assert HostCallOuts("c", progress=unreachable)("progress", {"request_id": REQUEST, "fraction": 0.5}) == {
        "recorded": False
    }  # best effort: the long job goes on
    assert "progress not recorded" in caplog.text
    with pytest.raises(Conflict):
        HostCallOuts("c", progress=intruder)("progress", {"request_id": REQUEST, "fraction": 0.5})
