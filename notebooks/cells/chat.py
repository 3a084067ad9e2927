"""The cells of 01_chat_and_approvals: rules, remembered decisions and their scope, edited arguments, the
audit of who decided what, steering, abort and model switching.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# Chat and approvals: who may do what, and who decided

An agent's tool can need a person's approval before it runs. Asking every time wears people out, so
**rules** decide the routine cases first; a person can **remember** a decision ("Always allow"); and
every decision is kept, so you can always ask *who let this happen?* This notebook chats with an agent
that writes files, approves and refuses its calls by rule and by hand, and ends with the audit table.

**You will learn**

1. how a tool call waits for a person, in the chat and from code;
2. rules that approve or deny the routine cases before anyone is asked (deny beats approve);
3. what "Always allow" remembers — *that tool, with exactly those arguments, in this session* — and
   that a call with other arguments, or in another chat, still asks;
4. how to edit a call's arguments before approving it (they are checked against the tool's JSON schema);
5. how to read the audit: every decided item, by whom (a person or a rule), how, with the edits and notes;
6. steering a running turn, stopping it, and switching models mid-conversation;
7. editing a prompt and sending it again as a branch, with every version kept;
8. sending a picture with a prompt, and what happens with a model that cannot see.

**Prerequisites**: [00 — Tour](00_tour.ipynb); Python's `async` / `await` (a cell can `await`).
**Time to run**: about 15 seconds, offline: the models are *scripted* (they go through litellm like a
real provider), so the outputs are the same on every run. The approval sections keep their scripted
models even when an API key is set, since they need these exact tool calls; with a key, steering and
stopping (sections 6 and 7) talk to a real model (`choose_model`).

Reference: [docs/approvals.md](../docs/approvals.md) · Next: [02 — Workflows](02_workflows.ipynb)""",
    SETUP,
    """md:## 1. A tool that needs approval, and two rules

`approval_class="medium"` makes every call of `write_file` wait for a decision. Before a person is
asked, the owner's **rules** look at the call: this one approves writes under `/tmp/`, that one refuses
anything under `/etc/`. A matching `deny` rule wins over any `approve` rule, whatever their priorities.""",
    """import asyncio
import pandas as pd
from IPython.display import HTML
from cmdc_nb import approvals, frames, kernel, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call, choose_model
from cmdc_nb.widgets import ApprovalQueue, ChatWidget

pd.set_option("display.max_colwidth", 120)  # rules and calls in full, not cut at 50 characters
files = {}  # where write_file writes: a dict, so the notebook touches no real file

@tool(approval_class="medium", side_effects=("filesystem",))
def write_file(path: str, text: str) -> str:
    \"\"\"Write a text file.\"\"\"
    files[path] = text
    return f"wrote {len(text)} characters to {path}"

approvals.create_approval_rule(me, name="scratch files", approval_type="tool_use", tool_names=["write_file"],
                               conditions={"path_pattern": "/tmp/**"}, action="approve")
approvals.create_approval_rule(me, name="never /etc", approval_type="tool_use", tool_names=["write_file"],
                               conditions={"path_pattern": "/etc/**"}, action="deny",
                               action_note="system files are off limits")

def describe(conditions):
    \"\"\"A rule's conditions in words.\"\"\"
    said = []
    for key, value in conditions.items():
        if key == "path_pattern":
            said.append(f"path matches {value}")
        elif key == "input":
            said.append("arguments are exactly " + ", ".join(f"{k}={v!r}" for k, v in value.items()))
        else:
            said.append(f"{key} = {value!r}")
    return "; ".join(said) or "any call"

def rules_table():
    \"\"\"Ada's rules, in the order they are tried (highest priority first), and what each one covers.\"\"\"
    names = {s.id: f"only in “{s.name}”" for s in sessions.list_sessions(me)}
    return pd.DataFrame([{
        "rule": r.name, "action": r.action.value, "tool": ", ".join(r.tool_names) or "any",
        "when": describe(r.conditions),
        "sessions": ", ".join(names[s] for s in r.applies_to_sessions) or "every session",
        "priority": r.priority, "remembered": r.is_sticky,
    } for r in approvals.list_approval_rules(me)])

rules_table()
"""
    + CHECK,
    """md:## 2. A person decides the rest, in the chat

The scripted model asks for three writes in one turn. The rules settle two of them; the third, to Ada's
home folder, waits for her. In JupyterLab the chat shows it as a card with *Approve* and *Deny*
buttons; here the next cell decides it from code, as a notebook of checks would.""",
    """writer = Script([
    Turn("Saving all three.", tool_calls=[call("write_file", path="/tmp/draft.txt", text="first draft"),
                                          call("write_file", path="/etc/motd", text="hello"),
                                          call("write_file", path="/home/ada/report.md", text="# Q3 report")]),
    "The draft and the report are saved; /etc/motd was refused.",
], name="writer")
chat_session = sessions.create_session(me, name="Approvals")
# `writer.model`, not `choose_model(writer)`: the approval sections need these exact calls, key or no key.
agent = Agent(model=writer.model, tools=[write_file], session=chat_session, name="Writer")
chat = ChatWidget(agent, height="360px")
handle = chat.send("Save 'first draft' to /tmp/draft.txt, 'hello' to /etc/motd and '# Q3 report' to "
                   "/home/ada/report.md")
chat""",
    """md:`kernel.approve` decides a waiting call; `by=me` records who decided, `note` why, and
`remember=True` saves the decision as a rule, named *Always allow write_file* (the gateway's approve
endpoint takes `remember` too).""",
    """async def decide_waiting(agent, handle, decide):
    \"\"\"Until the turn ends, hand each of `agent`'s calls that waits for a person to `decide(pending)`.\"\"\"
    seen = set()
    while not handle.done():
        for pending in agent.status()["pending_approvals"]:
            if pending["ref"] not in seen:
                seen.add(pending["ref"])
                print("waiting for a person:", pending["tool"], pending["args"])
                await decide(pending)
        await asyncio.sleep(0.02)
    return await handle

reply = await decide_waiting(agent, handle, lambda p: kernel.approve(agent, p["ref"], by=me, remember=True,
                                                                      note="reports are fine"))
print(reply)
print("written:", sorted(files))
print("the model was told:", [m["content"] for m in agent.messages if m["role"] == "tool"])
"""
    + CHECK,
    """md:## 3. What did "Always allow" remember?

A remembered decision is a rule like the others, marked `remembered`, tried first (priority 1000) —
and narrow. It matches **that tool, with exactly those arguments, in this session**: not other text
for the same file, not other files, not another chat. (A `deny` rule still beats it.)""",
    """rules_table()
"""
    + CHECK,
    """md:Seen at work: a second turn, with another model (`switch_model` changes the model for the next
request; the conversation carries over). The model asks for the very same write, then for the same
file with other text. The first is approved by the remembered rule, without asking; the second waits.""",
    """again = Script([Turn("Writing it again, then the second draft.",
                     tool_calls=[call("write_file", path="/home/ada/report.md", text="# Q3 report"),
                                 call("write_file", path="/home/ada/report.md", text="# Q3 report, draft 2")]),
                "Done: the report, and draft 2 beside it."], name="writer-2")
kernel.switch_model(agent, again.model)
handle = agent.prompt("Write '# Q3 report' to /home/ada/report.md again, then '# Q3 report, draft 2'")
while not handle.done() and not agent.status()["pending_approvals"]:
    await asyncio.sleep(0.02)
[waiting] = agent.status()["pending_approvals"]
print("waiting for a person:", waiting["tool"], waiting["args"])
print("approved without asking:", [m["content"] for m in agent.messages if m["role"] == "tool"][-1])
"""
    + CHECK,
    """md:## 4. Editing a call before approving it

Ada would rather keep draft 2 beside the report than over it: she approves the call with its `path`
changed. Edited arguments are checked against the tool's JSON schema first — the same schema the model
was given — so a wrong edit is refused, naming the argument (and not repeating the value), and the call
keeps waiting:""",
    """print(write_file.schema()["function"]["parameters"]["properties"])
try:
    await kernel.approve(agent, waiting["ref"], by=me, args={"path": "/home/ada/report-v2.md", "text": 2})
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}  (field {exc.field})")
print("still waiting:", [p["args"]["path"] for p in agent.status()["pending_approvals"]])
"""
    + CHECK,
    """edited = {"path": "/home/ada/report-v2.md", "text": "# Q3 report, draft 2"}
await kernel.approve(agent, waiting["ref"], by=me, args=edited, note="keep the first draft")
print(await handle)
print(files)
"""
    + CHECK,
    """md:And in another chat, the remembered arguments ask again: the rule applies to the session it was
made in. Ada refuses this one (`kernel.reject`); the model is told, with her note.""",
    """elsewhere = sessions.create_session(me, name="Side chat")
stray = Script([Turn(tool_calls=[call("write_file", path="/home/ada/report.md", text="# Q3 report")]),
                "Understood, I will leave the report alone."], name="stray")
side = Agent(model=stray.model, tools=[write_file], session=elsewhere, name="Side")
handle = side.prompt("Overwrite /home/ada/report.md with '# Q3 report'")
reply = await decide_waiting(side, handle, lambda p: kernel.reject(side, p["ref"], by=me,
                                                                   note="not from this chat", auto_resume=True))
print(reply)
print("the model was told:", [m["content"] for m in side.messages if m["role"] == "tool"])
"""
    + CHECK,
    """md:## 5. Who decided what: the audit

`frames.approvals_frame` has one row per decided approval item: **how** it was decided (`person`,
`rule`, `remembered`, or `timeout` when no one answered in time), **who** (the person's e-mail, or
the rule's name), when, the tool and the arguments the model proposed, the **edits** made before
approving (from → to) and the note. It is scoped like the other frames (`user=`, `session=`,
`since=` / `until=`, `status=`). The times and ids are in the frame too (`decided_at`, `id`, …);
the table below leaves them out so it reads the same on every run.""",
    """audit = frames.approvals_frame(user=me)
print(len(audit), "decisions;", list(audit.columns))
"""
    + CHECK,
    """chats = {str(s.id): s.name for s in sessions.list_sessions(me)}
shade = {"person": "#fff3cd", "rule": "#d1e7dd", "remembered": "#cfe2ff", "timeout": "#e2e3e5"}

def args_text(args):
    return ", ".join(f"{k}={v!r}" for k, v in (args or {}).items())

def edits_text(edits):
    return "; ".join(f"{k}: {e['from']!r} → {e['to']!r}" for k, e in (edits or {}).items())

table = pd.DataFrame({
    "chat": audit["session_id"].astype(str).map(chats),
    "how": audit["how"].astype(str),
    "decided by": audit["decided_by"].fillna("—"),
    "decision": audit["status"].astype(str),
    "call": audit["tool_name"].astype(str) + "(" + audit["arguments"].map(args_text) + ")",
    "edits": audit["edits"].map(edits_text),
    "note": audit["note"].fillna(""),
})
table.index = range(1, len(table) + 1)
styled = (table.style.set_uuid("audit")  # a fixed id: the same HTML on every run
          .map(lambda how: f"background-color: {shade[how]}; color: #24292f", subset=["how"])
          .set_properties(**{"text-align": "left"}))
HTML(styled.to_html())  # the HTML alone: a Styler's text form carries its memory address
"""
    + CHECK,
    """md:How often did a person have to be asked? Decisions by how they were made and what they decided:""",
    """pd.crosstab(audit["how"], audit["status"].astype(str), margins=True, margins_name="total")
"""
    + CHECK,
    """md:## 6. Steering a running turn

`steer` queues a message that the agent reads at its next safe point, inside the same run. Each
section switches to a new scripted model, which is also how you would switch to a cheaper or a stronger
model mid-conversation.""",
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
    """md:## 7. Stopping a turn

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
    """queue = ApprovalQueue(me)
print(approvals.count_pending_approvals(me), "waiting")
queue
"""
    + CHECK,
    """md:## 8. Branches: edit a prompt, send it again, keep both

Nothing in a stored chat is overwritten. **edit** on a prompt (or `chat.edit(text)`) forks the session
just before it and sends the new text there; **Re-run** on a reply answers its prompt again in a fork;
**Undo** follows a fork without the last prompt. The chat shows the fork, and **‹ 1/2 ›** under the
message pages between the versions.""",
    f"""ideas = Script(["Call it *Lumen*.", "Call it *Tally*: short, and it counts."], name="namer")
namer = Agent(model=ideas.model, session=sessions.create_session(me, name="Naming"))
branchy = ChatWidget(namer, height="260px")
print(await branchy.send("Name our app for notes"))
print(await branchy.edit("Name our app for counting things"))
{CHECK}""",
    f"""# two versions of the first prompt, each its own session: nothing was lost
versions = sessions.branches(branchy.agent.recorder.session_id, 1)
pd.DataFrame([{{"version": i + 1, "session": s.name,
               "conversation": " / ".join(m.content for m in sessions.list_messages(s).entries)}}
              for i, s in enumerate(versions)])
{CHECK}""",
    """branchy  # the chat shows the newest version; ‹ pages back to the first""",
    """md:## 9. A picture with the prompt

`prompt(text, files=[…])` (or **Attach**, or dropping files on the chat) sends images, PDFs and text files
with a prompt, in litellm's multimodal format. What a file is comes from its bytes, not its name; each is
stored once, as an artifact of the session, and the chat draws a thumbnail in the prompt's bubble. A model
that cannot see images is refused with a sentence before anything is sent. The scripted model here says it
sees images (`accepts=["image"]`) and answers from the picture it was sent.""",
    f"""import io
from PIL import Image, ImageDraw
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.providers.attachments import attach

canvas = Image.new("RGB", (240, 120), "white")
ImageDraw.Draw(canvas).rectangle((20, 20, 120, 100), fill=(220, 40, 40))
picture = io.BytesIO(); canvas.save(picture, format="PNG")

def describe(messages):  # an offline "vision" model: it reports what it was sent
    sent = [p for p in messages[-1]["content"] if p["type"] == "image_url"]
    return f"I was sent {{len(sent)}} picture ({{len(sent[0]['image_url']['url']):,}} characters of data URL)."

eyes = Script(describe, name="eyes", accepts=["image"])
viewer = ChatWidget(Agent(model=eyes.model, session=sessions.create_session(me, name="Pictures")), height="240px")
print(await viewer.send("What is in this picture?", files=[attach(picture.getvalue(), name="square.png")]))
stored = [m for m in sessions.list_messages(viewer.agent.recorder.session_id).entries if m.attachments]
print([(f["name"], f["media_type"], f["width"], f["height"]) for m in stored for f in m.attachments])
try:
    Agent(model=Script(["?"], name="text-only").model).prompt("Look", files=[attach(picture.getvalue(), name="square.png")])
except InvalidInputError as exc:
    print("refused:", exc)
{CHECK}""",
    """viewer  # the prompt's bubble shows the picture""",
    """md:## Recap

- A tool with an approval class waits for a decision; `kernel.approve(agent, ref, by=…, note=…)` and
  `kernel.reject(…)` decide from code, the chat's buttons from the page.
- Rules decide first: a matching `deny` rule refuses, else the highest-priority matching `approve` rule
  approves (within its limits), else a person is asked.
- *Always allow* (`remember=True`) saves a rule for **that tool, with exactly those arguments, in this
  session**; other arguments or another chat still ask. `rules_table()` above shows each rule's scope.
- Edited arguments (`args=`) are checked against the tool's JSON schema; a wrong edit is refused with the
  argument named, and the call keeps waiting.
- `frames.approvals_frame` is the audit: one row per decision, how, by whom, the call, the edits, the note.
- `steer` adds a message to a running turn, `abort` stops it, `switch_model` changes the next request's model.
- Edit, Re-run and Undo are forks of the session: every version stays stored, `sessions.branches` lists
  them, and ‹ › in the chat pages between them.
- `prompt(text, files=[…])` sends images, PDFs and text files; each is stored once as an artifact of the
  session, and a model that cannot take them is refused before anything is sent.

More in [docs/approvals.md](../docs/approvals.md).

## Exercises

**1. A rule for notes.** Ada keeps notes in `/home/ada/notes/`. Create a rule, `my_rule`, that approves
`write_file` calls of Markdown files directly in that folder (`*.md`), and nothing else — path patterns
work segment by segment: `*` never crosses a `/`, `**` does. Then run the check under it (its code is
folded: click the `…` to see it). It makes a scripted model write three files in a fresh chat, and
reads the audit to see which ones your rule approved.""",
    """my_rule = None  # your code: my_rule = approvals.create_approval_rule(me, name="notes", ...)
"""
    + CHECK,
    r"""hidden:# The check of exercise 1: three writes in a fresh chat; the audit says which your rule approved.
if my_rule is None:
    print("Not yet: set my_rule to approvals.create_approval_rule(me, ...) and run the cell again.")
else:
    notes_chat = sessions.create_session(me, name="Exercise 1")
    tries = ["/home/ada/notes/monday.md", "/home/ada/notes/old/friday.md", "/home/ada/notes/todo.txt"]
    script = Script([Turn(tool_calls=[call("write_file", path=p, text="…") for p in tries]), "Done."],
                    name="exercise-1")
    check = Agent(model=script.model, tools=[write_file], session=notes_chat)
    handle = check.prompt("Write three notes")
    while not handle.done():  # what your rule leaves to a person is refused
        for p in check.status()["pending_approvals"]:
            kernel.reject(check, p["ref"], by=me, auto_resume=True)
        await asyncio.sleep(0.02)
    await handle
    by_rule = frames.approvals_frame(session=notes_chat)
    approved = [a["path"] for a, who in zip(by_rule["arguments"], by_rule["decided_by"]) if who == my_rule.name]
    if approved == tries[:1]:
        print("✓ Your rule approved", approved, "and left the other two to a person.")
    elif tries[0] not in approved:
        print("Not yet: your rule did not approve", tries[0])
    else:
        print("Not yet: your rule also approved", [p for p in approved if p != tries[0]])
"""
    + CHECK,
    """md:**2. Read the audit.** From `audit`, make `asked`: the list of the notes people wrote when they
approved or refused a call (`how == "person"`), in the order they were decided.""",
    """asked = None  # your code
"""
    + CHECK,
    r"""hidden:# The check of exercise 2.
expected = audit.loc[audit["how"] == "person", "note"].tolist()
if asked is None:
    print("Not yet: set asked to a list of notes.")
elif list(asked) == expected:
    print("✓", len(expected), "decisions needed a person:", expected)
else:
    print("Not yet: compare with audit[audit['how'] == 'person'].")
"""
    + CHECK,
    """md:Next: [02 — Workflows](02_workflows.ipynb), where approvals gate the steps of a workflow.""",
]
