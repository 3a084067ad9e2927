"""The cells of 08_serve_and_share: an agent built in a cell, served through the gateway, called over HTTP
and A2A, its approval decided in the chat widget while the HTTP client waits, a webhook received, and a
clean shutdown — offline, on loopback.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# Serve and share: your notebook's agent over HTTP, A2A and webhooks

An agent you built in a notebook usually lives and dies in that notebook. cmdc_nb's **gateway** puts it
on the network without moving it: the agent keeps running in your kernel, with its tools, plugins and
conversation, and other programs — a script, a CI job, another agent speaking A2A, a teammate's app —
reach it over HTTP. Their requests and your chat widget work on the *same* agent: here a program asks
for a deploy over HTTP, the deploy waits for a person, and you approve it from the chat in this notebook
while the program's request waits for the answer. A webhook tells a third program what happened.

```mermaid
sequenceDiagram
    participant C as HTTP client (section 4)
    participant G as gateway (this kernel)
    participant A as agent + chat widget (this kernel)
    participant W as webhook receiver (section 2)
    C->>G: POST /v1/sessions/{id}/prompt "deploy to staging"
    G->>A: agent.prompt(...)
    A-->>G: approval_required (deploy)
    G-->>C: SSE: approval_required
    G->>W: POST approval.required (signed)
    Note over A: you press Approve in the chat
    A-->>G: tool_execution_end, agent_end
    G-->>C: SSE: ... agent_end
    G->>W: POST approval.approved (signed)
```

**You will learn**

1. how to serve an agent you built with `Gateway.expose`, on the notebook's own event loop — the cell
   returns at once and the notebook stays usable;
2. the REST calls a program makes: prompt, follow the events (server-sent events), read the reply;
3. how an approval is decided in the chat widget while a remote caller waits;
4. the A2A side: the agent card, and a message sent as another agent would;
5. how to receive the gateway's webhooks and check their signature;
6. how to shut everything down so no port and no background task is left.

**Prerequisites**: [01 — Chat and approvals](01_chat_and_approvals.ipynb) (an agent, a tool that waits
for a person, the chat widget) and Python's `async` / `await`. Everything here is offline and on
loopback (`127.0.0.1`): the model is *scripted*, no API key is used and nothing is reachable from
another machine.

**Time to run**: about 15 seconds.

Reference: [docs/gateway.md](../docs/gateway.md) (every route, keys, rate limits, guardrails, A2A,
webhooks) · Previous: [06 — Team mode](06_team_mode.ipynb), where a teammate's kernel decides an
approval; here another *program* asks, and you decide.""",
    SETUP,
    """md:## 1. An agent, built in a cell

A release helper with one tool, `deploy`, that must wait for a person (the `HumanApproval` plugin). Its
model is scripted: asked to deploy, it calls `deploy` with the target named in the request; given the
tool's result, it reports it; asked anything else, it summarises the release. The agent stores its
turns in a session — the gateway serves only such agents, because the session says who may reach it
(its owner, and the people it is shared with).""",
    r'''from cmdc_nb import sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.plugins import HumanApproval
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ChatWidget

deployed = []  # what the tool really did


@tool
def deploy(target: str) -> str:
    """Deploy release 2.4 to a target environment (staging or prod)."""
    deployed.append(target)
    return f"release 2.4 is live on {target}"


def release_helper(messages):
    """The scripted model: what it answers depends only on the conversation, never on timing."""
    last = messages[-1]
    if last["role"] == "tool":  # the tool's result, or why it did not run (a person said no)
        done = last["content"].startswith("release 2.4 is live")
        return f"Done: {last['content']}." if done else f"Not deployed: {last['content']}"
    text = last["content"].lower()
    if "deploy" in text:
        target = "prod" if "prod" in text else "staging"
        return Turn(f"Deploying to {target}; this needs a person's approval.", tool_calls=[call("deploy", target=target)])
    return "Release 2.4 has three changes: faster search, a fixed export button and a new Danish translation."


model = Script(release_helper, name="release-helper").model
room = sessions.create_session(me, name="release room")
agent = Agent(model=model, tools=[deploy], plugins=[HumanApproval(require_approval_for=["deploy"])],
              session=room, name="Release helper")
chat = ChatWidget(agent, height="300px")
print(agent.model, "·", list(agent.tools), "· session", repr(room.name))
'''
    + CHECK,
    """md:It is an ordinary agent: ask it something here first. (The first call also loads the model
library, litellm, which takes a few seconds once per kernel.)""",
    r"""print(await agent.prompt("What is in release 2.4?"))
"""
    + CHECK,
    """md:The chat is the agent's, as in notebook 01: it shows that question and answer, and will show
the conversation the HTTP client starts in section 4. The output follows the agent: live, you see
each step (and the **Approve** button, in section 5); saved with the notebook, it shows the last picture.""",
    "chat",
    """md:## 2. A webhook receiver

The gateway can tell other programs about approvals and A2A tasks by POSTing **webhooks**: a JSON body
with headers saying the event, a delivery id (the same on every retry, to de-duplicate) and a signature
— `sha256=` HMAC-SHA256 of `"<timestamp>.<body>"` with a secret only you and the gateway know.
`cmdc_nb.gateway.verify` is the receiver's check: the signature matches and the timestamp is recent.

A receiver is any HTTP server. This one is Python's own `http.server`, on a free loopback port, in a
thread; it keeps what it received and answers 204 (received) or 401 (a bad signature). Anything else —
an error, a timeout, no answer — makes the gateway retry with backoff.""",
    r"""import json, secrets, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from cmdc_nb.gateway import verify

SECRET = secrets.token_hex(16)  # shared by the gateway (which signs) and the receiver (which checks)
received = []  # one dict per delivery


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        stamp, signature = self.headers["X-Cmdc-Timestamp"], self.headers["X-Cmdc-Signature"]
        ok = verify(SECRET, stamp, body, signature)
        received.append({"event": self.headers["X-Cmdc-Event"], "verified": ok, "body": body,
                         "timestamp": stamp, "signature": signature})
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args):  # keep the notebook quiet: no access log lines in the output
        pass


receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)  # port 0: the system picks a free one
receiver_thread = threading.Thread(target=receiver.serve_forever, name="webhook-receiver", daemon=True)
receiver_thread.start()
hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/cmdc"
print("receiving webhooks at", hook_url)
"""
    + CHECK,
    """md:## 3. Serve the agent

`Gateway(...)` takes what remote callers may use: the models, tools and plugins of sessions *they*
create (A2A uses these, section 6), the webhooks, rate limits and guardrails. `await gw.start()`
listens on this kernel's event loop, in the background, and returns once the port is bound; the
agent, the chat widget and the gateway then share one loop, so nothing here needs a thread or a lock.
`gw.expose(agent)` serves the agent you built at `/v1/sessions/<its session id>`.

A caller needs a **gateway key**. `create_gateway_key` shows it once (only its SHA-256 is stored); the
key acts as its user — Ada here — and sees her sessions and those shared with her.""",
    r"""import asyncio
from cmdc_nb.gateway import Gateway, Webhook, create_gateway_key

tasks_before = asyncio.all_tasks()  # to check at the end that the gateway left none behind
key = create_gateway_key(me, name="notebook 08")  # key.key is the secret: give it to the other program
gw = Gateway(
    port=0,  # a free port; a fixed one (8765 by default) is easier to hand to others
    models=[model],
    webhooks=[Webhook(hook_url, SECRET, events=("task.*", "approval.*"))],
    agent_name="Release helper",
    agent_description="Answers questions about release 2.4 and deploys it, with a person's approval.",
)
url = await gw.start()  # returns at once: the gateway serves in the background of this kernel
sid = gw.expose(agent)
print(gw)
print("the agent is served at", f"{url}/v1/sessions/{sid}")
print("its session is the room's:", sid == str(room.id))
"""
    + CHECK,
    """md:Any HTTP client can now call it. This notebook plays the client with `httpx` (an `AsyncClient`,
so its requests run on the same loop the gateway serves from — a blocking client here would wait for
a server that cannot answer until the cell ends). `/healthz` needs no key; everything else does.""",
    r"""import httpx

http = httpx.AsyncClient(base_url=url, headers={"X-API-Key": key.key}, timeout=30)
print((await http.get("/healthz")).json()["status"], "·",
      (await httpx.AsyncClient(base_url=url).get(f"/v1/sessions/{sid}")).status_code, "without a key ·",
      (await http.get(f"/v1/sessions/{sid}")).status_code, "with it")
"""
    + CHECK,
    """md:## 4. A program asks for a deploy, and waits

A program prompts the agent with `POST /v1/sessions/{id}/prompt` (answered at once, `202 Accepted`),
then follows the agent's events on `GET /v1/sessions/{id}/events`, a stream of server-sent events, until
`agent_end`. Each event has an index: passing the last one it saw as `since` gets exactly the events
after it, so a client that reconnects loses and repeats nothing.

`ask` is such a client. It is started as a *task*: it runs in the background, on this loop, while the
next cells go on.""",
    r'''async def ask(text, since):
    """Prompt the served agent over HTTP and follow its events until the run ends."""
    r = await http.post(f"/v1/sessions/{sid}/prompt", json={"text": text})
    r.raise_for_status()
    seen, event = [], {}
    async with http.stream("GET", f"/v1/sessions/{sid}/events", params={"since": since}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith(":"):  # a comment: the gateway's heartbeat on an idle stream
                continue
            if line:  # "id: 7", "event: agent_end", "data: {...}"; a blank line ends an event
                name, _, value = line.partition(": ")
                event[name] = json.loads(value) if name == "data" else value
                continue
            if "event" in event:
                seen.append(event)
                if event["event"] == "agent_end":
                    return seen
            event = {}


# The agent's events so far are section 1's question: a program that had followed them would pass the
# index of the last one it saw; this one starts after them.
request = asyncio.create_task(ask("Please deploy release 2.4 to staging", since=agent.events.last_index))
print(request.done())
'''
    + CHECK,
    """md:The agent asks for `deploy`, and the plugin holds the call until a person decides. The program is
still waiting (its task is not done) and nothing has been deployed. The chat above shows the call with
**Approve / Deny / Edit**; the gateway's `/status` shows the same pending approval to any caller with
a key.""",
    r"""while not agent.status()["pending_approvals"]:  # the HTTP round trips take a moment
    await asyncio.sleep(0.02)
pending = (await http.get(f"/v1/sessions/{sid}/status")).json()["pending_approvals"]
print([(p["tool"], p["args"]) for p in pending])
print("the HTTP client is waiting:", not request.done(), "· deployed so far:", deployed)
"""
    + CHECK,
    """md:## 5. Approve it in the chat

Clicking **Approve** on the card calls the widget's `approve(ref)`; here the cell calls it, as the
click would. The tool runs, the model reports, and the program's request — waiting all this time —
gets its `agent_end`.""",
    r"""chat.approve(pending[0]["ref"])  # what the Approve button does
events = await request
print("deployed:", deployed)
print("reply:", agent.messages[-1]["content"])
"""
    + CHECK,
    """md:What the program saw, in order — the events it streamed, with runs of the same type folded
(`message_delta` is one piece of streamed text):""",
    r"""import itertools
import pandas as pd

steps = pd.DataFrame(
    [{"event": kind, "times": len(list(group))} for kind, group in itertools.groupby(e["event"] for e in events)]
)
last_seen = int(events[-1]["id"])  # where a next stream would start (`since`)
steps
"""
    + CHECK,
    """md:The chat widget shows the same run: the request, the card (approved), the reply. The HTTP client
reads the stored conversation too:""",
    r"""messages = (await http.get(f"/v1/sessions/{sid}/messages")).json()["messages"]
pd.DataFrame([{"role": m["role"], "content": m["content"]} for m in messages])
"""
    + CHECK,
    """md:## 6. Another agent calls over A2A

[A2A](https://a2a-protocol.org) is how agents call agents: an **agent card** at a well-known URL
says who the agent is and where to send messages, then JSON-RPC methods send them (`SendMessage`,
`SendStreamingMessage`, `GetTask`, …) as *tasks*. The card needs no key; the calls do.""",
    r"""card = (await http.get("/.well-known/agent-card.json")).json()
print(card["name"], "—", card["description"])
print("send messages to", card["supportedInterfaces"][0]["url"], "with", sorted(card["securitySchemes"]))
"""
    + CHECK,
    """md:One thing to know: an A2A *context* is its own conversation. The gateway opens a session for it
with the gateway's own settings (`models`, `tools`, `plugins` given to `Gateway`) — here the same
scripted model, with no tools — rather than talking to the agent exposed above; that agent is reached
on its REST routes.

A message, as another agent's code would send it with the official `a2a-sdk` (any A2A client, in any
language, sends the same JSON-RPC over HTTP):""",
    r"""from a2a.client import ClientConfig, create_client
from a2a.helpers import get_artifact_text, new_text_message
from a2a.types import a2a_pb2 as pb

peer = await create_client(url, client_config=ClientConfig(streaming=False, httpx_client=http))
question = new_text_message("What is in release 2.4?", role=pb.Role.ROLE_USER)
async for response in peer.send_message(pb.SendMessageRequest(message=question)):
    task = response.task
print(pb.TaskState.Name(task.status.state))
print(get_artifact_text(task.artifacts[-1]))
"""
    + CHECK,
    """md:## 7. The webhooks that arrived

Each approval event of the served agent, and each state of the A2A task, became a signed POST to the
receiver of section 2. Deliveries run in the background, so the cell waits for the ones it expects.
The gateway also keeps every delivery in the workspace (`list_webhook_deliveries`), with its status
and the number of attempts — that is where a failed one is found and replayed
(`await gw.webhooks.replay()`).""",
    r"""from cmdc_nb.gateway import list_webhook_deliveries

# in the order they happened (deliveries run concurrently, so they may arrive in another order)
ORDER = ["approval.required", "approval.approved", "task.submitted", "task.working", "task.completed"]


def settled():
    rows = list_webhook_deliveries()
    return {"approval.approved", "task.completed"} <= {d.event_type for d in rows} and all(
        d.status.value != "pending" for d in rows)


while not settled():
    await asyncio.sleep(0.02)
bodies = sorted((json.loads(r["body"]) for r in received), key=lambda b: ORDER.index(b["type"]))
stored = {str(d.id): d for d in list_webhook_deliveries()}
hooks = pd.DataFrame([
    {"event": b["type"], "verified": next(r["verified"] for r in received if json.loads(r["body"])["id"] == b["id"]),
     "tool / state": b["data"].get("tool") or b["data"].get("state", ""),
     "stored as": stored[b["id"]].status.value, "attempts": stored[b["id"]].attempts}
    for b in bodies
])
hooks
"""
    + CHECK,
    """md:The body of one, as the receiver got it (ids and times vary from run to run):""",
    r"""print(json.dumps(bodies[0], indent=2))
"""
    + CHECK,
    """md:## 8. The deploy request, on one time axis

Every event carries its time (`ts`), and every webhook delivery when it was queued and delivered. Drawn
on one axis, section 4's request spans the whole run, the wait for a person included; the tool starts
only after the decision; each webhook goes out while the agent carries on. Run headless, as when this
notebook was built, the "person" is the next cell and decides within milliseconds; run it yourself and
the orange bar lasts as long as you take to click **Approve**.""",
    r"""from cmdc_nb.widgets.report import timeline_chart


def at(kind, nth=0):  # when the `nth` event of this type happened (its `ts`), as the program saw it
    return pd.Timestamp([e["data"]["ts"] for e in events if e["event"] == kind][nth])


def utc(t):
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t  # SQLite gives times back without their zone


story = pd.DataFrame(
    [
        {"what": "HTTP client: prompt … agent_end", "who": "program", "start": at("prompt_received"), "end": at("agent_end")},
        {"what": "model: asks to deploy", "who": "agent", "start": at("request_start"), "end": at("response_complete")},
        {"what": "waiting for a person", "who": "person", "start": at("approval_required"), "end": at("agent_resumed")},
        {"what": "deploy (the tool)", "who": "agent", "start": at("tool_execution_start"), "end": at("tool_execution_end")},
        {"what": "model: reports", "who": "agent", "start": at("request_start", 1), "end": at("response_complete", 1)},
    ]
    + [
        {"what": f"webhook {d.event_type}", "who": "webhook", "start": utc(d.inserted_at), "end": utc(d.delivered_at)}
        for d in sorted(list_webhook_deliveries(), key=lambda d: ORDER.index(d.event_type))
        if d.event_type.startswith("approval.")
    ]
)
COLOURS = {"program": "#4e79a7", "agent": "#59a14f", "person": "#f28e2b", "webhook": "#b07aa1"}
timeline = timeline_chart(story, start="start", end="end", label="what", color="who", colors=COLOURS,
                          title="One HTTP request, one approval, and their webhooks")
timeline
""",
    """md:The times change from run to run; what the picture shows does not:""",
    r"""span = story.set_index("what")
request, wait, tool = span.loc["HTTP client: prompt … agent_end"], span.loc["waiting for a person"], span.loc["deploy (the tool)"]
print("the HTTP request spans the wait for a person:", request.start <= wait.start and wait.end <= request.end)
print("the tool ran only after the decision:", tool.start >= wait.end)
deliveries = list_webhook_deliveries()
print("webhooks delivered:", sum(d.status.value == "delivered" for d in deliveries), "of", len(deliveries))
"""
    + CHECK,
    """md:## 9. Shut everything down

The gateway stops listening and finishes its webhook deliveries; the exposed agent is withdrawn from it
but stays yours (`agent.alive`) until you stop it. Then the HTTP client, the chat and the receiver.
Afterwards nothing listens on either port, and the loop's tasks are checked against those that ran
before the gateway started (the kernel's own are left out).""",
    r"""import socket

def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0

ports = {"gateway": gw.port, "receiver": receiver.server_address[1]}
await gw.stop()
print("gateway running:", gw.running, "· agent still yours:", agent.alive)
await http.aclose()
await agent.stop()
chat.close()
receiver.shutdown()  # serve_forever returns; the thread ends
receiver.server_close()
receiver_thread.join()
print({name: listening(port) for name, port in ports.items()})
print("receiver thread alive:", receiver_thread.is_alive())


def where(task):  # module.function of the coroutine a task runs
    coro = task.get_coro()
    return f"{coro.cr_frame.f_globals['__name__']}.{coro.__qualname__}"


new = [where(t) for t in asyncio.all_tasks() - tasks_before if t is not asyncio.current_task()]
print("tasks left behind:", sorted(n for n in new if not n.startswith(("ipykernel.", "IPython."))))
"""
    + CHECK,
    """md:Both ports are closed and every task cmdc_nb started — the server, the webhook deliveries, the
agent's run — has ended. The one task left is not cmdc_nb's: sse-starlette, the library behind the event
streams, starts a shutdown watcher on an event loop with its first stream and keeps it for as long as
the loop runs. It sleeps, waking twice a second; a gateway started again on this loop reuses it rather
than adding another.""",
    """md:## Recap

- `Gateway(...)` + `await gw.start()` serves HTTP from the notebook's own event loop; the cell returns
  at once and the agent, the widgets and the gateway share that loop.
- `gw.expose(agent)` serves an agent you built — its tools, plugins and conversation — at
  `/v1/sessions/<session id>`; the session decides who may reach it (its owner, and whom it is shared with).
- A program prompts with `POST …/prompt` (202) and follows `GET …/events` (SSE, resumable with `since` /
  `Last-Event-ID`) until `agent_end`; it reads `…/status` and `…/messages`.
- An approval waits for whoever decides first: the chat's **Approve** (`chat.approve(ref)`), the
  `…/approve` route with a key, or a teammate's kernel (notebook 06). The caller just keeps waiting.
- A2A: the agent card at `/.well-known/agent-card.json`, messages through `/v1/a2a`; each A2A context
  is a conversation of its own, with the gateway's models, tools and plugins.
- Webhooks are signed (`verify(secret, timestamp, body, signature)`), retried with backoff, and kept in
  the workspace (`list_webhook_deliveries`, `gw.webhooks.replay()`).
- `await gw.stop()` closes the port and ends the gateway's tasks; the exposed agent stays yours to stop.

To serve from a shell instead, `cmdc-nb serve --port 8765 --config my.module:GATEWAY` and
`cmdc-nb key create --user ada@example.com`; with a real model, replace the scripted one
(`models=["openai/gpt-4.1-mini"]`, and `Agent(model=...)`).

## Exercises

**1. A forged webhook.** Anyone who knows the receiver's URL can POST to it; the signature is what
tells the gateway's deliveries apart. Take the `approval.required` delivery (`first`, below): its `body`
(bytes), `timestamp` and `signature`. Make `forged`, the same body with `"approval.required"` changed
to `"approval.approved"`, and `recomputed`, the signature of the *original* body computed yourself with
`hmac` and `hashlib` (HMAC-SHA256 of `timestamp + "." + body` with `SECRET`, hex, prefixed `sha256=`).
The hidden cell checks that `verify` refuses the forgery and that your signature is the gateway's.""",
    r"""import hashlib, hmac

first = next(r for r in received if r["event"] == "approval.required")
forged = None  # your answer: bytes
recomputed = None  # your answer: "sha256=…"
"""
    + CHECK,
    r"""hidden:if forged is None or recomputed is None:
    print("Set forged and recomputed above, then run this cell.")
else:
    assert forged != first["body"], "forged is the original body: change the event's type in it"
    assert not verify(SECRET, first["timestamp"], forged, first["signature"]), "verify should refuse the forgery"
    assert recomputed == first["signature"], "not the gateway's signature: HMAC-SHA256 of timestamp.body, hex"
    print("Right: the forgery is refused, and your signature is the gateway's.")
"""
    + CHECK,
    """md:**2. Deny it, from the other side.** Section 8 stopped everything: run sections 1 to 3 again (a new
agent, receiver and gateway), start `ask("Please deploy release 2.4 to prod", since=agent.events.last_index)` as a task, and
this time decide from the HTTP client: `POST /v1/sessions/{sid}/reject` with
`{"ref": …, "note": "not on a Friday"}`. The chat shows the decision made elsewhere. Which webhook
arrives? What does `deployed` hold, and what did the model answer? (Stop everything again afterwards,
as in section 8.)

**3. A guardrail at the edge.** Add `guardrails=Guardrails(deny_keywords=["prod"])` to the gateway
(`from cmdc_nb.gateway import Guardrails`) and prompt *"deploy to prod"* over HTTP: what status and
body come back, and did the agent see the text?""",
]
