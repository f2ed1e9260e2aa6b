"""The Cryptlet Fabric core: registration, regions, signing, ledger and key storage.

This package never imports ``azure.functions``; the thin trigger code lives in ``functions/``.
"""

__version__ = "0.1.0"
