"""The built-in `workflow` and `reindex` jobs, as the seed README schedules them: a cron that starts a
workflow run with its input, and an interval or cron that re-ingests an index incrementally. Their
handlers register themselves (the scheduler imports them on first use); runs show in `job_runs` and in
the workflow and index views."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cmdc_nb import rag, scheduling
from cmdc_nb import workflows as wf
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.services.scheduling import runner
from cmdc_nb.store.models import ScheduledJob, User
from cmdc_nb.workspace import Workspace

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 24, 14, tzinfo=UTC)  # 09:00 in New York


@pytest.fixture
def unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a fresh process that never imported the handlers' modules."""
    for job_type, module in runner.BUILT_IN_HANDLERS.items():
        monkeypatch.delitem(runner._handlers, job_type, raising=False)
        monkeypatch.delitem(sys.modules, module, raising=False)


def due_now(ws: Workspace, job: ScheduledJob, at: dt.datetime) -> None:
    with ws.transaction() as tx:
        tx.db.get(ScheduledJob, job.id).next_run_at = at


def greeting(ws: Workspace, user: User, **spec: Any) -> Any:
    return wf.create_workflow(
        user,
        {
            "name": "Morning greeting",
            "input_schema": {"type": "object", "required": ["name"]},
            "steps": [wf.step("greet", "transform", value="Good morning, {{ input.name }}")],
            **spec,
        },
        ws=ws,
    )


def test_a_cron_workflow_job_starts_a_run_with_its_input(
    ws: Workspace, user: User, unregistered: None
) -> None:
    w = greeting(ws, user)
    # The seed README's example, in Python.
    job = scheduling.create_scheduled_job(
        user,
        job_type="workflow",
        job_config={"workflow_id": str(w.id), "input": {"name": "Ada"}},
        cron="0 9 * * *",
        timezone="America/New_York",
        ws=ws,
    )
    due_now(ws, job, T0)
    [run] = scheduling.run_due_jobs(now=T0, ws=ws)
    assert run.status == "success", run.error
    assert run.output["status"] == "completed" and run.output["workflow_id"] == str(w.id)
    wrun = wf.get_workflow_run(run.output["workflow_run_id"], ws=ws)
    assert (wrun.status, wrun.input, wrun.output) == (
        "completed",
        {"name": "Ada"},
        {"greet": "Good morning, Ada"},
    )
    assert (wrun.trigger_type, wrun.trigger_metadata["job_id"]) == ("schedule", str(job.id))
    assert wrun.trigger_metadata["scheduled_for"] == T0.isoformat()
    # The workflow's own views list the run.
    assert [r.id for r in wf.list_workflow_runs(w, ws=ws)] == [wrun.id]
    frame = wf.runs_frame(w, ws=ws)
    assert frame["trigger_type"].tolist() == ["schedule"]
    after = scheduling.get_scheduled_job(job, ws=ws)
    assert after.next_run_at == T0 + dt.timedelta(days=1) and after.success_count == 1
    # The next morning's occurrence starts a second run.
    [second] = scheduling.run_due_jobs(now=after.next_run_at, ws=ws)
    assert second.output["workflow_run_id"] != str(wrun.id)
    assert len(wf.list_workflow_runs(w, ws=ws)) == 2


def test_a_scheduled_run_stops_at_an_approval_gate_and_the_job_run_says_so(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(
        user,
        {
            "name": "Gated",
            "steps": [
                wf.step("draft", "transform", value="Report for {{ input.day }}"),
                wf.step("ok", "approval", depends_on="draft", title="Send {{ steps.draft.output }}?"),
            ],
        },
        ws=ws,
    )
    job = scheduling.create_scheduled_job(
        user,
        job_type="workflow",
        job_config={"workflow_id": str(w.id), "input": {"day": "Monday"}},
        run_at=T0,
        ws=ws,
    )
    [run] = scheduling.run_due_jobs(now=T0, ws=ws)
    assert (run.status, run.output["status"]) == ("success", "waiting_approval")
    assert wf.get_workflow_run(run.output["workflow_run_id"], ws=ws).status == "waiting_approval"
    assert scheduling.get_scheduled_job(job, ws=ws).status == "completed"


def test_a_failing_workflow_fails_the_attempt_and_its_retry_is_scheduled(ws: Workspace, user: User) -> None:
    w = greeting(ws, user)
    # The input lacks the required `name`: the run cannot start, the attempt fails and is retried later.
    job = scheduling.create_scheduled_job(
        user,
        job_type="workflow",
        job_config={"workflow_id": str(w.id), "input": {}},
        run_at=T0,
        retry_delay_seconds=30,
        ws=ws,
    )
    [run] = scheduling.run_due_jobs(now=T0, ws=ws)
    assert run.status == "failure" and "name" in (run.error or "")
    assert scheduling.get_scheduled_job(job, ws=ws).next_run_at == T0 + dt.timedelta(seconds=30)
    assert wf.list_workflow_runs(w, ws=ws) == []


def write_docs(root: Path) -> None:
    root.mkdir(exist_ok=True)
    (root / "alpha.md").write_text("# Alpha\n\nThe alpha service restarts nightly.\n")
    (root / "beta.md").write_text("# Beta\n\nBeta keeps its cache for an hour.\n")


@pytest.mark.parametrize("schedule", [{"interval_seconds": 3600}, {"cron": "0 * * * *"}])
def test_a_reindex_job_re_ingests_only_what_changed(
    ws: Workspace, user: User, tmp_path: Path, unregistered: None, schedule: dict[str, Any]
) -> None:
    root = tmp_path / "docs"
    write_docs(root)
    idx = rag.create_index(
        user, "handbook", source_type="local_repo", source_config={"path": str(root)}, ws=ws
    )
    # The seed README's interval example (and the same as a cron), in Python.
    job = scheduling.create_scheduled_job(
        user, job_type="reindex", job_config={"index_id": str(idx.id)}, ws=ws, **schedule
    )
    due_now(ws, job, T0)
    [first] = scheduling.run_due_jobs(now=T0, ws=ws)
    assert first.status == "success", first.error
    assert (first.output["added"], first.output["updated"], first.output["unchanged"]) == (2, 0, 0)
    indexed = rag.get_index(idx, ws=ws)
    assert (indexed.status, indexed.document_count) == ("ready", 2)

    (root / "beta.md").write_text("# Beta\n\nBeta now keeps its cache for a day.\n")
    (root / "gamma.md").write_text("# Gamma\n\nGamma is new.\n")
    nxt = scheduling.get_scheduled_job(job, ws=ws).next_run_at
    assert nxt == T0 + dt.timedelta(hours=1)
    [second] = scheduling.run_due_jobs(now=nxt, ws=ws)
    counts = {k: second.output[k] for k in ("added", "updated", "unchanged", "deleted")}
    assert counts == {"added": 1, "updated": 1, "unchanged": 1, "deleted": 0}
    after = rag.get_index(idx, ws=ws)
    assert after.document_count == 3 and after.last_indexed_at >= indexed.last_indexed_at
    # The changed document was replaced, not added beside its old text.
    beta = [h.content for h in rag.search(idx, "Beta cache", k=10, ws=ws) if h.uri.endswith("beta.md")]
    assert len(beta) == 1 and "for a day" in beta[0]
    runs = scheduling.list_job_runs(job, ws=ws).entries
    assert sorted(r.output["added"] for r in runs) == [1, 2]


def test_a_reindex_of_an_index_with_no_source_to_reread_fails_with_the_reason(
    ws: Workspace, user: User
) -> None:
    idx = rag.create_index(user, "notes", ws=ws)  # fed by ingest(texts=...), nothing to re-read
    scheduling.create_scheduled_job(
        user, job_type="reindex", job_config={"index_id": str(idx.id)}, run_at=T0, max_retries=0, ws=ws
    )
    [run] = scheduling.run_due_jobs(now=T0, ws=ws)
    assert run.status == "failure" and "ingest(index, texts=" in (run.error or "")


@pytest.mark.parametrize(
    ("job_type", "config"),
    [
        ("workflow", {}),
        ("workflow", {"workflow_id": str(uuid.uuid4()), "input": ["not", "an", "object"]}),
        ("reindex", {}),
        ("reindex", {"index_id": 7}),
    ],
)
def test_a_built_in_job_without_its_target_is_refused_when_created(
    ws: Workspace, user: User, job_type: str, config: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError, match=f"a {job_type} job") as err:
        scheduling.create_scheduled_job(user, job_type=job_type, job_config=config, run_at=T0, ws=ws)
    assert err.value.field == "job_config"
    assert scheduling.list_scheduled_jobs(user, ws=ws).entries == []
