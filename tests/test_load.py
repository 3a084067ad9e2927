"""Load: many agents in one kernel's event loop, and a long stream into the chat
widget. The kernel must stay responsive and no event may be dropped.

Responsiveness is measured, not asserted: a heartbeat task asks to wake every 10 ms and records how
late it woke; the worst lateness is written to `ci-artifacts/reliability/load.json` (and printed). What
the tests assert is what could fail without any clock: every agent finished with the right reply, every
agent's event log is gap-free from 1, every streamed delta arrived, the widget holds the whole text.
`CMDC_RELIABILITY_FULL=1` runs the full sizes (50 agents × 20 rounds, 10,000 tokens)."""

from __future__ import annotations

import asyncio
import time

import pytest
from reliability import FULL
from reliability import record as record_figures

from cmdc_nb import accounts, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.workspace import Workspace


def record(name: str, figures: dict[str, object]) -> None:
    record_figures("load", name, figures)
    print(name, figures)


class Heartbeat:
    """Wakes every `period` seconds on the loop and keeps the worst lateness: the longest stall."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.worst = 0.0
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, time.perf_counter() - t - self.period)
            self.beats += 1

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@tool
def lookup(key: int) -> str:
    """Look a key up."""
    return f"value-{key}"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_many_agents_in_one_kernel_all_finish_and_drop_no_event(ws: Workspace) -> None:
    n_agents, rounds = (50, 20) if FULL else (20, 5)
    user = accounts.create_user("load@example.com", ws=ws)
    agents = []
    for i in range(n_agents):
        script = Script(
            [
                *(
                    Turn(f"step {k} ", tool_calls=[call("lookup", key=k)], chunk_delay=0.001)
                    for k in range(rounds)
                ),
                Turn(f"agent {i} done", chunk_delay=0.001),
            ],
            name=f"load-{i}",
        )
        # half of them store everything (calls, tool uses, messages, costs) in the shared workspace
        session = sessions.create_session(user, name=f"load {i}", ws=ws) if i % 2 == 0 else None
        agents.append(
            Agent(model=script.model, tools=[lookup], session=session, ws=ws, max_turns=rounds + 2,
                  max_identical_tool_calls=rounds + 2, event_buffer_size=0)
        )  # fmt: skip
    # First use imports what the first stored turn needs (the services, SQLAlchemy's compiled
    # statements); a notebook pays that once. The figure is of a warm kernel.
    warm = Script([Turn(tool_calls=[call("lookup", key=0)]), "warm"], name="load-warm")
    await Agent(
        model=warm.model, tools=[lookup], session=sessions.create_session(user, name="warm", ws=ws), ws=ws
    ).prompt("go")
    seen: list[list[int]] = [[] for _ in agents]
    for a, log in zip(agents, seen, strict=True):
        a.events.subscribe(lambda env, log=log: log.append(env.index))
    started = time.perf_counter()
    with Heartbeat() as beat:
        replies = await asyncio.gather(*(a.prompt("go") for a in agents))
    elapsed = time.perf_counter() - started
    # the reply is the run's text: every round's words, then the last turn's
    steps = "".join(f"step {k} \n\n" for k in range(rounds))
    assert replies == [f"{steps}agent {i} done" for i in range(n_agents)]
    for a, log in zip(agents, seen, strict=True):
        assert log == list(range(1, a.events.last_index + 1))  # gap-free, in order, once each
        assert a.turns == rounds + 1
    for i, a in enumerate(agents):
        if i % 2 == 0:  # stored: every round's messages are there (user, rounds × (assistant, tool), reply)
            assert sessions.count_messages(a.recorder.session_id, ws=ws) == 1 + 2 * rounds + 1
    assert beat.beats > 0
    record(
        "agents",
        {"agents": n_agents, "rounds": rounds, "seconds": round(elapsed, 2),
         "worst_loop_stall_ms": round(beat.worst * 1000, 1)},
    )  # fmt: skip


async def test_a_long_stream_reaches_the_chat_widget_whole() -> None:
    from cmdc_nb.widgets import ChatWidget

    tokens = 10_000 if FULL else 1_500
    words = [f"w{i}" for i in range(tokens)]
    script = Script([Turn(" ".join(words), chunk_delay=0.0001)], name="long-stream")  # a chunk per word
    agent = Agent(model=script.model)
    deltas: list[str] = []
    agent.events.subscribe(
        lambda env: deltas.append(env.event.delta) if env.type == "message_delta" else None
    )
    chat = ChatWidget(agent)
    with Heartbeat() as beat:
        reply = await chat.send("talk")
    await asyncio.sleep(0.3)  # the widget's last coalesced update
    assert reply == " ".join(words)
    assert "".join(deltas) == reply  # every delta arrived, in order
    transcript = chat.export_markdown()
    assert reply in transcript  # the widget holds the whole text
    assert chat.updates_sent < len(deltas)  # coalesced, not one update per delta
    record(
        "chat_stream",
        {"tokens": tokens, "deltas": len(deltas), "widget_updates": chat.updates_sent,
         "worst_loop_stall_ms": round(beat.worst * 1000, 1)},
    )  # fmt: skip
