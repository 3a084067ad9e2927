"""The cells of 06_team_mode: the same workspace on PostgreSQL, shared by a team.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

CELLS = [
    """md:# Team mode: two kernels on one PostgreSQL workspace

Several people (or kernels, or workers) share one workspace when it lives in PostgreSQL. Here two
workspaces stand in for two kernels, each acting for its user: Ada shares a session with Grace, runs a
workflow in it that waits at an approval gate, Grace's kernel hears of it and approves, and Ada's goes
on. `cmdc-nb db start` runs a local PostgreSQL to try this on one machine (see `docs/team.md`).

This notebook needs a PostgreSQL URL (with the pgvector, citext, pg_trgm and btree_gin extensions
available): set `CMDC_NB_TEAM_URL` (the test suite's `CMDC_TEST_PG_URL` also works). Without one, every
cell says so and does nothing.""",
    """import os, tempfile, uuid
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp(prefix="cmdc-nb-")
import sqlalchemy as sa
import cmdc_nb

admin_url = os.environ.get("CMDC_NB_TEAM_URL") or os.environ.get("CMDC_TEST_PG_URL")
if not admin_url:
    print("No PostgreSQL URL (CMDC_NB_TEAM_URL): skipping team mode. Everything else runs on SQLite.")
    url = None
else:
    # a fresh database for this demo, so it never touches your data
    name = f"cmdc_team_demo_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    print("team workspace: a new database on", sa.make_url(url).host)""",
    """if url:
    kernel_a = cmdc_nb.connect(url, make_default=False)   # Ada's notebook
    kernel_b = cmdc_nb.connect(url, make_default=False)   # Grace's notebook
    from cmdc_nb import accounts
    ada = accounts.create_user("ada@example.com", name="Ada", ws=kernel_a)
    grace = accounts.create_user("grace@example.com", name="Grace", ws=kernel_b)
    kernel_a.act_as(ada); kernel_b.act_as(grace)        # or: cmdc_nb.connect(url, as_user="ada@example.com")
    print([u.name for u in accounts.list_users(ws=kernel_b).entries])""",
    """md:## Who sees what

Each kernel acts for its user: Ada's sessions are hers until she shares them. Grace cannot read Ada's
private notes; she can work in the release room Ada shares with her.""",
    """if url:
    from cmdc_nb import sessions
    from cmdc_nb.errors import AccessDeniedError
    notes = sessions.create_session(ada, name="Ada's private notes", ws=kernel_a)
    room = sessions.create_session(ada, name="Release room", ws=kernel_a)
    sessions.share_session(room, with_users=[grace], ws=kernel_a)
    try:
        sessions.list_messages(notes, ws=kernel_b)
    except AccessDeniedError as exc:
        print("Grace, on Ada's notes:", exc)
    print("shared with Grace:", [s.name for s in sessions.list_sessions(grace, shared=True, ws=kernel_b).entries])""",
    """md:## Events cross kernels

Committed changes reach every kernel on the workspace through the database (LISTEN/NOTIFY): Grace's
kernel hears what happens in Ada's, in order and once, with the writer named in `event.origin`.""",
    """if url:
    heard = []
    kernel_b.bus.subscribe("workflow_run:*", lambda e: heard.append(e))
    from cmdc_nb import workflows as wf
    deploy = wf.create_workflow(ada, {"name": "Deploy", "steps": [
        wf.step("build", "transform", value="built"),
        wf.step("sign_off", "approval", depends_on="build", title="Deploy to production?"),
        wf.step("deploy", "transform", depends_on="sign_off", value="deployed by {{ steps.sign_off.output.note }}"),
    ]}, ws=kernel_a)
    handle = wf.run_workflow(deploy, session=room, ws=kernel_a)   # in the background of Ada's kernel
    import asyncio
    while not any(e.type == "workflow_step_waiting_approval" for e in heard):
        await asyncio.sleep(0.05)
    print("Grace's kernel heard:", [e.type for e in heard if e.origin])""",
    """if url:
    # Grace approves the gate in her own kernel: the run's session is shared with her
    run_seen_by_grace = wf.get_workflow_run(handle.run_id, ws=kernel_b)
    wf.approve_workflow_step(run_seen_by_grace, "sign_off", grace, note="Grace", ws=kernel_b)
    done = await handle                                  # Ada's driver hears the decision as an event
    print(done.status.value, "->", done.output)""",
    """if url:
    kernel_a.close(); kernel_b.close()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    print("demo database dropped")""",
]
