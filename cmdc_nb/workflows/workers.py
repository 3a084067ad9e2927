"""Workflow steps on worker processes, through procrastinate (a PostgreSQL-backed task queue).

Each ready step becomes one procrastinate job (`cmdc_nb.workflow_step`, queue `cmdc_nb_workflows`)
with a queueing lock per run and step, so a step is queued at most once at a time. A worker runs the
job exactly as the in-process engine runs a step — claim under a lease, execute with timeout and
retries, record the outcome — and goes on to the first dependant that outcome claimed for it, queueing
the others it unblocked; when its chain ends it advances the run and queues whatever became ready, so
a run goes on with no notebook attached. Approval gates, cancel, pause and resume behave as
in-process: they are rows, and workers read them.

Start workers with `cmdc-nb --url postgresql+psycopg://… worker` (import the modules that define
your step functions with `--load`). Procrastinate's tables are created in the workspace's database on
first use.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing.workspace import Workspace
from cmdc_nb.errors import ConfigurationError
from cmdc_nb.store.models import WorkflowRun
from cmdc_nb.workflows import state

__all__ = ["QUEUE", "TASK_NAME", "defer_steps", "drive_on_workers", "make_app", "run_worker"]

log = logging.getLogger("cmdc_nb.workflows.workers")
QUEUE = "cmdc_nb_workflows"
TASK_NAME = "cmdc_nb.workflow_step"
_SCHEMA_LOCK = 0x636D6463  # pg_advisory_xact_lock key while creating procrastinate's tables


def _conninfo(ws: Workspace) -> str:
    if ws.backend != "postgresql":
        raise ConfigurationError(
            "worker processes need a PostgreSQL workspace; on SQLite, runs execute in this process "
            "(executor='local')"
        )
    # libpq's own quoting of the engine's connection arguments: a URL string with a password libpq
    # cannot parse (a space) fails, and libpq quotes it — password and all — in the error
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    _args, params = ws.engine.dialect.create_connect_args(ws.engine.url)
    keywords = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    return make_conninfo("", **{k: v for k, v in params.items() if k in keywords and v is not None})


def make_app(ws: Workspace) -> Any:
    """A procrastinate App on the workspace's database with the workflow-step task."""
    try:  # the worker extra's: workflows in a notebook's own loop do not need it
        import procrastinate
    except ImportError:
        raise ConfigurationError(
            "workflow workers need the worker extra (procrastinate is not installed): "
            "pip install 'cmdc-nb[worker]'"
        ) from None

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_conninfo(ws)))

    @app.task(name=TASK_NAME, queue=QUEUE, pass_context=True)
    async def workflow_step(context: Any, run_id: str, step_id: str) -> None:
        from cmdc_nb.workflows.runner import run_step

        job_ws: Workspace = context.additional_context.get("ws") or ws
        rid = uuid.UUID(run_id)

        async def on_next(nxt: state.Next) -> None:
            # This job runs on into the first dependant the step claimed; the others are queued.
            ready = list(nxt.ready)
            if nxt.advance:
                advanced = await asyncio.to_thread(state.advance, job_ws, rid)
                ready += await _unqueued(context.app, rid, advanced.ready)
            if ready:
                await defer_steps(context.app, rid, dict.fromkeys(ready))

        await run_step(job_ws, rid, step_id, on_next=on_next)
        progress = await asyncio.to_thread(state.advance, job_ws, rid)
        # The ready steps no job waits for or runs. A step whose job was fetched but has not claimed it
        # yet is ready too, and queueing it again (every job did, after its own step) made 89,000 jobs
        # for a run of 150 independent steps. A gate decided elsewhere still gets its steps queued here.
        ready = await _unqueued(context.app, rid, progress.ready)
        if ready:
            await defer_steps(context.app, rid, ready)

    return app


_QUEUED = """
SELECT queueing_lock FROM procrastinate_jobs
WHERE queue_name = %(queue)s AND status IN ('todo', 'doing') AND queueing_lock = ANY(%(locks)s)
"""


async def _unqueued(app: Any, run_id: uuid.UUID, step_ids: Iterable[str]) -> list[str]:
    """`step_ids` less those a job waits for or runs now, in one query. Only a job's own follow-up
    uses it: the driver (which a resume starts) queues a step whose job died with its worker."""
    ids = list(dict.fromkeys(step_ids))
    if not ids:
        return []
    locks = {f"{run_id}:{sid}": sid for sid in ids}
    rows = await app.connector.execute_query_all_async(_QUEUED, queue=QUEUE, locks=list(locks))
    taken = {locks[r["queueing_lock"]] for r in rows}
    return [sid for sid in ids if sid not in taken]


def _ensure_schema(ws: Workspace, app: Any) -> None:
    with ws.engine.begin() as conn:
        if conn.scalar(sa.text("SELECT to_regclass('procrastinate_jobs')")) is not None:
            return
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        if conn.scalar(sa.text("SELECT to_regclass('procrastinate_jobs')")) is not None:
            return
        # procrastinate's own schema, applied in the same transaction as the lock
        conn.exec_driver_sql(app.schema_manager.get_schema().replace("%", "%%"))


async def defer_steps(app: Any, run_id: uuid.UUID, step_ids: Iterable[str]) -> int:
    """Queue steps of a run; a step already waiting in the queue is not queued again."""
    import procrastinate.exceptions

    n = 0
    for sid in step_ids:
        try:
            await app.configure_task(TASK_NAME, queueing_lock=f"{run_id}:{sid}", queue=QUEUE).defer_async(
                run_id=str(run_id), step_id=sid
            )
            n += 1
        except procrastinate.exceptions.AlreadyEnqueued:
            pass
    return n


async def drive_on_workers(
    ws: Workspace, run_id: uuid.UUID, *, stop_when_blocked: bool = False
) -> WorkflowRun:
    """Queue the run's ready steps for workers and follow the run until it is over (or blocked)."""
    from cmdc_nb.workflows.engine import _drive

    app = make_app(ws)
    await asyncio.to_thread(_ensure_schema, ws, app)
    async with app.open_async():

        async def dispatch(ids: list[str]) -> None:
            await defer_steps(app, run_id, ids)

        return await _drive(
            ws, run_id, max_concurrency=1, stop_when_blocked=stop_when_blocked, dispatch=dispatch
        )


async def run_worker(
    ws: Workspace, *, concurrency: int = 4, name: str | None = None, wait: bool = True
) -> None:
    """Run workflow steps from the queue until cancelled (or, with `wait=False`, until it is empty)."""
    app = make_app(ws)
    await asyncio.to_thread(_ensure_schema, ws, app)
    async with app.open_async():
        await app.run_worker_async(
            queues=[QUEUE],
            concurrency=concurrency,
            name=name,
            wait=wait,
            additional_context={"ws": ws},
            delete_jobs="successful",
            install_signal_handlers=True,
        )
