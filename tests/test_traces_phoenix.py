"""The traces in a real tracing backend: Arize Phoenix, installed from PyPI into a venv of its own (its
dependencies are not the package's), served on loopback, sent the spans over OTLP/HTTP by the standard
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variable, and read back through its REST API. What Phoenix stored
must be what the database holds: the GenAI attributes, agent → chat → tool parent links, the tokens and
the exact cost of every call — for an agent's session and for an eval run (a workflow of cases)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import eval_children as kids  # tests/support
import pytest
from browser import free_port
from test_traces import _run  # the three-turn run with a tool, a failure and an approval
from waiting import CEILING_S

from cmdc_nb import agents, evals, traces
from cmdc_nb.store.models import Session, User
from cmdc_nb.workspace import Workspace

pytestmark = pytest.mark.xdist_group("phoenix")  # keep its tests together where xdist can

ROOT = Path(__file__).resolve().parents[1]
PHOENIX = "arize-phoenix==20.26.1"
VENV = ROOT / ".venv-phoenix"  # made once, reused (git ignores .venv-*)


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".venv-tools" / "bin" / "uv")
    assert Path(found).exists(), "uv is installed by scripts/bootstrap.sh"
    return found


def _install() -> None:
    """Phoenix in `.venv-phoenix`, made once under a file lock (two test processes may ask at once, and a
    venv left half made by an interrupted run is made again)."""
    import fcntl

    python = VENV / "bin" / "python"
    with (ROOT / ".venv-phoenix.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (VENV / "bin" / "phoenix").exists():
            return
        subprocess.run(
            [_uv(), "venv", "-q", "--clear", "--python", sys.executable, str(VENV)], check=True, timeout=300
        )
        subprocess.run(
            [_uv(), "pip", "install", "-q", "--python", str(python), PHOENIX], check=True, timeout=900
        )


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _install()
    port, grpc = free_port(), free_port()
    work = tmp_path_factory.mktemp("phoenix")
    # Its own environment: the suite's sentinel provider keys (see conftest) have no business there.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(work),
        "TMPDIR": str(work),
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_WORKING_DIR": str(work),
    }
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(VENV / "bin" / "phoenix"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + CEILING_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, (work / "serve.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "Phoenix did not start"
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=60)
    log.close()


def _spans_of(url: str, trace_id: int, n: int) -> list[dict[str, Any]]:
    """The spans Phoenix holds for `trace_id`, once all `n` arrived."""
    want = format(trace_id, "032x")
    deadline = time.monotonic() + CEILING_S
    while True:
        with urllib.request.urlopen(f"{url}/v1/projects/default/spans?limit=1000", timeout=10) as r:
            data = json.load(r)["data"]
        got = [s for s in data if s["context"]["trace_id"] == want]
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_a_session_in_phoenix_has_the_databases_calls_tools_and_costs(
    phoenix: str, ws: Workspace, user: User, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    asyncio.run(_run(ws, user, session))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{phoenix}/v1/traces")
    sent = traces.export_trace(session, ws=ws)  # no exporter: OTLP, from the standard variable
    stored = _spans_of(phoenix, session.id.int, len(sent))
    assert len(stored) == len(sent) == 7  # the agent, three calls, three tools
    by_id = {s["context"]["span_id"]: s for s in stored}
    calls = {str(c.id): c for c in agents.list_agent_calls(session, ws=ws).entries}
    ops = []
    for span in stored:
        a = span["attributes"]
        op = a["gen_ai.operation.name"]
        ops.append(op)
        parent = by_id.get(span["parent_id"] or "")
        if op == "chat":
            call = calls[a["cmdc_nb.agent_call.id"]]
            assert a["gen_ai.request.model"] == call.model and a["gen_ai.provider.name"] == call.provider
            assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
                call.tokens_in,
                call.tokens_out,
            )
            assert Decimal(a["cmdc_nb.cost_usd"]) == call.cost_usd
            assert parent is not None and parent["attributes"]["gen_ai.operation.name"] == "invoke_agent"
        elif op == "execute_tool":
            assert a["gen_ai.tool.name"] in {"add", "explode", "publish"} and a["gen_ai.tool.call.id"]
            assert parent is not None and parent["attributes"]["gen_ai.operation.name"] == "chat"
        else:
            assert op == "invoke_agent" and parent is None and a["gen_ai.conversation.id"] == str(session.id)
    assert sorted(ops) == ["chat"] * 3 + ["execute_tool"] * 3 + ["invoke_agent"]
    failed = [s for s in stored if s["attributes"].get("gen_ai.tool.name") == "explode"]
    assert failed[0]["attributes"]["error.type"]
    (published,) = [s for s in stored if s["attributes"].get("gen_ai.tool.name") == "publish"]
    assert [e["name"] for e in published["events"]] == ["approval"]


def test_an_eval_in_phoenix_adds_up_to_the_evals_cost(
    phoenix: str, ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    kids.price_models(ws)
    scorers = [evals.numeric(), evals.judge("scripted/evq-judge", rubric="The sum is right.")]
    run = evals.run_eval(
        kids.CASES[:4], kids.TASK, models=kids.MODELS[:2], scorers=scorers, user=user, name="phx", ws=ws
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{phoenix}/v1/traces")
    sent = traces.export_workflow_trace(run, ws=ws)
    stored = _spans_of(phoenix, run.id.int, len(sent))
    assert len(stored) == len(sent) == 1 + 8 + 16  # the run, a step per case and model, task and judge calls
    chats = [s for s in stored if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert sum(Decimal(s["attributes"]["cmdc_nb.cost_usd"]) for s in chats) == run.cost_usd()
    by_id = {s["context"]["span_id"]: s for s in stored}
    assert all(by_id[s["parent_id"]]["name"].startswith("step c0000") for s in chats)
