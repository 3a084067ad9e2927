"""Many processes writing into the same sessions at once: nothing lost, no sequence duplicated or skipped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from itertools import pairwise
from pathlib import Path

from cmdc_nb import sessions
from cmdc_nb.store.models import User
from cmdc_nb.workspace import Workspace

PROCESSES = 8
MESSAGES_EACH = 200
SESSIONS = 4

WORKER = textwrap.dedent(
    """
    import sys
    import cmdc_nb
    from cmdc_nb import sessions

    url, home, worker, each, *session_ids = sys.argv[1:]
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    print("ready", flush=True)
    sys.stdin.readline()  # wait until every process is connected, then all start together
    for i in range(int(each)):
        sid = session_ids[i % len(session_ids)]
        sessions.create_message(sid, role="user", content=f"w{worker}-m{i}", ws=ws)
    ws.close()
    """
)


def test_eight_processes_two_hundred_messages_each(
    ws: Workspace, user: User, db_url: str, home_dir: Path
) -> None:
    shared = [sessions.create_session(user, name=f"shared {i}", ws=ws) for i in range(SESSIONS)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                db_url,
                str(home_dir),
                str(w),
                str(MESSAGES_EACH),
                *(str(s.id) for s in shared),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]

    contents: Counter[str] = Counter()
    for s in shared:
        rows = sessions.get_conversation_history(s, limit=None, roles=None, ws=ws)
        expected = PROCESSES * MESSAGES_EACH // SESSIONS
        assert [m.sequence for m in rows] == list(range(1, expected + 1))  # no gaps, no duplicates
        assert sessions.get_session(s, ws=ws).message_count == expected  # the counter saw every one
        contents.update(m.content for m in rows)
        writers = [m.content.split("-")[0] for m in rows]
        switches = sum(a != b for a, b in pairwise(writers))
        assert switches >= PROCESSES  # the writers really did interleave
    wanted = {f"w{w}-m{i}" for w in range(PROCESSES) for i in range(MESSAGES_EACH)}
    assert set(contents) == wanted and set(contents.values()) == {1}  # none lost, none doubled
