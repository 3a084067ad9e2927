"""Team mode access: a workspace acting for a user reads and changes only what is theirs or shared with
them; approvals are decided only by their owner or by someone their session is shared with."""

from __future__ import annotations

from pathlib import Path

import pytest

import cmdc_nb
from cmdc_nb import accounts, approvals, frames, sessions
from cmdc_nb.errors import AccessDeniedError, NotFoundError
from cmdc_nb.store.models import ApprovalItem, Session, User
from cmdc_nb.workspace import Workspace


@pytest.fixture
def team(ws: Workspace) -> tuple[User, User, User]:
    return (
        accounts.create_user("ada@example.com", name="Ada", ws=ws),
        accounts.create_user("bob@example.com", name="Bob", ws=ws),
        accounts.create_user("cy@example.com", name="Cy", ws=ws),
    )


@pytest.fixture
def ada_session(ws: Workspace, team: tuple[User, User, User]) -> Session:
    ada = team[0]
    s = sessions.create_session(ada, name="Ada's plans", ws=ws)
    sessions.create_message(s, role="user", content="the secret launch date is Friday", ws=ws)
    return s


def pending_item(ws: Workspace, session: Session) -> ApprovalItem:
    return approvals.create_approval_item(
        session.user_id,
        approval_type="shell_command",
        title="deploy",
        payload={"command": "make deploy"},
        session=session,
        ws=ws,
    )


def test_another_users_private_session_cannot_be_read_or_written(
    ws: Workspace, team: tuple[User, User, User], ada_session: Session
) -> None:
    _, bob, _ = team
    ws.act_as(bob)
    for read in (
        lambda: sessions.get_session(ada_session.id, ws=ws),
        lambda: sessions.list_messages(ada_session, ws=ws),
        lambda: sessions.count_messages(ada_session, ws=ws),
        lambda: sessions.get_conversation_history(ada_session, ws=ws),
        lambda: sessions.search_messages("launch", session=ada_session, ws=ws),
        lambda: sessions.export_session(ada_session, ws=ws),
        lambda: frames.messages_frame(session=ada_session, ws=ws),
    ):
        with pytest.raises(AccessDeniedError) as caught:
            read()
        assert caught.value.action == "read" and "not yours and not shared" in str(caught.value)
    with pytest.raises(AccessDeniedError):
        sessions.list_sessions(ada_session.user_id, ws=ws)
    with pytest.raises(AccessDeniedError):
        sessions.create_message(ada_session, role="user", content="hi from Bob", ws=ws)
    with pytest.raises(AccessDeniedError):
        sessions.archive_session(ada_session, ws=ws)
    with pytest.raises(AccessDeniedError):
        sessions.share_session(ada_session, with_users=[bob], ws=ws)  # only the owner shares
    # searching across sessions finds only Bob's own; frames without a filter are Bob's own
    assert sessions.search_messages("launch", ws=ws) == []
    assert len(frames.messages_frame(ws=ws)) == 0
    # nothing was written by the refused calls
    ws.act_as(None)
    assert sessions.count_messages(ada_session, ws=ws) == 1
    assert sessions.get_session(ada_session.id, ws=ws).status == "active"


def test_sharing_lets_exactly_the_named_users_in(
    ws: Workspace, team: tuple[User, User, User], ada_session: Session
) -> None:
    ada, bob, cy = team
    with cmdc_nb.acting_as(ada):
        shared = sessions.share_session(ada_session, with_users=[bob], ws=ws)
    assert shared.visibility == "shared" and shared.shared_with_user_ids == [bob.id]
    with cmdc_nb.acting_as(bob):
        assert sessions.get_session(ada_session.id, ws=ws).name == "Ada's plans"
        sessions.create_message(ada_session, role="user", content="Bob was here", ws=ws)
        assert [s.id for s in sessions.list_sessions(bob, shared=True, ws=ws).entries] == [ada_session.id]
        assert sessions.list_sessions(bob, ws=ws).entries == []  # his own only, unless asked
        assert len(frames.messages_frame(session=ada_session, ws=ws)) == 2
    with cmdc_nb.acting_as(cy), pytest.raises(AccessDeniedError):
        sessions.get_session(ada_session.id, ws=ws)
    # public: everyone reads, only the shared write
    with cmdc_nb.acting_as(ada):
        sessions.share_session(ada_session, visibility="public", ws=ws)
    with cmdc_nb.acting_as(cy):
        assert sessions.count_messages(ada_session, ws=ws) == 2
        with pytest.raises(AccessDeniedError):
            sessions.create_message(ada_session, role="user", content="Cy", ws=ws)
    # private again: every share is taken back
    with cmdc_nb.acting_as(ada):
        sessions.share_session(ada_session, visibility="private", ws=ws)
    with cmdc_nb.acting_as(bob), pytest.raises(AccessDeniedError):
        sessions.list_messages(ada_session, ws=ws)


def test_approvals_are_decided_by_their_owner_or_the_people_the_session_is_shared_with(
    ws: Workspace, team: tuple[User, User, User], ada_session: Session
) -> None:
    ada, bob, _ = team
    item = pending_item(ws, ada_session)
    # even with no acting user, the decider must be allowed to decide
    with pytest.raises(AccessDeniedError) as caught:
        approvals.approve_item(item, bob, ws=ws)
    assert caught.value.action == "decide"
    assert approvals.get_approval_item(item, ws=ws).status == "pending"
    with cmdc_nb.acting_as(bob):
        with pytest.raises(AccessDeniedError):
            approvals.get_approval_item(item, ws=ws)
        assert approvals.list_pending_approvals(bob, shared=True, ws=ws).entries == []
        with pytest.raises(AccessDeniedError):
            approvals.list_pending_approvals(ada, ws=ws)
    sessions.share_session(ada_session, with_users=[bob], ws=ws)
    with cmdc_nb.acting_as(bob):
        assert [i.id for i in approvals.list_pending_approvals(bob, shared=True, ws=ws).entries] == [item.id]
        with pytest.raises(AccessDeniedError):  # no deciding in someone else's name
            approvals.approve_item(item, ada, ws=ws)
        decided = approvals.approve_item(item, bob, note="looks fine", ws=ws)
    assert decided.status == "approved" and decided.decided_by_id == bob.id


def test_the_acting_user_comes_from_connect_and_must_exist(
    ws: Workspace, team: tuple[User, User, User], ada_session: Session, db_url: str, home_dir: Path
) -> None:
    bobs = cmdc_nb.connect(db_url, home=home_dir, make_default=False, as_user="BOB@example.com")
    try:
        assert bobs.acting_user_id == team[1].id
        with pytest.raises(AccessDeniedError):
            sessions.get_session(ada_session.id, ws=bobs)
        with cmdc_nb.acting_as(team[0]):  # a block may act for someone else (a trusted caller)
            assert sessions.get_session(ada_session.id, ws=bobs).id == ada_session.id
    finally:
        bobs.close()
    with pytest.raises(NotFoundError):
        cmdc_nb.connect(db_url, home=home_dir, make_default=False, as_user="nobody@example.com")
    # without an acting user nothing is restricted (a personal notebook, a worker)
    assert sessions.get_session(ada_session.id, ws=ws).id == ada_session.id


async def test_a_workflow_gate_in_a_shared_session_is_decided_by_a_colleague(
    ws: Workspace, team: tuple[User, User, User], ada_session: Session
) -> None:
    from cmdc_nb import workflows as wf

    ada, bob, cy = team
    flow = wf.create_workflow(
        ada,
        {
            "name": "gate",
            "steps": [
                wf.step("ok", "approval", title="Ship?"),
                wf.step("after", "transform", depends_on="ok", value=1),
            ],
        },
        ws=ws,
    )
    run = await wf.arun_workflow(flow, session=ada_session, stop_when_blocked=True, ws=ws)
    assert run.status == "waiting_approval"
    with cmdc_nb.acting_as(bob), pytest.raises(AccessDeniedError):
        wf.get_workflow_run(run.id, ws=ws)  # not shared yet
    sessions.share_session(ada_session, with_users=[bob], ws=ws)
    with cmdc_nb.acting_as(cy), pytest.raises(AccessDeniedError):
        wf.approve_workflow_step(run, "ok", cy, ws=ws)
    with cmdc_nb.acting_as(bob):
        seen = wf.get_workflow_run(run.id, ws=ws)
        wf.approve_workflow_step(seen, "ok", bob, note="Bob", ws=ws)
    done = await wf.execute_workflow_run(run, ws=ws)
    assert done.status == "completed"
    assert wf.get_workflow_step(done, "ok", ws=ws).output["decided_by"] == str(bob.id)


def test_listings_of_another_user_are_refused_and_unnamed_ones_are_ones_own(
    ws: Workspace, team: tuple[User, User, User], ada_session: Session
) -> None:
    from cmdc_nb import activity, agents, artifacts, budgets, costs, rag, scheduling
    from cmdc_nb import workflows as wf

    ada, bob, _ = team
    agents.create_agent_call(ada_session, model="scripted/x", ws=ws)
    with cmdc_nb.acting_as(bob):
        for listing in (
            lambda: accounts.list_api_credentials(ada, ws=ws),
            lambda: approvals.list_approval_rules(ada, ws=ws),
            lambda: approvals.count_pending_approvals(ada, ws=ws),
            lambda: artifacts.list_artifacts(ada, ws=ws),
            lambda: budgets.list_budgets(user=ada, ws=ws),
            lambda: costs.get_monthly_cost(ada, ws=ws),
            lambda: costs.list_daily_summaries(ada, ws=ws),
            lambda: scheduling.list_scheduled_jobs(ada, ws=ws),
            lambda: sessions.get_session_by_slug(ada, ada_session.slug, ws=ws),
            lambda: wf.list_workflows(ada, ws=ws),
            lambda: wf.list_workflow_runs(user=ada, ws=ws),
            lambda: rag.list_indexes(ada, ws=ws),
            lambda: activity.search_activity(user=ada, ws=ws),
            lambda: agents.list_agent_calls(ada_session, ws=ws),
            lambda: frames.daily_costs(user=ada, ws=ws),
        ):
            with pytest.raises(AccessDeniedError):
                listing()
        # named nobody: one's own (Ada's session and call are not in Bob's activity)
        sessions.create_session(bob, name="Bob's", ws=ws)
        mine = activity.search_activity(ws=ws).entries
        assert mine and {e.user_id for e in mine} == {bob.id}
