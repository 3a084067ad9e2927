"""PostgreSQL: a stored round's writes as one statement each, their events logged by the same call.

With 0015 and 0016 a round's two writes were one function call each, but each was still a transaction
of four round trips: BEGIN, the function, the event log's append (`store.event_log`), COMMIT. Here
`cmdc_record_call_logged` and `cmdc_end_tool_use_logged` run the function and then append the
transaction's events to the log themselves — the log's advisory lock, the row and the NOTIFY, exactly
as the append's statement does — so a write can be sent on an autocommit connection as one statement,
which is a transaction of its own: one round trip.

The events carry the message's sequence, which only the function learns (under the session's lock).
The writer predicts it (the recorder knows the sequence it stored last) and encodes the events with it,
compressed as every append is; the function compares, and a wrong prediction (another writer added a
message meanwhile) raises `CM004` before anything is kept: the writer then takes the transaction's
path, as before. A $0 call's cost leaves the daily summary's maps alone only when its row already holds
the call's keys (`services.costs.maps_need_nothing`): the writer names that row, and any other (one
rebuilt meanwhile) raises `CM004` too. `events` NULL: nothing to log (a workspace that does not share its events).

(No `%` in the bodies: the driver would read it as a placeholder.)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# The log's lock key and channel: `store.event_log._LOCK_KEY` and `CHANNEL` (a test compares them).
LOG = r"""
CREATE OR REPLACE FUNCTION cmdc_log_events(origin text, at timestamptz, events bytea) RETURNS void
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
  IF events IS NULL THEN
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(1668113509);
  INSERT INTO event_log (origin, inserted_at, events) VALUES (origin, at, events);
  PERFORM pg_notify('cmdc_events', origin);
END
$fn$
"""

RECORD_CALL = r"""
CREATE OR REPLACE FUNCTION cmdc_record_call_logged(
  p jsonb, expect_seq integer, expect_summary uuid, origin text, at timestamptz, events bytea,
  OUT seq integer, OUT summary_id uuid)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
  SELECT r.seq, r.summary_id INTO seq, summary_id FROM cmdc_record_call(p) r;
  IF expect_seq IS NOT NULL AND seq <> expect_seq THEN
    RAISE EXCEPTION USING ERRCODE = 'CM004', MESSAGE = 'sequence ' || seq || ', not ' || expect_seq;
  END IF;
  IF expect_summary IS NOT NULL AND summary_id <> expect_summary THEN
    RAISE EXCEPTION USING ERRCODE = 'CM004', MESSAGE = 'another daily summary row';
  END IF;
  PERFORM cmdc_log_events(origin, at, events);
END
$fn$
"""

END_TOOL = r"""
CREATE OR REPLACE FUNCTION cmdc_end_tool_use_logged(
  p jsonb, expect_seq integer, origin text, at timestamptz, events bytea)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  seq integer := cmdc_end_tool_use(p);
BEGIN
  IF expect_seq IS NOT NULL AND seq IS DISTINCT FROM expect_seq THEN
    RAISE EXCEPTION USING ERRCODE = 'CM004', MESSAGE = 'sequence ' || coalesce(seq, 0) || ', not ' || expect_seq;
  END IF;
  PERFORM cmdc_log_events(origin, at, events);
  RETURN seq;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LOG)
        op.execute(RECORD_CALL)
        op.execute(END_TOOL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS cmdc_end_tool_use_logged(jsonb, integer, text, timestamptz, bytea)"
        )
        op.execute(
            "DROP FUNCTION IF EXISTS cmdc_record_call_logged(jsonb, integer, uuid, text, timestamptz, bytea)"
        )
        op.execute("DROP FUNCTION IF EXISTS cmdc_log_events(text, timestamptz, bytea)")
