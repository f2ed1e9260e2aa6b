"""Development host for the Cryptlet Fabric: serves ``function_app.py`` without Core Tools.

Pieces: :mod:`devhost.azurite` (start/stop Azurite on free loopback ports),
:mod:`devhost.server` (``build(app_dir) -> DevHost``: HTTP, timer and queue triggers;
``python -m devhost serve``). The demo that drives it is :mod:`cryptlet_cli.demo`. See ``devhost/README.md``.
"""
