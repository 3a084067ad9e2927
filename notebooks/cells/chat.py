"""The cells of 01_chat_and_approvals: rules, sticky decisions, steering, abort, model switching.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# Chat and approvals: rules, sticky decisions, steering, abort, model switching

An agent's tools can need a person's approval. Rules decide the routine cases before anyone is asked;
a decision can be remembered for the session; a running turn can be steered or stopped.""",
    SETUP,
    """md:## A rule approves the routine case, a person decides the rest

The rule approves `write_file` under `/tmp/`; the write to the home folder waits.""",
    """from cmdc_nb import approvals, kernel, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call, choose_model
from cmdc_nb.widgets import ApprovalQueue, ChatWidget

files = {}

@tool(approval_class="medium", side_effects=("filesystem",))
def write_file(path: str, text: str) -> str:
    \"\"\"Write a text file.\"\"\"
    files[path] = text
    return f"wrote {len(text)} characters to {path}"

approvals.create_approval_rule(me, name="scratch files", approval_type="tool_use", tool_names=["write_file"],
                               conditions={"path_pattern": "/tmp/**"}, action="approve")
writer = Script([
    Turn("Saving both.", tool_calls=[call("write_file", path="/tmp/draft.txt", text="first draft"),
                                     call("write_file", path="/home/ada/report.md", text="# Q3 report")]),
    "Both files are written.",
], name="writer")
chat_session = sessions.create_session(me, name="Approvals")
agent = Agent(model=choose_model(writer), tools=[write_file], session=chat_session, name="Writer")
chat = ChatWidget(agent, height="320px")
handle = chat.send("Save 'first draft' to /tmp/draft.txt and '# Q3 report' to /home/ada/report.md")
chat""",
    f"""import asyncio
while not handle.done():
    for pending in agent.status()["pending_approvals"]:
        print("waiting for a person:", pending["args"]["path"])
        # Approve, and remember the decision for this session: the same call is approved from now on.
        kernel.approve(agent, pending["ref"], remember=True, note="reports are fine")
    await asyncio.sleep(0.05)
print(await handle)
print(sorted(files))
{CHECK}""",
    """md:## A remembered decision, and switching models mid-session

`switch_model` changes the model for the next request; the conversation carries over.""",
    f"""again = Script([Turn(tool_calls=[call("write_file", path="/home/ada/report.md", text="# Q3 report")]),
                "Rewritten — no one had to be asked."], name="writer-2")
kernel.switch_model(agent, choose_model(again))
print(await agent.prompt("Write '# Q3 report' to /home/ada/report.md again"))
print([r.name for r in approvals.list_approval_rules(me)])
{CHECK}""",
    """md:## Steering a running turn

`steer` queues a message that the agent reads at its next safe point, inside the same run.""",
    f"""def answer(messages):
    last = [m for m in messages if m["role"] == "user"][-1]["content"]
    return Turn(f"(answering: {{last}})", chunk_delay=0.02)

steerable = Script(answer, name="steerable")
kernel.switch_model(agent, choose_model(steerable))
handle = agent.prompt("Summarise the Q3 report")
await asyncio.sleep(0.05)
print(kernel.steer(agent, "Keep it to one sentence").status)
print(await handle)
{CHECK}""",
    """md:## Stopping a turn

`abort` stops at once: the run is cancelled, the calls in flight are stored as cancelled, and the
agent is ready for the next prompt.""",
    f"""slow = Script([Turn("Thinking about it " * 200, chunk_delay=0.01)], name="slow")
kernel.switch_model(agent, choose_model(slow))
handle = agent.prompt("Write a long essay")
await asyncio.sleep(0.1)
print(kernel.abort(agent, reason="user_cancelled"))
try:
    await handle
except Exception as exc:
    print(type(exc).__name__)
print("agent is", agent.state.value)
{CHECK}""",
    """md:Everything waiting for you, across sessions and workflows, is in one queue (empty now):""",
    "ApprovalQueue(me)",
]
