"""Crash and resume, on both backends.

Each trial starts a child process (`tests/support/crash_children.py`) that runs, at once, an agent turn with
four side-effecting tool calls and one that needs approval, a 10-step durable workflow run, a RAG
ingestion of 40 files and a due scheduled job, then SIGKILLs it at a random moment. Just before the
kill this process notes every committed row; afterwards it resumes everything here — the agent's
interrupted turn (approving the deploy), the workflow run, the ingestion, the scheduler — and checks:
every row committed before the kill is still there, every side effect happened exactly once (tools,
workflow steps) or at most once (the killed job occurrence, closed as abandoned), and an approval that
was pending at the kill was still pending afterwards and was the one the resumed turn waited for.
3 trials per backend in CI, 100 with `CMDC_RELIABILITY_FULL=1`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import crash_children as child
import rag_children
import sqlalchemy as sa
import workflow_children
from reliability import record, sized
from waiting import CEILING_S

from cmdc_nb import agents, approvals, kernel, rag, scheduling, sessions
from cmdc_nb import workflows as wf
from cmdc_nb.providers import Script
from cmdc_nb.store.models import (
    ActivityLog,
    AgentCall,
    ApprovalItem,
    ContextDocument,
    CostRecord,
    JobRun,
    Message,
    ScheduledJob,
    ToolUse,
    User,
    WorkflowStep,
)
from cmdc_nb.workspace import Workspace

TRIALS = sized(3, 100)
FILES = 40
STEPS = 10
CHILD = Path(child.__file__)


def new_trial(ws: Workspace, user: User, w: Any, here: Path, name: str) -> tuple[Any, Any, Any, Any]:
    """A session, a started workflow run, an index over FILES files and a due job, for one child."""
    (here / "src").mkdir(parents=True)
    for i in range(FILES):
        (here / "src" / f"m{i:03d}.py").write_text(rag_children.file_text(i, 1))
    session = sessions.create_session(user, name=name, ws=ws)
    run = wf.start_workflow_run(w, input={"log": str(here / "wf.log")}, ws=ws)
    idx = rag.create_index(
        user, name, source_type="local_repo", source_config={"path": str(here / "src")},
        chunk_strategy="code_aware", max_tokens=64, overlap_tokens=0, embedding_provider="slowhash",
        embedding_model="hashing-v1", embedding_dimensions=64, ws=ws,
    )  # fmt: skip
    job = scheduling.create_scheduled_job(
        user, name=name, interval_seconds=3600, job_config={"handler": "crash.job"}, ws=ws
    )
    with ws.transaction() as tx:
        tx.db.get(ScheduledJob, job.id).next_run_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    return session, run, idx, job


def start_child(
    db_url: str, home: Path, session: Any, run: Any, idx: Any, effects: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            db_url,
            str(home),
            str(session.id),
            str(run.id),
            str(idx.id),
            str(effects),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def committed(ws: Workspace) -> dict[str, set[Any]]:
    """Every row id (and every completed workflow step) committed so far."""
    with ws.read() as db:
        got: dict[str, set[Any]] = {
            m.__tablename__: set(db.scalars(sa.select(m.id)))
            for m in (Message, AgentCall, ToolUse, ApprovalItem, ContextDocument, JobRun)
        }
        got["completed_steps"] = set(
            db.execute(
                sa.select(WorkflowStep.workflow_run_id, WorkflowStep.step_id).where(
                    WorkflowStep.status == "completed"
                )
            ).all()
        )
        got["pending_approvals"] = set(
            db.scalars(sa.select(ApprovalItem.id).where(ApprovalItem.status == "pending"))
        )
    return got


async def resume_agent_turn(ws: Workspace, session: Any) -> tuple[str, list[str]]:
    """Finish the turn the kill interrupted, approving what it asks; returns (reply, approved refs)."""
    approved: list[str] = []
    rows = sessions.list_messages(session, ws=ws).entries
    if any(m.role == "assistant" for m in rows):
        agent = kernel.resume_agent(
            session, model=Script(["Done."]).model, tools=[child.stamp, child.deploy], ws=ws
        )
    else:  # killed before the model's tool-call turn was stored: nothing ran; the user asks again
        agent = kernel.resume_agent(
            session, model=child.agent_script().model, tools=[child.stamp, child.deploy], ws=ws
        )

    def approve(e: Any) -> None:
        if e.type == "approval_required":
            approved.append(e.event.ref)
            kernel.approve(agent, e.event.ref)

    agent.events.subscribe(approve)
    if agent.interrupted:
        reply = await asyncio.wait_for(agent.resume(), CEILING_S)
    else:
        reply = await asyncio.wait_for(agent.prompt("stamp the documents, then deploy"), CEILING_S)
    await kernel.stop(agent)
    return reply, approved


async def test_sigkill_mid_turn_workflow_ingestion_and_job_then_resume(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path
) -> None:
    with ws.transaction() as tx:
        tx.db.execute(sa.text(workflow_children.EFFECTS_DDL))
    w = wf.create_workflow(user, workflow_children.crash_spec(STEPS, seed=3), ws=ws)
    rnd = random.Random(20261124)
    figures: Counter[str] = Counter()
    for trial in range(TRIALS):
        here = tmp_path / f"t{trial}"
        effects = here / "effects.log"
        child.EFFECTS = str(effects)  # where the tools write when the turn resumes here
        session, run, idx, job = new_trial(ws, user, w, here, f"crash {trial}")
        proc = start_child(db_url, home_dir, session, run, idx, effects)
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), CEILING_S)
        assert line.strip() == "READY", (line, proc.stderr.read() if proc.stderr else "")
        # (stderr is piped and unread: the child writes little there, far below the pipe's buffer)
        await asyncio.sleep(rnd.uniform(0.05, 4.0))  # READY to idle takes ≈ 3.5 s
        before = committed(ws)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after_kill = committed(ws)
        assert after_kill["pending_approvals"] >= {
            i for i in before["pending_approvals"] if i in after_kill["approval_items"]
        }  # nothing pending at the kill was decided by dying

        reply, approved = await resume_agent_turn(ws, session)
        # (blocking calls, as from a script: in a thread, since this test's own loop is running)
        if wf.get_workflow_run(run, ws=ws).status != "completed":
            await asyncio.to_thread(wf.resume_workflow_run, run, ws=ws)
        await asyncio.to_thread(rag.ingest, idx, progress=False, ws=ws)
        await asyncio.to_thread(scheduling.run_due_jobs, ws=ws)

        # 0 committed rows lost, 0 completed steps undone.
        now = committed(ws)
        for key, ids in before.items():
            if key != "pending_approvals":
                assert ids <= now[key], f"trial {trial}: {key} lost {ids - now[key]}"
        # The agent's turn finished; each tool ran exactly once (a cut-off one is not run again).
        assert reply.endswith("Done.")
        lines = Counter(effects.read_text().splitlines() if effects.exists() else [])
        for n in range(child.TOOL_CALLS):
            assert lines[f"tool stamp {n}"] <= 1, (
                f"trial {trial}: stamp {n} ran {lines[f'tool stamp {n}']} times"
            )
        assert lines["tool deploy prod"] == 1
        figures["tools_cut_off"] += child.TOOL_CALLS - sum(
            lines[f"tool stamp {n}"] for n in range(child.TOOL_CALLS)
        )
        # A deploy approval pending at the kill was the one the resumed turn waited for (no second item).
        with ws.read() as db:
            items = list(db.scalars(sa.select(ApprovalItem).where(ApprovalItem.session_id == session.id)))
        assert len(items) == 1 and items[0].status == "approved"
        # Every stored call still rebuilds its request: no prompt reference (to its base call, or to
        # the session's messages it added) points at a row the kill dropped.
        calls = agents.list_agent_calls(session, limit=1000, ws=ws).entries
        for c in calls:  # (a NotFoundError names the reference that leads nowhere)
            assert agents.call_request(c, ws=ws)["messages"]
        figures["calls_referring_to_messages"] += sum(
            1 for c in calls if (c.prompt_ref or {}).get("messages")
        )
        was_pending = items[0].id in before["pending_approvals"]
        figures["pending_approvals_kept"] += was_pending
        if was_pending:
            assert approved and len(approved) == 1
        # The workflow: every step's effect applied exactly once.
        assert wf.get_workflow_run(run, ws=ws).status == "completed"
        with ws.read() as db:
            step_effects = Counter(
                db.scalars(sa.text("SELECT step_id FROM crash_effects WHERE run_id = :r"), {"r": str(run.id)})
            )
        assert len(step_effects) == STEPS and set(step_effects.values()) == {1}
        figures["steps_done_before_kill"] += sum(1 for r, _ in before["completed_steps"] if r == run.id)
        # The ingestion: every file indexed once.
        docs = rag.list_documents(idx, limit=1000, ws=ws)
        assert sorted(d.uri for d in docs) == [f"m{i:03d}.py" for i in range(FILES)]
        figures["documents_before_kill"] += len(before["context_documents"] & {d.id for d in docs})
        # The job: its occurrence ran at most once, and nothing is left running.
        job_lines = [k for k in lines.elements() if k.startswith(f"job {job.id}")]
        assert len(job_lines) <= 1
        runs = scheduling.list_job_runs(job, ws=ws).entries
        assert all(r.status != "running" for r in runs)
        figures["job_runs_abandoned"] += sum(1 for r in runs if "abandoned" in (r.error or ""))
        figures["trials"] += 1
        figures["rows_committed_before_kill"] += sum(
            len(v) for k, v in before.items() if k != "pending_approvals"
        )
    record("crash_resume", ws.backend, {**figures, "lost": 0, "repeated_tool_executions": 0})
    print(dict(figures))


def test_the_child_runs_to_idle_without_a_kill(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path
) -> None:
    """Control: left alone, the child finishes the workflow, the ingestion and the job, and its agent
    stops at the approval — so a kill during the trials lands in the middle of real work."""
    with ws.transaction() as tx:
        tx.db.execute(sa.text(workflow_children.EFFECTS_DDL))
    w = wf.create_workflow(user, workflow_children.crash_spec(STEPS, seed=3), ws=ws)
    session, run, idx, _job = new_trial(ws, user, w, tmp_path, "control")
    effects = tmp_path / "effects.log"
    started = time.perf_counter()
    proc = start_child(db_url, home_dir, session, run, idx, effects)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        while (line := proc.stdout.readline()) and line.strip() != "IDLE":
            assert line.startswith(("START", "EMBED")), line  # progress lines of the steps and the embedder
        assert line.strip() == "IDLE"
        seconds = time.perf_counter() - started
        deadline = time.monotonic() + CEILING_S
        while approvals.count_pending_approvals(user, ws=ws) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert approvals.count_pending_approvals(user, ws=ws) == 1

        def stamps() -> int:
            return (
                sum(x.startswith("tool stamp") for x in effects.read_text().splitlines())
                if effects.exists()
                else 0
            )

        while stamps() < child.TOOL_CALLS and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert wf.get_workflow_run(run, ws=ws).status == "completed"
    assert len(rag.list_documents(idx, limit=1000, ws=ws)) == FILES
    lines = effects.read_text().splitlines()
    assert sorted(x for x in lines if x.startswith("tool")) == [
        f"tool stamp {n}" for n in range(child.TOOL_CALLS)
    ]
    assert sum(x.startswith("job") for x in lines) == 1
    record("crash_resume", f"control_{ws.backend}", {"seconds_to_idle": round(seconds, 1)})


ROUND_CHILD = Path(__file__).resolve().parent / "support" / "round_children.py"


def round_rows(ws: Workspace, session: Any) -> dict[str, set[Any]]:
    with ws.read() as db:
        return {
            m.__tablename__: set(db.scalars(sa.select(m.id).where(m.session_id == session.id)))
            for m in (Message, AgentCall, ToolUse, CostRecord, ActivityLog)
        }


async def test_sigkill_between_a_rounds_writes_then_resume(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path
) -> None:
    """The stored round's resume points (docs/architecture.md, 'A stored round'): killed anywhere in a
    loop of one-tool rounds, nothing committed is lost, no tool runs twice, and after resuming every
    call is complete with its one cost record, every tool use ended with its result message, the
    messages are gap-free and the session's counters are the sums of its calls."""
    import round_children

    rnd = random.Random(20261204)
    figures: Counter[str] = Counter()
    for trial in range(TRIALS):
        session = sessions.create_session(user, name=f"rounds {trial}", ws=ws)
        effects = tmp_path / f"rounds{trial}.log"
        round_children.EFFECTS = str(effects)  # where the tool writes when the turn resumes here
        proc = subprocess.Popen(
            [sys.executable, str(ROUND_CHILD), db_url, str(home_dir), str(session.id), str(effects)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), CEILING_S)
        assert line.strip() == "READY", (line, proc.stderr.read() if proc.stderr else "")
        await asyncio.sleep(rnd.uniform(0.05, 1.5))
        before = round_rows(ws, session)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        agent = kernel.resume_agent(
            session, model=Script(["Done."]).model, tools=[round_children.tick], ws=ws
        )
        reply = await asyncio.wait_for(agent.resume(), CEILING_S)
        await kernel.stop(agent)
        assert reply.endswith("Done.")
        now = round_rows(ws, session)
        for key, ids in before.items():
            assert ids <= now[key], f"trial {trial}: {key} lost {ids - now[key]}"
        ticks = Counter(effects.read_text().splitlines() if effects.exists() else [])
        assert set(ticks.values()) <= {1}, f"trial {trial}: a tool ran twice: {ticks}"
        with ws.read() as db:
            calls = list(db.scalars(sa.select(AgentCall).where(AgentCall.session_id == session.id)))
            tools = list(db.scalars(sa.select(ToolUse).where(ToolUse.session_id == session.id)))
            msgs = list(
                db.scalars(
                    sa.select(Message).where(Message.session_id == session.id).order_by(Message.sequence)
                )
            )
            priced = Counter(
                db.scalars(sa.select(CostRecord.source_id).where(CostRecord.session_id == session.id))
            )
            s = db.get(type(session), session.id)
        assert all(c.status == "completed" for c in calls)
        assert priced == Counter(c.id for c in calls)  # one cost record a call, none without its call
        assert all(t.status in ("completed", "failed") for t in tools)  # none left executing
        results = Counter(m.tool_use_id for m in msgs if m.role == "tool_result")
        assert all(results[t.id] == 1 for t in tools)
        assert [m.sequence for m in msgs] == list(range(1, len(msgs) + 1))
        assert s is not None and s.message_count == len(msgs)
        assert s.total_tokens_in == sum(c.tokens_in or 0 for c in calls)
        # Every call rebuilds its request: a prompt refers only to messages committed before it
        # (its base's reply and tool results), so a kill leaves no reference pointing at nothing.
        for c in calls:  # (a NotFoundError names the reference that leads nowhere)
            assert agents.call_request(c, ws=ws)["messages"]
        figures["calls_referring_to_messages"] += sum(
            1 for c in calls if (c.prompt_ref or {}).get("messages")
        )
        figures["rounds_stored_before_kill"] += len(before["tool_uses"])
        figures["tools_cut_off"] += sum(1 for t in tools if t.status == "failed")
        figures["trials"] += 1
    record("crash_resume_rounds", ws.backend, {**figures, "lost": 0, "repeated_tool_executions": 0})
    print(dict(figures))
