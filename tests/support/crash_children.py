"""The child of the crash-and-resume test: one process doing four things at once on a shared database —
an agent turn with side-effecting tool calls (one needs approval, which nobody gives here), a durable
workflow run, a RAG ingestion and a scheduled job — until the parent SIGKILLs it.

`python tests/support/crash_children.py <db-url> <home> <session-id> <run-id> <index-id> <effects-log>`
Each side effect appends a line to the effects log, so the parent can count executions."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rag_children  # noqa: F401  (registers the slow embedder)
import workflow_children  # noqa: F401  (registers crash.effect)

import cmdc_nb
from cmdc_nb import rag, scheduling
from cmdc_nb import workflows as wf
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.providers._litellm import alitellm

EFFECTS = os.devnull  # set by the parent test, or from argv in the child
TOOL_CALLS = 4


def effect(line: str) -> None:
    with open(EFFECTS, "a", encoding="utf-8") as f:
        f.write(line + "\n")


@tool(side_effects=("network",))
def stamp(n: int) -> str:
    """Stamp a document (a side effect that must not happen twice)."""
    effect(f"tool stamp {n}")
    time.sleep(0.15)
    return f"stamped {n}"


@tool(requires_approval=True, side_effects=("network",))
def deploy(target: str) -> str:
    """Deploy (needs approval)."""
    effect(f"tool deploy {target}")
    return f"deployed to {target}"


@scheduling.register_job_handler("crash.job")
def crash_job(ctx: scheduling.JobContext) -> str:
    effect(f"job {ctx.job_id} {ctx.scheduled_for.isoformat()}")
    time.sleep(0.3)
    return "ok"


def agent_script() -> Script:
    calls = [call("stamp", n=i, id=f"stamp{i}") for i in range(TOOL_CALLS)]
    return Script(
        [
            Turn(
                "Stamping, then deploying.", tool_calls=[*calls, call("deploy", target="prod", id="deploy")]
            ),
            "Done.",
        ],
        name="crash-agent",
    )


async def main(url: str, home: str, session_id: str, run_id: str, index_id: str) -> None:
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    # litellm imported and warmed before READY: the kill window then covers the agent's tool calls and
    # its wait for approval, not seconds of importing (which left no pending approval to keep).
    await alitellm()
    script = agent_script()
    agent = Agent(model=script.model, tools=[stamp, deploy], session=session_id, ws=ws)
    agent.prompt("stamp the documents, then deploy")
    print("READY", flush=True)
    await asyncio.gather(
        wf.execute_workflow_run(run_id, max_concurrency=3, ws=ws),
        asyncio.to_thread(rag.ingest, index_id, progress=False, ws=ws),
        asyncio.to_thread(scheduling.run_due_jobs, ws=ws),
    )
    print("IDLE", flush=True)  # the agent waits for an approval nobody here gives
    await asyncio.sleep(3600)


if __name__ == "__main__":
    EFFECTS = sys.argv[6]
    asyncio.run(main(*sys.argv[1:6]))
