"""Isolation providers: where cryptlets run.

:mod:`shared.isolation.provider` defines the interface (the paper's ``IsolatedRegionCreate``,
call-in, ``GetDigest``, ``CheckSignature``); :mod:`shared.isolation.process` is the ``process``
provider (one OS process per region); :mod:`shared.isolation.runtime` is the container that
runs inside a region; :mod:`shared.isolation.protocol` is the wire format between them.
"""
