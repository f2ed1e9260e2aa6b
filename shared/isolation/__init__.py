"""Isolation providers: where cryptlets run (see ``docs/isolation.md``).

:mod:`shared.isolation.provider` defines the interface (the paper's ``IsolatedRegionCreate``,
call-in, call-out handler, ``GetDigest``, ``CheckSignature``, plus evidence);
:mod:`shared.isolation.process` is the ``process`` provider (one confined OS process per region),
forked by :mod:`shared.isolation.zygote` and confined by :mod:`shared.isolation.sandbox`;
:mod:`shared.isolation.runtime` is the container that runs inside a region;
:mod:`shared.isolation.protocol` is the wire format between them and
:mod:`shared.isolation.callout` the call-outs from a region to its host;
:mod:`shared.isolation.region_output` carries what regions print into the host log.
"""
