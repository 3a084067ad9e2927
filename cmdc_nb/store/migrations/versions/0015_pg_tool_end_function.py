"""PostgreSQL: a tool use's end in one round trip, as a function.

A stored agent round's second write (`services.agents.rounds.record_tool_end_in`: the tool use
completed or failed, the session's message count, the result message with the next sequence) was four
statements, each paying psycopg's and SQLAlchemy's per-statement Python and a share of the round
trips: ≈1.4 ms of a 6 ms round, against ≈0.6 ms as one call of a function that runs the same
statements on the server. `cmdc_end_tool_use(p jsonb)` does exactly what the Python path does, in the
same order and with the same locks; each statement in it reads a fresh snapshot (a volatile function
under READ COMMITTED), so the newest sequence is read after the session's row is locked, as the Python
path reads it. It returns the message's sequence (NULL without a message), and refuses with its own
SQLSTATE what the Python path refuses: `CM001` the tool use is not executing, `CM002` no such session,
`CM003` the session takes no messages (its status in the message). SQLite has nothing to change. (No `%` in the body: the driver would read it as a placeholder.)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION cmdc_end_tool_use(p jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  at_ timestamptz := (p->>'at')::timestamptz;
  sid uuid := (p->>'session_id')::uuid;
  tid uuid := (p->>'tool_use_id')::uuid;
  msg jsonb := p->'message';
  st text;
  seq integer;
BEGIN
  IF p->>'status' = 'completed' THEN
    UPDATE tool_uses
       SET output = p->>'output', output_truncated = false, file_changes = '[]'::jsonb,
           status = 'completed', completed_at = at_, duration_ms = (p->>'duration_ms')::integer,
           updated_at = at_
     WHERE id = tid AND status = 'executing';
  ELSE
    UPDATE tool_uses
       SET error_type = p->>'error_type', error_message = p->>'error_message',
           status = p->>'status', completed_at = at_, duration_ms = (p->>'duration_ms')::integer,
           updated_at = at_
     WHERE id = tid AND status = 'executing';
  END IF;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'CM001', MESSAGE = 'tool use ' || tid || ' is not executing';
  END IF;
  IF msg IS NULL OR jsonb_typeof(msg) = 'null' THEN
    RETURN NULL;
  END IF;
  UPDATE sessions SET message_count = message_count + 1, updated_at = at_
   WHERE id = sid RETURNING status INTO st;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'CM002', MESSAGE = 'session ' || sid || ' not found';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(p->'writable') w WHERE w = st) THEN
    RAISE EXCEPTION USING ERRCODE = 'CM003', MESSAGE = st;
  END IF;
  SELECT coalesce(max(sequence), 0) + 1 INTO seq FROM messages WHERE session_id = sid;
  INSERT INTO messages (id, session_id, role, content, content_blocks, sequence, agent_call_id,
                        tool_use_id, visible_in_branches, attachments, metadata, inserted_at, updated_at)
  VALUES ((msg->>'id')::uuid, sid, msg->>'role', msg->>'content', msg->'content_blocks', seq,
          (msg->>'agent_call_id')::uuid, (msg->>'tool_use_id')::uuid, '{}'::uuid[], '[]'::jsonb,
          msg->'metadata', at_, at_);
  RETURN seq;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS cmdc_end_tool_use(jsonb)")
