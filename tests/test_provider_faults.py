"""Provider faults: random sequences of rate limits, server errors, timeouts,
unavailability, refusals and streams cut off midway, against a primary model and a fallback, with every
call stored. Whatever the sequence: retries stay within the policy, a fallback is taken only for the
kinds another model might not share, the reply is exactly the text of the one response that succeeded
(nothing of a cut-off stream is left in it), each successful call is booked exactly once (one cost
record, one assistant message), and every failed attempt is on record as failed — nothing left pending.

40 sequences in CI, 400 with `CMDC_RELIABILITY_FULL=1`; the outcome counts go to
`ci-artifacts/reliability/provider_faults.json`."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from reliability import FULL, record

from cmdc_nb import accounts, agents, sessions
from cmdc_nb.errors import ProviderError
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import RetryPolicy, Script, Turn
from cmdc_nb.store.models import AgentCall, CostRecord
from cmdc_nb.workspace import Workspace

RETRYABLE = ("rate_limit", "server_error", "unavailable", "timeout")
FATAL = ("authentication", "bad_request")
POLICY = RetryPolicy(retries=2, backoff_s=0.001, max_backoff_s=0.002, max_retry_after_s=0.002)


def random_turns(rng: random.Random, reply: str) -> list[Turn]:
    turns = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 4])):
        kind = rng.choice(RETRYABLE * 4 + FATAL)
        cut = rng.choice([None, None, 1, 3])  # None: fails before any chunk; else after `cut` chunks
        turns.append(
            Turn("partial words that must not survive " * 2, error=kind, error_after=cut,
                 retry_after=rng.choice([None, 0.001]))
        )  # fmt: skip
    return [*turns, Turn(reply)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_random_fault_sequences_keep_the_books_straight(ws: Workspace) -> None:
    user = accounts.create_user("faults@example.com", ws=ws)
    outcomes = {"primary": 0, "fallback": 0, "failed": 0}
    for seed in range(400 if FULL else 40):
        rng = random.Random(seed)
        primary = Script(random_turns(rng, "from the primary"), name=f"primary-{seed}")
        fallback = Script(random_turns(rng, "from the fallback"), name=f"fallback-{seed}")
        session = sessions.create_session(user, name=f"faults {seed}", ws=ws)
        agent = Agent(
            model=primary.model, fallback_models=[fallback.model], retry=POLICY, session=session, ws=ws
        )
        try:
            reply: str | None = await agent.prompt("hello")
        except ProviderError:
            reply = None

        # bounded: never more attempts than the policy allows, per model
        assert primary.served <= POLICY.retries + 1 and fallback.served <= POLICY.retries + 1, seed
        # the reply is one whole response, nothing of a cut-off stream
        assert reply in ("from the primary", "from the fallback", None), (seed, reply)
        if fallback.served:  # a fallback only after the primary's retryable failures ran out
            assert primary.served >= 1

        with ws.read() as db:
            calls = db.execute(
                sa.select(AgentCall.id, AgentCall.model, AgentCall.status, AgentCall.retry_count).where(
                    AgentCall.session_id == session.id
                )
            ).all()
            costs = db.scalar(
                sa.select(sa.func.count()).select_from(CostRecord).where(CostRecord.session_id == session.id)
            )
        statuses = [c.status.value for c in calls]
        assert set(statuses) <= {"completed", "failed", "timeout"}, (seed, statuses)  # nothing left pending
        completed = [c for c in calls if c.status.value == "completed"]
        assert len(completed) == (1 if reply else 0), (seed, statuses)
        assert costs == len(completed), seed  # each successful call booked exactly once
        # every attempt is on record: a call row per model tried, a retry per attempt after its first
        assert sum(c.retry_count + 1 for c in calls) == primary.served + fallback.served, seed
        messages = sessions.list_messages(session, ws=ws).entries
        assert [m.role.value for m in messages] == (["user", "assistant"] if reply else ["user"]), seed
        if reply:
            assert messages[-1].content == reply
            [ok] = completed
            expected = primary.model if reply == "from the primary" else fallback.model
            assert ok.model == expected
            outcomes["primary" if reply == "from the primary" else "fallback"] += 1
            assert agents.get_agent_call(ok.id, ws=ws).tokens_out > 0
        else:
            outcomes["failed"] += 1
    # the sequences exercised every path
    assert all(outcomes.values()), outcomes
    record("provider_faults", None, {"sequences": sum(outcomes.values()), **outcomes})
