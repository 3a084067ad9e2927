"""Eight processes writing into the same sessions at once, on both backends.

Each process appends messages, books costs and adds to the sessions' counters, queues approval items
and races the others to decide them, and keeps a presence record on every session. Afterwards:
nothing lost, no sequence number duplicated or skipped, every item decided by exactly one process,
the daily summary, the cost rollups and the sessions' counters equal to the sums of the records."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import sqlalchemy as sa
from reliability import record, sized

from cmdc_nb import approvals, costs, presence, sessions
from cmdc_nb.store.models import ApprovalItem, CostRecord, CostRollup, PresenceRecord, User
from cmdc_nb.workspace import Workspace

PROCESSES = 8
ROUNDS = sized(160, 1000)  # per process; a message every round, a cost every other, an item every 8th
SESSIONS = 4

WORKER = textwrap.dedent(
    """
    import json, sys, uuid
    from decimal import Decimal
    import cmdc_nb
    from cmdc_nb import approvals, costs, presence, sessions
    from cmdc_nb.errors import InvalidStateError

    url, home, worker, rounds, uid, *sids = sys.argv[1:]
    w, rounds = int(worker), int(rounds)
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    print("ready", flush=True)
    sys.stdin.readline()  # wait until every process is connected, then all start together
    here = [presence.join_resource(uid, "session", sid, client_id=f"w{w}-{k}", ws=ws)
            for k, sid in enumerate(sids)]
    created, won, lost = [], [], 0
    for i in range(rounds):
        sid = sids[i % len(sids)]
        sessions.create_message(sid, role="user", content=f"w{w}-m{i}", ws=ws)
        if i % 2 == 0:
            usd = Decimal(w * 1000 + i) / Decimal(10**6)
            costs.record_cost(uid, source_type="agent_call", source_id=uuid.uuid4(), provider="openai",
                              model=f"model-{i % 3}", tokens_in=i, tokens_out=w + 1, cost_usd=usd,
                              session=sid, notebook_cell=None, ws=ws)
            sessions.increment_session_stats(sid, tokens_in=i, tokens_out=w + 1, cost_usd=usd, ws=ws)
        if i % 8 == 0:
            item = approvals.create_approval_item(uid, approval_type="custom", title=f"w{w}-a{i}",
                                                  payload={"w": w, "i": i}, session=sid, ws=ws)
            created.append(str(item.id))
        if i % 8 == 4:  # race everyone else for the oldest pending items of this session
            for item in approvals.list_session_pending_approvals(sid, limit=2, ws=ws).entries:
                try:
                    if (w + i) % 3:
                        approvals.approve_item(item, uid, note=f"w{w}", ws=ws)
                    else:
                        approvals.deny_item(item, uid, note=f"w{w}", ws=ws)
                    won.append(str(item.id))
                except InvalidStateError:
                    lost += 1
        if i % 10 == 0:
            presence.heartbeat(here[i % len(here)], ws=ws)
    for p in here:
        presence.leave_resource(p, ws=ws)
    ws.close()
    print(json.dumps({"created": created, "won": won, "lost": lost}), flush=True)
    """
)


def test_eight_processes_write_messages_costs_approvals_and_presence_into_shared_sessions(
    ws: Workspace, user: User, db_url: str, home_dir: Path
) -> None:
    shared = [sessions.create_session(user, name=f"shared {i}", ws=ws) for i in range(SESSIONS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, str(home_dir), str(w), str(ROUNDS), str(user.id)]
            + [str(s.id) for s in shared],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    seconds = time.perf_counter() - started

    # Messages: each session's sequence is 1..n, every message is there exactly once.
    contents: Counter[str] = Counter()
    for s in shared:
        rows = sessions.get_conversation_history(s, limit=None, roles=None, ws=ws)
        expected = PROCESSES * ROUNDS // SESSIONS
        assert [m.sequence for m in rows] == list(range(1, expected + 1))  # no gaps, no duplicates
        contents.update(m.content for m in rows)
        writers = [m.content.split("-")[0] for m in rows]
        assert sum(a != b for a, b in pairwise(writers)) >= PROCESSES  # the writers did interleave
    wanted = {f"w{w}-m{i}" for w in range(PROCESSES) for i in range(ROUNDS)}
    assert set(contents) == wanted and set(contents.values()) == {1}  # none lost, none doubled

    # Costs: every record there; the summary, the rollups and the session counters add up to them.
    booked = [(w, i) for w in range(PROCESSES) for i in range(0, ROUNDS, 2)]
    want_total = sum((Decimal(w * 1000 + i) / Decimal(10**6) for w, i in booked), Decimal(0))
    with ws.read() as db:
        records = list(db.scalars(sa.select(CostRecord).where(CostRecord.user_id == user.id)))
        rollup_total = db.scalar(
            sa.select(sa.func.sum(CostRollup.cost_usd)).where(CostRollup.user_id == user.id)
        )
        rollup_requests = db.scalar(sa.select(sa.func.sum(CostRollup.requests)))
    assert len(records) == len(booked)
    assert sum((r.cost_usd or Decimal(0) for r in records), Decimal(0)) == want_total
    days = {r.day for r in records}
    summaries = [costs.get_daily_summary(user, d, ws=ws) for d in days]
    assert sum((s.total_cost_usd for s in summaries if s), Decimal(0)) == want_total
    assert sum(s.total_requests for s in summaries if s) == len(booked)
    assert sum(s.total_tokens_in for s in summaries if s) == sum(i for _, i in booked)
    assert Decimal(rollup_total) == want_total and rollup_requests == len(booked)
    for d in days:  # recomputing a day from its records changes nothing
        before = costs.get_daily_summary(user, d, ws=ws)
        assert before is not None
        after = costs.regenerate_daily_summary(user, d, ws=ws)
        assert (after.total_cost_usd, after.total_requests) == (before.total_cost_usd, before.total_requests)
    for k, s in enumerate(shared):
        mine = [(w, i) for w, i in booked if i % SESSIONS == k]
        row = sessions.get_session(s, ws=ws)
        assert row.message_count == PROCESSES * ROUNDS // SESSIONS
        assert row.total_tokens_in == sum(i for _, i in mine)
        assert row.total_tokens_out == sum(w + 1 for w, _ in mine)
        assert row.total_cost_usd == sum(
            (Decimal(w * 1000 + i) / Decimal(10**6) for w, i in mine), Decimal(0)
        )

    # Approvals: every item created is stored; each decided one was decided by exactly one process.
    created = [c for r in reports for c in r["created"]]
    won = [c for r in reports for c in r["won"]]
    assert len(set(created)) == len(created) == PROCESSES * len(range(0, ROUNDS, 8))
    assert len(set(won)) == len(won), "an item was decided twice"
    with ws.read() as db:
        items = {str(i.id): i for i in db.scalars(sa.select(ApprovalItem))}
    assert set(items) == set(created)
    decided = {k for k, i in items.items() if i.status.value != "pending"}
    assert decided == set(won)
    pending = approvals.count_pending_approvals(user, ws=ws)
    assert pending == len(created) - len(won)

    # Presence: one record per client, every one of them left.
    with ws.read() as db:
        records_p = list(db.scalars(sa.select(PresenceRecord)))
    assert sorted(p.client_id for p in records_p) == sorted(
        f"w{w}-{k}" for w in range(PROCESSES) for k in range(SESSIONS)
    )
    assert all(p.left_at is not None for p in records_p)
    assert all(presence.list_resource_presence("session", s.id, ws=ws).entries == [] for s in shared)

    lost_races = sum(r["lost"] for r in reports)
    assert lost_races > 0 or len(won) == len(created)  # the deciders did race (or decided everything)
    record(
        "concurrency",
        ws.backend,
        {
            "processes": PROCESSES,
            "messages": len(wanted),
            "cost_records": len(booked),
            "approval_items": len(created),
            "decided": len(won),
            "lost_decision_races": lost_races,
            "presence_clients": len(records_p),
            "lost_writes": 0,
            "duplicate_sequences": 0,
            "seconds": round(seconds, 1),
            "day": dt.date.today().isoformat(),
        },
    )
