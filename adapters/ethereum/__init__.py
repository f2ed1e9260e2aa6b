"""Ethereum chain adapter: watches a CryptletProxy over JSON-RPC (web3.py), asks the fabric over HTTP
and submits the signed envelopes back (``fulfil`` / ``deliver``). Run ``python -m adapters.ethereum``;
see docs/adapters.md."""
