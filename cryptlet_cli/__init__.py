"""The ``cryptlet`` command line: register, list, invoke and verify cryptlets; audit the ledger."""
