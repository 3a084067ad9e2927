"""The cells of 05_inside_the_agent_loop: the loop by hand, then Agent.prompt, events and plugins.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# Inside the agent loop

An agent is a loop: send the conversation to the model; if the reply asks for tools, run them, append
their results and send the conversation again; when a reply asks for no tool, it is the answer. This
notebook writes that loop in about fifteen lines of plain Python, runs cmdc_nb's `Agent` on the same model
to show what it adds — an event at each step, and hooks where plugins change what happens — and ends
with two plugins at work: one that blocks a tool call, and Reflection, which makes the model review its
answer before the run ends.

**You will learn**

- what `@tool` sends the model: a JSON schema made from the function's signature and docstring;
- the loop itself, and the messages sent on each request;
- the events `Agent.prompt` emits at each step, as a table, and where the plugin hooks sit;
- how a plugin's intervention sends the loop round again (Reflection), and which answer it accepted.

**Prerequisites**: Python's `async` / `await`; [01 — Chat and approvals](01_chat_and_approvals.ipynb)
shows an agent from the outside, this notebook opens it up.
**Time to run**: about 20 seconds, offline: the model is *scripted* (it goes through litellm like a real
provider). With an API key set, the chat cells talk to that provider instead (`choose_model`).

Reference: [docs/kernel.md](../docs/kernel.md) · Next: [06 — Team mode](06_team_mode.ipynb)""",
    SETUP,
    """md:## 1. A tool is a function and a JSON schema

The model never sees your Python function: it sees a name, a description and a JSON schema of the
arguments. `@tool` builds them from the signature (through pydantic) and the docstring.""",
    r'''import json
from cmdc_nb.kernel import tool

@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b

print(json.dumps(add.schema(), indent=2))
'''
    + CHECK,
    """md:The model answers with a name and a JSON object of arguments. They are checked against the
schema before the function runs: what can be coerced is, and anything else becomes an error result
the model reads and can correct.""",
    r"""from cmdc_nb.kernel import ToolError

print(add.validate({"a": "2", "b": 3}))  # "2" is coerced to 2
try:
    add.validate({"a": 2, "c": 3})
except ToolError as exc:
    print(exc)
"""
    + CHECK,
    """md:## 2. The loop in about fifteen lines

A scripted model plays its turns in order: the first asks for `add(2, 3)`, the second answers.
`stream_completion` is the provider call the kernel makes (litellm's `acompletion` with streaming,
one retry layer and fallback models); it returns a `Completion` with the text and the parsed tool
calls.""",
    r"""from cmdc_nb.providers import ProviderRequest, Script, Turn, call, describe_model_choice, stream_completion

script = Script([Turn("Let me add them.", tool_calls=[call("add", a=2, b=3)]), "2 + 3 = 5."], name="adder")
choice = describe_model_choice(script)  # the scripted model, or a real one when an API key is set
model = choice.model
print(choice)
"""
    + CHECK,
    r"""async def toy_loop(model, question, tools, max_turns=5):
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools]  # what the model is told about the tools
    messages = [{"role": "user", "content": question}]
    sent = []  # a copy of each request's messages, to look at below
    for _ in range(max_turns):
        sent.append(list(messages))
        request = ProviderRequest(model, messages, tools=schemas)  # the whole conversation, every time
        reply = await stream_completion(request, on_part=lambda part: None)  # streamed pieces: unused here
        messages.append(reply.message())  # the assistant's turn, its tool calls included
        if not reply.tool_calls:
            return reply.text, sent  # no tool call: this is the answer
        for c in reply.tool_calls:  # run each tool; its result goes back as a "tool" message
            result = by_name[c.name].fn(**c.arguments)
            messages.append({"role": "tool", "tool_call_id": c.id, "content": str(result)})
    raise RuntimeError(f"no answer after {max_turns} requests")

answer, toy_sent = await toy_loop(model, "What is 2 + 3?", [add])
print(answer)
print(len(toy_sent), "requests")
"""
    + CHECK,
    """md:### What each request carried

The model keeps nothing between requests: each one carries the whole conversation so far. The second
request repeats the question, adds the model's own tool call (an assistant message with `tool_calls`)
and the tool's result (a `tool` message tied to the call by `tool_call_id`).""",
    r'''import pandas as pd

def requests_table(requests):
    """One row per message of each request: what the model was sent, request by request."""
    rows = []
    for n, messages in enumerate(requests, 1):
        for i, m in enumerate(messages):
            calls = [f"{c['function']['name']}({c['function']['arguments']})" for c in m.get("tool_calls") or []]
            rows.append({"request": n, "message": i, "role": m["role"], "content": m.get("content"),
                         "tool_calls": ", ".join(calls), "tool_call_id": m.get("tool_call_id", "")})
    return pd.DataFrame(rows).set_index(["request", "message"])

requests_table(toy_sent)
'''
    + CHECK,
    """md:## 3. The loop, drawn

The same loop as the kernel runs it. The boxes are the plugin hooks (section 5); under each, the
events it emits. The toy loop above is the path *request → tool calls? → run the tools → request*,
and *no → answer*.

```mermaid
flowchart TD
    P(["agent.prompt(text)"]) --> BP["before_prompt<br/>agent_start · the user message appended"]
    BP --> BR["before_request"]
    BR --> RQ["request to the model<br/>request_start · message_delta … · response_complete"]
    RQ --> AR["after_response"]
    AR --> TC{"tool calls?"}
    TC -- yes --> BT["before_tool, for each call<br/>tool_calls · tool_execution_start"]
    BT --> RUN["run the tools, concurrently<br/>tool_execution_end"]
    RUN --> AT["after_tool · after_tool_batch<br/>the results appended as tool messages"]
    AT --> BR
    TC -- no --> BF["before_finish"]
    BF -- "a plugin intervenes:<br/>its text becomes a user message" --> BR
    BF -- "nothing to add" --> END(["after_turn · agent_end<br/>the reply is returned"])
```

A run also stops at `max_turns` (100 requests), when the same call repeats (`loop_detected`), or on
`agent.abort()` from any state; `agent.steer(text)` adds a user message before the next request.""",
    """md:## 4. `Agent.prompt`: the same loop, with an event at each step

The agent runs the same model (the script rewound to its first turn) with the same tool. Every step
is an event; a subscriber sees each one as it happens. At each `request_start`, `agent.last_request`
is the request about to go to the model.""",
    r"""from cmdc_nb.kernel import Agent

script.reset()  # rewind the script to its first turn
agent = Agent(model=model, tools=[add], prompt_mode="minimal", system_prompt="You are a careful calculator.")
events, sent = [], []

def watch(env):
    events.append(env)
    if env.type == "request_start":
        sent.append(agent.last_request)  # the request as it goes to the model

agent.events.subscribe(watch)
print(await agent.prompt("What is 2 + 3?"))
"""
    + CHECK,
    """md:The reply is all the assistant text of the run, not only the last response's. The events, in
order (timings left out, since they change on every run):""",
    r'''def events_frame(envelopes):
    """One row per event: its index, its type and its fields."""
    def details(event):  # its fields, without the empty ones and the timings
        parts = []
        for k, v in event.to_dict().items():
            if v in (None, "", [], {}) or k.endswith("_ms"):
                continue
            parts.append(f"usage={v['input']} in + {v['output']} out" if k == "usage" else f"{k}={v!r}")
        return ", ".join(parts)
    return pd.DataFrame([{"#": e.index, "type": e.type, "details": details(e.event)} for e in envelopes]).set_index("#")

events_frame(events)
'''
    + CHECK,
    """md:Each `message_delta` is a streamed piece of text; `tool_execution_metrics` comes at a tool's start
and at its end (with its duration). The requests the agent sent are the toy loop's, with the system
prompt first (`prompt_mode="minimal"`: yours and the tool names; the default, `"full"`, adds cmdc_nb's
instructions and the working directory):""",
    r"""requests_table([r.messages for r in sent])
"""
    + CHECK,
    """md:Every event type, with its fields (the kernel's first, then those of the built-in plugins and
tools, which register their own):""",
    r"""from IPython.display import Markdown
import cmdc_nb.plugins, cmdc_nb.toolkit  # each feature registers its own event types
from cmdc_nb.kernel.events import events_table
Markdown(events_table())
"""
    + CHECK,
    """md:## 5. Plugins: hooks and actions

A plugin is called at the hooks of the diagram and answers with an action: continue, intervene (add a
user message), abort, skip the later plugins, block the tool, replace its arguments or its result,
switch the model, emit an event, or make the call wait for approval. Which hook allows which action:""",
    r"""from cmdc_nb.kernel import hook_action_matrix
Markdown(hook_action_matrix())
"""
    + CHECK,
    """md:A plugin that blocks shell commands which delete files, and notes each hook it is called at. The
blocked call never runs: the model gets an error result saying why, and answers from there.""",
    r'''from cmdc_nb.kernel import BlockTool, Plugin

class NoDeletes(Plugin):
    """Blocks shell commands that delete files; notes each hook it is called at."""
    def __init__(self):
        super().__init__()
        self.calls = []

    def handle(self, event, ctx):
        action = None
        if event.hook.value == "before_tool" and "rm " in str(event.args.get("command")):
            action = BlockTool("deleting files is not allowed here")
        self.calls.append({"hook": event.hook.value, "requests so far": ctx.turn,
                           "returned": type(action).__name__ if action else "None (go on)"})
        return action

@tool
def shell(command: str) -> str:
    """Run a shell command."""
    return f"ran {command}"

script = Script([Turn(tool_calls=[call("shell", command="rm -rf build/")]), "I may not delete; leaving build/ alone."],
                name="cleaner")
guard = NoDeletes()
agent = Agent(model=describe_model_choice(script).model, tools=[shell], plugins=[guard])
print(await agent.prompt("Clean the build folder with `rm -rf build/`"))
print("the model was told:", [m["content"] for m in agent.messages if m["role"] == "tool"])
pd.DataFrame(guard.calls)
'''
    + CHECK,
    """md:## 6. Planning: a plugin that changes the request

With the Planning plugin the agent writes a plan first; the plugin keeps it in the system prompt and
attaches an `update_plan` tool, with which the model marks steps done as it works. The last request
shows both (`prompt_mode="none"` leaves only the plugins' part of the system prompt).""",
    r"""from cmdc_nb.plugins import Planning
from cmdc_nb.widgets import PlanView

script = Script([
    "# Plan: ship the release\n- [ ] Run the tests\n- [ ] Tag the release",
    Turn(tool_calls=[call("update_plan", step="1", status="completed", note="412 passed")]),
    Turn(tool_calls=[call("update_plan", step="2", status="completed", note="v2.0.0")]),
    "Released v2.0.0.",
], name="planner")
planning = Planning()
agent = Agent(model=describe_model_choice(script).model, plugins=[planning], prompt_mode="none")
view = PlanView(agent)
print(await agent.prompt("Ship the v2.0.0 release: run the tests, then tag it"))  # ≥ 20 characters: plan first
print("steps done:", planning.plan.progress() if planning.plan else "no plan was written")
last = agent.last_request
print("tools offered:", [t["function"]["name"] for t in last.tools])
print("system prompt:", next((m["content"] for m in last.messages if m["role"] == "system"), "(none)"), sep="\n")
"""
    + CHECK,
    "view",
    """md:## 7. Reflection: the loop goes round again

The Reflection plugin reviews the answer before the run ends: at `before_finish` it *intervenes* —
its review prompt becomes a user message, and the loop sends another request (the arrow back from
`before_finish` in the diagram). The model either replies with the pass signal (`APPROVED`) or with a
corrected answer, which is reviewed again, up to `max_reviews`.""",
    r"""from cmdc_nb.plugins import Reflection

script = Script(["6 × 7 = 41.", "Sorry: 6 × 7 = 42.", "APPROVED"], name="reflective")
agent = Agent(model=describe_model_choice(script).model, plugins=[Reflection(max_reviews=3)])
events = []
agent.events.subscribe(events.append)
reply = await agent.prompt("What is six times seven?")

reviews = {e.event.prompt for e in events if e.type == "intervention"}
pd.DataFrame([{"role": "user (Reflection's review)" if m["content"] in reviews else m["role"],
               "content": m["content"]} for m in agent.messages])
"""
    + CHECK,
    """md:The conversation holds both answers and the pass signal, and so does the run's reply, which is
all the assistant text of the run. The answer the review accepted is in the `reflection_approved`
event:""",
    r"""[approved] = [e.event for e in events if e.type == "reflection_approved"]
print("the run's reply:", repr(reply))
print("reviews:", approved.iteration, "(max_reviews reached: accepted as it was)" if approved.forced else "(passed)")
print("accepted answer:", approved.answer)
"""
    + CHECK,
    """md:## Recap

- A tool is a function plus a JSON schema; the model sends a name and arguments, which are validated
  before the function runs.
- The loop: send the whole conversation → run the tool calls → append the results → send again, until
  a reply asks for no tool. Each request carries everything; the model remembers nothing.
- `Agent.prompt` runs that loop as a task on the notebook's event loop, emitting an event at each step
  (`agent.events.subscribe`), with `agent.last_request` showing each request as it goes out.
- Plugins answer at hooks with actions; an intervention at `before_finish` sends the loop round again,
  which is how Reflection reviews an answer (the accepted one is `reflection_approved.answer`).

More in [docs/kernel.md](../docs/kernel.md): the state machine, steering, abort, approvals, retries and
fallback models, compaction.

## Exercises

**1. An unknown tool.** Models sometimes call a tool that does not exist. In `toy_loop`,
`by_name[c.name]` then raises `KeyError` and the loop dies; the kernel instead answers the call with an
error result (`unknown tool 'multiply'; available tools: add`) and lets the model go on. Change
`my_loop` below (a copy of `toy_loop`) to do the same, run it, then run the check under it (its code is
folded: click the `…` to see it).""",
    r"""async def my_loop(model, question, tools, max_turns=5):
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools]
    messages = [{"role": "user", "content": question}]
    sent = []
    for _ in range(max_turns):
        sent.append(list(messages))
        reply = await stream_completion(ProviderRequest(model, messages, tools=schemas), on_part=lambda part: None)
        messages.append(reply.message())
        if not reply.tool_calls:
            return reply.text, sent
        for c in reply.tool_calls:
            result = by_name[c.name].fn(**c.arguments)  # your change: what if c.name is not in by_name?
            messages.append({"role": "tool", "tool_call_id": c.id, "content": str(result)})
    raise RuntimeError(f"no answer after {max_turns} requests")
"""
    + CHECK,
    r"""hidden:# The check of exercise 1: a scripted model calls `multiply`, which does not exist.
check = Script([Turn(tool_calls=[call("multiply", a=6, b=7)]), "I can only add."], name="exercise-1")
try:
    _, check_sent = await my_loop(check.model, "What is 6 × 7?", [add])
except Exception as exc:
    print(f"Not yet: my_loop raised {type(exc).__name__}: {exc}. Append a tool message saying the tool is unknown instead.")
else:
    told = [m["content"] for m in check_sent[-1] if m["role"] == "tool"]
    if told and "multiply" in told[0]:
        print("✓ The model was told:", told[0])
    else:
        print("Not yet: the tool message should name the unknown tool, so the model knows what went wrong.")
"""
    + CHECK,
    """md:**2. A plugin that blocks.** Write `NoNegatives`: at `before_tool`, block `add` when either
number is negative, with a reason the model can read (`BlockTool("…")`). `event.name` is the tool's
name and `event.args` its arguments. Then run the check.""",
    r"""class NoNegatives(Plugin):
    def on_before_tool(self, event, ctx):
        return None  # your code: return BlockTool("…") when add gets a negative number
"""
    + CHECK,
    r"""hidden:# The check of exercise 2: a scripted model adds -1 and 2, then adds 1 and 2.
check = Script([Turn(tool_calls=[call("add", a=-1, b=2, id="negative")]),
                Turn(tool_calls=[call("add", a=1, b=2, id="positive")]), "Done."], name="exercise-2")
check_agent = Agent(model=check.model, tools=[add], plugins=[NoNegatives()])
await check_agent.prompt("Add -1 and 2, then 1 and 2")
results = {m["tool_call_id"]: m["content"] for m in check_agent.messages if m["role"] == "tool"}
if not results["negative"].startswith("blocked by NoNegatives"):
    print("Not yet: add(-1, 2) ran and returned", repr(results["negative"]))
elif results["positive"] != "3":
    print("Not yet: add(1, 2) should run, but the model got", repr(results["positive"]))
else:
    print("✓ The model was told:", results["negative"])
"""
    + CHECK,
    """md:Next: [06 — Team mode](06_team_mode.ipynb), where two kernels share one PostgreSQL workspace.""",
]
