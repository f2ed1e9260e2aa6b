"""The bounds on what callers may send, in one place (docs/http-api.md#limits).

Everything that parses or admits caller input reads its bound from here: the JSON parser
(:func:`shared.encoding.parse_json_input`), the HTTP edge and the dev host (body sizes), the policy
and manifest schemas (``shared/schemas/*.schema.json`` state the same numbers; a unit test keeps them
equal) and the OpenAPI document. Body sizes that are settings have their default here and their
value in :class:`shared.settings.Settings`.
"""

from __future__ import annotations

#: Deepest nesting of arrays and objects in a JSON input (``{}`` or ``[]`` is depth 1).
MAX_JSON_DEPTH = 64
#: Most decimal digits of a JSON integer (sign not counted): room for any uint256/int256 (78 digits),
#: far below Python's 4,300-digit conversion limit.
MAX_JSON_INT_DIGITS = 100

#: Default of ``FABRIC_MAX_BODY_BYTES``: the largest JSON request body (invoke, requests, policy,
#: subscriptions, keys ...). Package zips have their own bound, ``FABRIC_MAX_PACKAGE_BYTES``.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Default of ``FABRIC_MAX_PACKAGE_BYTES``: the largest uploaded package zip (compressed).
DEFAULT_MAX_PACKAGE_BYTES = 5 * 1024 * 1024
#: Largest webhook body (it travels inside the fire queue message, whose limit is 64 KiB).
MAX_WEBHOOK_BYTES = 16 * 1024

#: A cryptlet's per-call time limit (policy ``timeout_s``, manifest ``config.timeoutSeconds``), seconds:
#: at least long enough to start a call, at most the host's ``functionTimeout`` (host.json, 5 minutes).
MIN_TIMEOUT_S = 0.1
MAX_TIMEOUT_S = 300
#: Most warm or concurrent regions of one cryptlet (``min_instances``/``max_instances``,
#: ``minimumInstances``/``maximumInstances``).
MAX_INSTANCES = 64
#: Most host patterns in an ``egress`` list, and the longest pattern: ``*.`` + a 253-character DNS
#: name + ``:65535``.
MAX_EGRESS_HOSTS = 64
MAX_HOST_PATTERN_CHARS = 261
#: Longest free-text note of a policy, description of a manifest.
MAX_NOTE_CHARS = 1000
