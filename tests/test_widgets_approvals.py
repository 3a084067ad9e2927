"""ApprovalQueue: pending items across sessions, live from events; its buttons decide for real."""

from __future__ import annotations

import asyncio
from typing import Any

from waiting import CEILING_S

from cmdc_nb import approvals, sessions
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
    find(queue, "Textarea")[0].value = '{"channel": "bluesky"}'
    find(queue, "Text")[0].value = "better audience"
    find(queue, "Button", "Approve")[0].click()
    assert await asyncio.wait_for(handle, CEILING_S) == "Posted."
    assert agent.messages[2]["content"] == "published on bluesky"
    decided = approvals.get_approval_item(item, ws=ws)
    assert (decided.status, decided.decision_note) == ("approved", "better audience")
    await asyncio.sleep(0.05)
    assert queue.items == []


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
