"""ApprovalQueue: pending items across sessions, live from events; its buttons decide for real."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from waiting import CEILING_S

from cmdc_nb import agents, approvals, sessions
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.store.models import User
from cmdc_nb.widgets import ApprovalQueue
from cmdc_nb.workspace import Workspace


@tool(requires_approval=True, side_effects=("network",))
def publish(channel: str) -> str:
    """Publish a post."""
    return f"published on {channel}"


def find(widget: Any, cls: str, description: str | None = None) -> list[Any]:
    out = []
    for c in getattr(widget, "children", ()):
        if c.__class__.__name__ == cls and (description is None or c.description == description):
            out.append(c)
        out.extend(find(c, cls, description))
    return out


def form_fields(widget: Any) -> list[Any]:
    """The input widgets of the open arguments forms, in the tool's parameter order."""
    out = []
    for c in getattr(widget, "children", ()):
        if "cmdc-argfield" in getattr(c, "_dom_classes", ()):
            out.append(c.children[1])
        out.extend(form_fields(c))
    return out


async def test_approving_in_the_queue_resumes_the_waiting_agent(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="social", ws=ws)
    script = Script([Turn(tool_calls=[call("publish", channel="mastodon")]), "Posted."])
    agent = Agent(model=script.model, tools=[publish], session=s, ws=ws)
    queue = ApprovalQueue(user, ws=ws)
    assert queue.items == [] and "Nothing is waiting" in find(queue, "HTML")[-1].value
    handle = agent.prompt("post it")
    while not queue.items:  # the queue refreshes itself from the approval events
        await asyncio.sleep(0.01)
    [item] = queue.items
    heading = find(queue.list_box, "HTML")[0].value
    assert "Approve tool: publish" in heading and "network" in heading and "mastodon" in heading
    find(queue, "Button", "Edit")[0].click()
    [channel] = form_fields(queue)  # the tool's one argument, as a text field holding the proposal
    assert (type(channel).__name__, channel.value) == ("Text", "mastodon")
    channel.value = "bluesky"
    find(queue, "Text")[0].value = "better audience"  # the note, next to the buttons
    find(queue, "Button", "Approve with edits")[0].click()
    assert await asyncio.wait_for(handle, CEILING_S) == "Posted."
    assert agent.messages[2]["content"] == "published on bluesky"
    decided = approvals.get_approval_item(item, ws=ws)
    assert (decided.status, decided.decision_note) == ("approved", "better audience")
    assert decided.modified_payload["input"] == {"channel": "bluesky"}
    stored = agents.get_tool_use(decided.source_id, ws=ws)
    assert (stored.input, stored.meta["original_input"]) == ({"channel": "bluesky"}, {"channel": "mastodon"})
    await asyncio.sleep(0.05)
    assert queue.items == []


@tool(requires_approval=True)
def repost(channel: str, copies: int) -> str:
    """Repost a post."""
    return f"reposted {copies} times on {channel}"


async def test_an_invalid_edit_is_refused_in_the_queue_and_nothing_runs(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="social", ws=ws)
    script = Script([Turn(tool_calls=[call("repost", channel="mastodon", copies=1)]), "Denied, fine."])
    agent = Agent(model=script.model, tools=[repost], session=s, ws=ws)
    queue = ApprovalQueue(user, ws=ws)
    handle = agent.prompt("repost it")
    while not queue.items:
        await asyncio.sleep(0.01)
    [item] = queue.items
    find(queue, "Button", "Edit")[0].click()
    find(queue, "ToggleButton", "JSON")[0].value = True  # edit the call as one JSON object
    [raw] = [t for t in find(queue, "Textarea") if "cmdc-argjson" in t._dom_classes]
    raw.value = '{"channel": "mastodon", "copies": "lots"}'
    find(queue, "Button", "Approve with edits")[0].click()
    shown = " ".join(h.value for h in find(queue, "HTML"))
    assert "copies must be a whole number, not &quot;lots&quot;" in shown
    with pytest.raises(InvalidInputError, match=r"^channel is required$"):  # the same check from code
        queue.approve(item.id, input={"copies": 2})
    assert approvals.get_approval_item(item, ws=ws).status == "pending" and queue.items == [item]
    assert agents.get_tool_use(item.source_id, ws=ws).status == "pending"  # the tool did not run
    queue.deny(item.id, note="not now")
    assert await asyncio.wait_for(handle, CEILING_S) == "Denied, fine."
    assert agent.messages[2]["content"] == "denied by the user: not now"


async def test_items_decided_elsewhere_leave_the_queue_and_deny_works(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="ops", ws=ws)
    script = Script(
        [
            Turn(tool_calls=[call("publish", channel="a", id="x1"), call("publish", channel="b", id="x2")]),
            "done",
        ]
    )
    agent = Agent(model=script.model, tools=[publish], session=s, ws=ws)
    queue = ApprovalQueue(user, ws=ws)
    handle = agent.prompt("post twice")
    while len(queue.items) < 2:
        await asyncio.sleep(0.01)
    # the two calls wait side by side, so their items may be queued in either order
    first, second = sorted(queue.items, key=lambda i: i.payload["input"]["channel"])
    await asyncio.to_thread(
        approvals.deny_item, first, user, note="not there", ws=ws
    )  # another cell / person
    while len(queue.items) != 1:
        await asyncio.sleep(0.01)
    queue.deny(second.id, note="nor there")
    assert await asyncio.wait_for(handle, CEILING_S) == "done"
    assert [m["content"] for m in agent.messages if m["role"] == "tool"] == [
        "denied by the user: not there",
        "denied by the user: nor there",
    ]
    assert repr(queue) == "<ApprovalQueue pending=0>"


async def test_each_item_says_which_agent_session_and_notebook_it_comes_from(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "ops/posting.ipynb")  # what Jupyter Server tells its kernels
    social = sessions.create_session(user, name="social", ws=ws)
    news = sessions.create_session(user, name="newsletter", ws=ws)
    poster = Script([Turn(tool_calls=[call("publish", channel="mastodon")]), "Posted."])
    anonymous = Script([Turn(tool_calls=[call("publish", channel="mail")]), "Mailed."])
    named = Agent(model=poster.model, tools=[publish], session=social, ws=ws, name="Poster")
    unnamed = Agent(model=anonymous.model, tools=[publish], session=news, ws=ws)
    queue = ApprovalQueue(user, ws=ws)
    handles = [named.prompt("post it"), unnamed.prompt("mail it")]
    while len(queue.items) < 2:
        await asyncio.sleep(0.01)
    origins = {  # each item's heading, by the channel it would post to
        i.payload["input"]["channel"]: row.children[0].value
        for i, row in zip(queue.items, queue.list_box.children, strict=True)
    }
    assert (
        f"from agent Poster ({poster.model}) · session “social” · notebook ops/posting.ipynb"
        in origins["mastodon"]
    )
    assert (
        f"from agent {anonymous.model} · session “newsletter” · notebook ops/posting.ipynb" in origins["mail"]
    )
    # one query for the whole page, however many items it holds
    statements: list[str] = []
    sa.event.listen(ws.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    found = approvals.approval_origins(queue.items, ws=ws)
    assert len([q for q in statements if "approval_items" in q]) == 1
    assert {o.session for o in found.values()} == {"social", "newsletter"}
    for item in list(queue.items):
        queue.approve(item.id)
    assert sorted(await asyncio.wait_for(asyncio.gather(*handles), CEILING_S)) == ["Mailed.", "Posted."]


async def test_a_workflow_gate_says_its_workflow_run_and_step(ws: Workspace, user: User) -> None:
    from cmdc_nb import workflows as wf

    s = sessions.create_session(user, name="releases", ws=ws)
    release = wf.create_workflow(
        user,
        {
            "name": "Release",
            "steps": [wf.step("ship", "approval", name="Ship it", title="Ship?", payload={"version": "5"})],
        },
        ws=ws,
    )
    run = await wf.arun_workflow(release, session=s, stop_when_blocked=True, ws=ws)
    queue = ApprovalQueue(user, ws=ws)
    [row] = queue.list_box.children
    assert (
        f"from workflow “Release” run {str(run.id)[:8]} step “Ship it” · session “releases”"
        in row.children[0].value
    )
    assert approvals.approval_origins(queue.items, ws=ws)[queue.items[0].id].agent is None
