"""The long-lived objects of a kernel are moved out of the cyclic collector's full walks once per
process (`cmdc_nb._gc`): after the first `connect()`, once the ORM is first used and once litellm is
loaded; never at a later connect, and not at all with `$CMDC_NB_GC_FREEZE` false. Each case runs in a fresh interpreter: the
freeze is the process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import gc, json, sys, tempfile, weakref
import cmdc_nb

class Node:
    pass

def cycle():
    n = Node(); n.me = n
    return n, weakref.ref(n)

home = tempfile.mkdtemp()
alive_at_first, ref_first = cycle()  # alive when the first connect freezes
ws = cmdc_nb.connect(f"sqlite:///{home}/a.db", home=home)
first = gc.get_freeze_count()
del alive_at_first
gc.collect()
kept_while_open = ref_first() is not None
engine = weakref.ref(ws.engine)
ws.close()
del ws
gc.collect()
freed_after_close = ref_first() is None and engine() is None
alive_at_second, ref_second = cycle()  # alive at the second connect: not frozen then
ws2 = cmdc_nb.connect(f"sqlite:///{home}/b.db", home=home, make_default=False)
del alive_at_second
gc.collect()
print(json.dumps({"first": first, "kept_while_open": kept_while_open, "freed_after_close": freed_after_close,
                  "second_frozen": gc.get_freeze_count(), "second_collected": ref_second() is None}))
"""


def probe(tmp_path: Path, code: str = PROBE, **env: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; its last line of output is a JSON object."""
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "CMDC_NB_HOME": str(tmp_path), **env},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def test_the_first_connect_freezes_what_is_alive_until_its_workspace_closes(tmp_path: Path) -> None:
    got = probe(tmp_path, CMDC_NB_GC_FREEZE="")
    assert isinstance(got["first"], int) and got["first"] > 50_000  # the schema, mappers, migrations
    assert got["kept_while_open"] is True  # frozen: a full collection no longer walks it
    # closing that workspace gives everything back: its engine and pool can go
    assert got["freed_after_close"] is True
    # and no later connect freezes again: it would freeze the garbage of the workspaces closed before
    assert got["second_frozen"] == 0 and got["second_collected"] is True


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_it_can_be_turned_off(tmp_path: Path, value: str) -> None:
    got = probe(tmp_path, CMDC_NB_GC_FREEZE=value)
    assert got["first"] == 0 and got["kept_while_open"] is False
    assert got["freed_after_close"] is True and got["second_collected"] is True


def test_loading_litellm_freezes_its_modules_once(tmp_path: Path) -> None:
    code = (
        "import gc, json\n"
        "from cmdc_nb.providers import _litellm\n"
        "before = gc.get_freeze_count()\n"
        "_litellm.warm()\n"
        "after = gc.get_freeze_count()\n"
        "_litellm.warm()\n"
        "print(json.dumps({'before': before, 'after': after, 'again': gc.get_freeze_count()}))\n"
    )
    got = probe(tmp_path, code, CMDC_NB_GC_FREEZE="")
    assert got["before"] == 0
    assert isinstance(got["after"], int) and got["after"] > 100_000  # litellm's hundreds of modules
    assert isinstance(got["again"], int) and got["again"] <= got["after"]  # loaded once, frozen once


def test_the_orm_and_the_mapped_schema_are_frozen_once_when_first_used(tmp_path: Path) -> None:
    # `connect()` to a database that needs no migration loads SQLAlchemy's Core only; the ORM and the
    # models come with the first ORM transaction, which moves them out of the full walks too.
    made = probe(tmp_path, "import cmdc_nb; cmdc_nb.connect('sqlite:///first.db').close(); print('{}')")
    assert made == {}
    code = (
        "import gc, json, sys, cmdc_nb\n"
        "ws = cmdc_nb.connect('sqlite:///first.db')\n"
        "at_connect = gc.get_freeze_count()\n"
        "orm_then = 'sqlalchemy.orm' in sys.modules\n"
        "cmdc_nb.accounts.create_user('a@example.com', ws=ws)\n"
        "at_orm = gc.get_freeze_count()\n"
        "cmdc_nb.accounts.create_user('b@example.com', ws=ws)\n"
        "print(json.dumps({'orm_then': orm_then, 'at_connect': at_connect, 'at_orm': at_orm,"
        " 'again': gc.get_freeze_count()}))\n"
    )
    got = probe(tmp_path, code, CMDC_NB_GC_FREEZE="")
    assert got["orm_then"] is False
    assert isinstance(got["at_connect"], int) and isinstance(got["at_orm"], int)
    assert got["at_orm"] > got["at_connect"] + 20_000  # the ORM's modules and the mapped schema
    assert got["again"] == got["at_orm"]  # once


def test_a_first_orm_use_after_the_freezing_workspace_closed_freezes_nothing(tmp_path: Path) -> None:
    # The first freeze's workspace closed (everything thawed): a later first ORM use, in another
    # workspace, must not freeze what the notebook holds then, with nothing left to thaw it.
    code = (
        "import gc, json, weakref, cmdc_nb, sqlalchemy as sa\n"
        "cmdc_nb.connect('sqlite:///one.db').close()\n"
        "ws = cmdc_nb.connect('sqlite:///two.db')\n"
        "class Node: pass\n"
        "n = Node(); n.me = n; ref = weakref.ref(n)\n"
        "with ws.read() as db:\n"
        "    db.execute(sa.text('select 1'))\n"
        "frozen = gc.get_freeze_count()\n"
        "del n; gc.collect()\n"
        "print(json.dumps({'frozen': frozen, 'collected': ref() is None}))\n"
    )
    got = probe(tmp_path, code, CMDC_NB_GC_FREEZE="")
    assert got == {"frozen": 0, "collected": True}
