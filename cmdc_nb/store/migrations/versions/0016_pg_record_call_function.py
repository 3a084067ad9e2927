"""PostgreSQL: a completed agent call's write in one round trip, as a function.

A stored agent round's first write (`services.agents.rounds.record_call_in`: the call, its cost record,
the daily summary's and roll-up's upserts, the session's counters, the newest message sequence, the
assistant message, the tool uses that run at once, the audit entries) was nine statements, each paying
psycopg's and SQLAlchemy's per-statement Python; the client's Python, not the server, was most of a
PostgreSQL round. `cmdc_record_call(p jsonb)` runs the same statements on the server, in the same
order and so with the same locks (the summary's row, then the session's: never a cycle with
`complete_agent_call`). Each statement in it reads a fresh snapshot (a volatile function under READ
COMMITTED), so the newest sequence is read after the session's row is locked, as the Python path reads
it. The rows arrive complete — every column, Python-side defaults filled in and bound as SQLAlchemy
binds them (`store.json_rows`) — and `jsonb_populate_record` makes them table rows; a JSON null
becomes SQL NULL there, so `prompt_ref`, the one JSON column a call may leave empty, is taken as the
JSON value itself (SQLAlchemy stores a Python None in a JSON column as JSON `null`).

It returns the message's sequence and the daily summary's id. It refuses as `cmdc_end_tool_use`
(0015) does: `CM002` no such session, `CM003` the session takes no messages (its status in the
message). SQLite has nothing to change. (No `%` in the body: the driver would read it as a placeholder.)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION cmdc_record_call(p jsonb, OUT seq integer, OUT summary_id uuid)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  sid uuid := (p->>'session_id')::uuid;
  n jsonb := p->'counters';
  c agent_calls;
  st text;
BEGIN
  c := jsonb_populate_record(NULL::agent_calls, p->'call');
  c.prompt_ref := p->'call'->'prompt_ref';
  INSERT INTO agent_calls SELECT c.*;
  INSERT INTO cost_records SELECT * FROM jsonb_populate_record(NULL::cost_records, p->'cost');
  INSERT INTO cost_daily_summaries AS t
  SELECT * FROM jsonb_populate_record(NULL::cost_daily_summaries, p->'summary')
  ON CONFLICT (user_id, day) DO UPDATE
     SET total_cost_usd = t.total_cost_usd + excluded.total_cost_usd,
         total_tokens_in = t.total_tokens_in + excluded.total_tokens_in,
         total_tokens_out = t.total_tokens_out + excluded.total_tokens_out,
         total_requests = t.total_requests + excluded.total_requests,
         unpriced_requests = t.unpriced_requests + excluded.unpriced_requests,
         updated_at = excluded.updated_at
  RETURNING t.id INTO summary_id;
  INSERT INTO cost_rollups AS t
  SELECT * FROM jsonb_populate_record(NULL::cost_rollups, p->'rollup')
  ON CONFLICT (user_id, day, provider, model) DO UPDATE
     SET cost_usd = t.cost_usd + excluded.cost_usd,
         requests = t.requests + excluded.requests,
         unpriced_requests = t.unpriced_requests + excluded.unpriced_requests,
         tokens_in = t.tokens_in + excluded.tokens_in,
         tokens_out = t.tokens_out + excluded.tokens_out;
  UPDATE sessions
     SET message_count = message_count + (n->>'message_count')::integer,
         total_tokens_in = total_tokens_in + (n->>'total_tokens_in')::bigint,
         total_tokens_out = total_tokens_out + (n->>'total_tokens_out')::bigint,
         total_cost_usd = total_cost_usd + (n->>'total_cost_usd')::numeric,
         total_duration_ms = total_duration_ms + (n->>'total_duration_ms')::bigint,
         updated_at = (p->>'at')::timestamptz
   WHERE id = sid RETURNING status INTO st;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'CM002', MESSAGE = 'session ' || sid || ' not found';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(p->'writable') w WHERE w = st) THEN
    RAISE EXCEPTION USING ERRCODE = 'CM003', MESSAGE = st;
  END IF;
  SELECT coalesce(max(m.sequence), 0) + 1 INTO seq FROM messages m WHERE m.session_id = sid;
  IF jsonb_typeof(p->'message') = 'object' THEN
    INSERT INTO messages
    SELECT * FROM jsonb_populate_record(NULL::messages, p->'message' || jsonb_build_object('sequence', seq));
  END IF;
  IF jsonb_array_length(p->'tool_uses') > 0 THEN
    INSERT INTO tool_uses SELECT * FROM jsonb_populate_recordset(NULL::tool_uses, p->'tool_uses');
  END IF;
  INSERT INTO activity_logs SELECT * FROM jsonb_populate_recordset(NULL::activity_logs, p->'audit');
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS cmdc_record_call(jsonb)")
