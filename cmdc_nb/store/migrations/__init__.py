"""Alembic revisions of the cmdc_nb schema, append-only."""

# The newest revision. Bump it with every new revision file: a test checks it against the scripts, and
# `connect()` compares the database's ledger with it to skip loading Alembic when nothing is to be done.
HEAD = "0017"
