"""Development host for the Cryptlet Fabric: serves ``function_app.py`` without Core Tools.

Pieces: :mod:`devhost.azurite` (start/stop Azurite on free loopback ports),
:mod:`devhost.server` (HTTP, timer and queue triggers), :mod:`devhost.demo` (the demo).
"""
