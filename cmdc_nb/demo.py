"""The demo behind the README's first command: a workspace, a user, a session with messages and a fork,
an agent call whose tool uses meet an auto-approval rule and a human, and a summary.

It grows as features land (chat, approvals, workflows, RAG, the cost dashboard).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import cmdc_nb
from cmdc_nb.errors import NotFoundError
from cmdc_nb.events import Event
from cmdc_nb.providers._litellm import loaded as model_client_loaded
from cmdc_nb.providers._offline import via_litellm
from cmdc_nb.services import accounts, agents, approvals, sessions
from cmdc_nb.store.models import ActivityLog

__all__ = ["run_demo", "run_tour", "tour_notebook"]


def _agent_demo(user: Any, ws: Any) -> str:
    """A scripted agent (offline) whose tool needs approval, granted by a rule."""
    from cmdc_nb.kernel import Agent, tool
    from cmdc_nb.providers import Script, Turn, call

    @tool(approval_class="low")
    def count_words(text: str) -> int:
        """Count the words in a text."""
        return len(text.split())

    if not any(r.name == "word counts" for r in approvals.list_approval_rules(user, ws=ws)):
        approvals.create_approval_rule(
            user, name="word counts", action="approve", tool_names=["count_words"], ws=ws
        )
    script = Script(
        [
            Turn("Let me count.", tool_calls=[call("count_words", text="the quick brown fox")]),
            Turn("The sentence has 4 words."),
        ],
        name="demo-agent",
    )
    chat = sessions.create_session(user, name="Agent demo", tags=["demo", "agent"], ws=ws)
    agent = Agent(model=script.model, tools=[count_words], session=chat, ws=ws)
    reply = agent.run("How many words are in 'the quick brown fox'?")
    stored = sessions.count_messages(chat, ws=ws)
    n_events = agent.events.last_index or 0
    return (
        f"  agent       {agent.turns} turns, {stored} messages stored, {n_events} kernel events;"
        f" reply {reply.splitlines()[-1]!r}"
    )


def run_demo(home: str | Path | None = None, *, url: str | None = None) -> str:
    """Run the demo and return its summary (also printed by `cmdc-nb demo`)."""
    started = time.perf_counter()
    ws = cmdc_nb.connect(url, home=home)
    seen: list[Event] = []
    ws.bus.subscribe("*", seen.append)
    try:
        user = accounts.get_user_by_email("demo@example.com", ws=ws)
    except NotFoundError:
        user = accounts.create_user("demo@example.com", name="Demo User", ws=ws)
    session = sessions.create_session(
        user, name="Explore cmdc_nb", purpose="A first session", tags=["demo"], ws=ws
    )
    ask = sessions.create_message(session, role="user", content="What changed in the parser?", ws=ws)
    call = agents.create_agent_call(session, model="scripted/demo", ws=ws)
    if not approvals.list_approval_rules(user, ws=ws):
        approvals.create_approval_rule(
            user,
            name="read-only git",
            action="approve",
            tool_names=["shell"],
            conditions={"command_pattern": ["git status", "git diff **", "git log **"]},
            ws=ws,
        )
    shell = {"approval_class": "medium", "side_effects": ["runs_commands"]}
    auto = agents.create_tool_use(
        call, tool_name="shell", input={"command": "git diff src"}, policy=shell, ws=ws
    )
    risky = agents.create_tool_use(
        call, tool_name="shell", input={"command": "git diff src; rm -rf /"}, policy=shell, ws=ws
    )
    agents.deny_tool_use(risky, by=user, reason="not that", ws=ws)
    agents.start_tool_execution(auto, ws=ws)
    agents.complete_tool_use(auto, output="(no changes)", exit_code=0, ws=ws)
    agents.start_streaming(call, ws=ws)
    agents.complete_agent_call(call, response_content="Nothing yet.", tokens_in=12, tokens_out=3, ws=ws)
    sessions.create_message(session, role="assistant", content="Nothing yet.", agent_call=call, ws=ws)
    fork = sessions.fork_session(session, ask, name="Ask differently", ws=ws)
    if not model_client_loaded("scripted/demo-agent"):  # only through litellm (30-80 s when busy)
        _say(MODEL_CLIENT_NOTICE)
    kernel_line = _agent_demo(user, ws)
    with ws.read() as db:
        audit = db.scalar(
            sa.select(sa.func.count()).select_from(ActivityLog).where(ActivityLog.user_id == user.id)
        )
    total = len(sessions.list_sessions(user, limit=1000, ws=ws))
    lines = [
        "cmdc_nb demo",
        f"  workspace   {ws.url_display} ({ws.backend})",
        f"  user        {user.email} ({user.id})",
        f"  session     {session.name!r} slug={session.slug} status={session.status.value}",
        f"  sessions    {total} for this user",
        f"  messages    {sessions.count_messages(session, ws=ws)} (fork {fork.slug!r} kept {fork.message_count})",
        f"  tool uses   {auto.tool_name} {auto.input['command']!r}: {auto.status.value} by rule;"
        f" {risky.input['command']!r}: {agents.get_tool_use(risky, ws=ws).status.value}",
        kernel_line,
        f"  events      {len(seen)} published: "
        + ", ".join(f"{t} ×{n}" if n > 1 else t for t, n in Counter(e.type for e in seen).items()),
        f"  audit log   {audit} entries for this user",
        f"  took        {time.perf_counter() - started:.2f} s",
    ]
    ws.close()
    return "\n".join(lines)


MODEL_CLIENT_NOTICE = "loading the model client (first call only)…"
_TOUR = "00_tour.ipynb"
_CHECKOUT = Path(__file__).resolve().parent.parent / "notebooks" / _TOUR
_PACKAGED = Path(__file__).resolve().parent / "notebooks" / _TOUR  # the wheel's copy (pyproject.toml)


def _say(line: str) -> None:
    """A progress line on stderr: stdout keeps the result, for scripts."""
    print(line, file=sys.stderr, flush=True)


def tour_notebook() -> Path:
    """The tour notebook: a checkout's notebooks/00_tour.ipynb (what its author edits), else the copy
    a pip install carries inside the package."""
    for path in (_CHECKOUT, _PACKAGED):
        if path.is_file():
            return path
    from cmdc_nb.errors import ConfigurationError

    raise ConfigurationError(
        f"the tour notebook is missing: neither {_CHECKOUT} (a clone) nor {_PACKAGED} (the package); "
        "reinstall cmdc-nb"
    )


def _announce(cell: Any, cell_index: int, cells: list[Any], said: set[str]) -> None:
    """Before each code cell: the section it belongs to (once each), and before the first agent the
    model client's one-time load, so the long first wait says what it is."""
    if cell.cell_type != "code":
        return
    for before in reversed(cells[:cell_index]):
        if before.cell_type == "markdown" and before.source.startswith("## "):
            heading = before.source.splitlines()[0].removeprefix("## ").strip()
            if heading not in said:
                said.add(heading)
                _say(f"  {heading}")
            break
    # The tour runs offline (CMDC_NB_OFFLINE=1): its models load no model client unless they go
    # through litellm (CMDC_NB_OFFLINE_VIA_LITELLM), which the notebook's kernel inherits.
    if "Agent(" in cell.source and MODEL_CLIENT_NOTICE not in said and via_litellm():
        said.add(MODEL_CLIENT_NOTICE)
        _say(f"  {MODEL_CLIENT_NOTICE}")


def run_tour(out: str | Path | None = None, *, timeout: float = 600) -> Path:
    """Execute the tour notebook headless (offline: scripted models, the hashing embedder, a throw-away
    SQLite workspace) and write it as HTML, widgets included. Returns the HTML file's path."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbconvert import HTMLExporter
    except ImportError:
        from cmdc_nb.errors import ConfigurationError

        raise ConfigurationError(
            "the tour needs the notebook extra: pip install 'cmdc-nb[notebook]'"
        ) from None
    _say("running the tour notebook (offline, headless)…")
    source = tour_notebook()
    _say(f"the notebook: {source}")
    nb = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
    said: set[str] = set()
    # Run where the notebook lives in a checkout (as JupyterLab would); an installed copy runs in a
    # throw-away folder, so nothing the tour's agents write lands inside site-packages.
    with tempfile.TemporaryDirectory(prefix="cmdc-nb-tour-") as scratch:
        where = source.parent if source == _CHECKOUT else Path(scratch)
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            store_widget_state=True,
            resources={"metadata": {"path": str(where)}},
            on_cell_execute=lambda cell, cell_index: _announce(cell, cell_index, nb.cells, said),
        ).execute(env={**os.environ, "CMDC_NB_OFFLINE": "1"})  # offline as promised, whatever keys are set
    _say("  writing the HTML (widgets included)")
    html, _ = HTMLExporter().from_notebook_node(nb)  # type: ignore[no-untyped-call]
    target = Path(out) if out is not None else Path.cwd() / "cmdc_nb-tour.html"
    target.write_text(html, encoding="utf-8")
    return target.resolve()
