"""The one error type the dev host raises for bad configuration."""

from __future__ import annotations


class DevHostError(Exception):
    """A configuration problem that stops the dev host from starting.

    The message is a single line meant for the user (the CLI prints it as
    ``devhost: error: <message>`` and exits 1).
    """
