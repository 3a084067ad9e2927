"""What every service stands on, and nothing a user calls directly.

- `workspace`: the workspace (engine, bus, vault) and its transactions, whose events publish after commit
- `access`: the acting user and what they may read and change
- `audit`: the activity-log entry each change writes
- `service`: fetch-or-NotFound with row locks, transition tables, counters, JSON-safe values
- `validate`: argument checks that raise `InvalidInputError` naming the field
- `event_bridge`: committed events shared between processes (event_log + LISTEN/NOTIFY)
- `proc`: this process's identity, for leases

Imports only `errors`, `store` and `events`.
"""
