"""Opening workspaces: defaults, environment, errors, and the light top-level import."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb.errors import AccessDeniedError, ConfigurationError, ConflictError, MigrationError, StorageError
from cmdc_nb.workspace import Workspace, get_workspace


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, json, cmdc_nb; "
        "print(json.dumps(sorted(m for m in ('litellm','pandas','plotly','ipywidgets','sqlalchemy','alembic') "
        "if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_connect_with_no_url_uses_sqlite_in_the_data_directory(home_dir: Path) -> None:
    ws = cmdc_nb.connect()
    assert ws.backend == "sqlite"
    assert (home_dir / "cmdc_nb.db").exists()
    assert (home_dir / "vault.key").exists()
    assert get_workspace() is ws
    ws.close()


def test_module_api_connects_the_default_workspace_on_first_use(home_dir: Path) -> None:
    user = cmdc_nb.accounts.create_user("lazy@example.com")
    assert cmdc_nb.accounts.get_user(user.id).email == "lazy@example.com"
    assert (home_dir / "cmdc_nb.db").exists()


def test_database_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere" / "team.db"
    monkeypatch.setenv("CMDC_NB_DATABASE_URL", f"sqlite:///{target}")
    ws = cmdc_nb.connect()
    assert target.exists()
    ws.close()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url at all", "oracle://x"])
def test_unsupported_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        cmdc_nb.connect(url)


def test_passwords_never_appear_in_the_workspace_repr(ws: Workspace) -> None:
    assert "hunter2" not in repr(ws)
    with pytest.raises(StorageError) as info:
        cmdc_nb.connect("postgresql+psycopg://u:hunter2@127.0.0.1:1/nothing")
    assert "hunter2" not in str(info.value)


def test_a_closed_workspace_refuses_work(ws: Workspace) -> None:
    ws.close()
    with pytest.raises(ConfigurationError, match="closed"), ws.transaction():
        pass


def test_nested_transactions_join_the_outer_one(ws: Workspace) -> None:
    with ws.transaction() as outer, ws.transaction() as inner:
        assert inner is outer


def test_a_database_that_is_not_sqlite_is_a_typed_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not a database" * 100)
    with pytest.raises((MigrationError, StorageError)):
        cmdc_nb.connect(f"sqlite:///{bogus}")


def test_a_light_transaction_commits_its_core_rows_and_its_orm_rows_together(ws: Workspace) -> None:
    from cmdc_nb import accounts, sessions
    from cmdc_nb.store.models import User

    seen: list[str] = []
    ws.bus.subscribe("test.light", lambda e: seen.append(e.type))
    with ws.transaction(light=True) as tx:
        assert tx._db is None  # no ORM session until something asks for one
        tx.connection().execute(
            sa.insert(User), {"id": uuid.uuid4(), "email": "core@example.com", "name": "core"}
        )
        user = accounts.create_user("orm@example.com", ws=ws)  # a service: joins, through tx.db
        tx.publish("test.light", "done")
        assert seen == []  # not before the commit
    assert seen == ["done"]
    assert {u.email for u in accounts.list_users(limit=100, ws=ws).entries} >= {
        "core@example.com",
        "orm@example.com",
    }
    assert sessions.create_session(user, name="after", ws=ws).user_id == user.id


def test_a_light_transaction_that_fails_keeps_none_of_its_rows_nor_events(ws: Workspace) -> None:
    from cmdc_nb import accounts
    from cmdc_nb.store.models import User

    seen: list[str] = []
    ws.bus.subscribe("test.light", lambda e: seen.append(e.type))
    with pytest.raises(RuntimeError), ws.transaction(light=True) as tx:
        tx.connection().execute(
            sa.insert(User), {"id": uuid.uuid4(), "email": "gone1@example.com", "name": "x"}
        )
        accounts.create_user("gone2@example.com", ws=ws)
        tx.publish("test.light", "never")
        raise RuntimeError("the work failed")
    assert seen == []
    assert not {u.email for u in accounts.list_users(limit=100, ws=ws).entries} & {
        "gone1@example.com",
        "gone2@example.com",
    }
    with pytest.raises(ConflictError), ws.transaction(light=True) as tx:  # and errors come out typed
        accounts.create_user("twice@example.com", ws=ws)
        accounts.create_user("twice@example.com", ws=ws)


def test_a_light_transaction_acts_for_the_workspaces_user(ws: Workspace) -> None:
    from cmdc_nb import accounts, sessions

    owner = accounts.create_user("owner@example.com", ws=ws)
    other = accounts.create_user("other@example.com", ws=ws)
    mine = sessions.create_session(owner, name="mine", ws=ws)
    ws.act_as(other)
    try:
        with pytest.raises(AccessDeniedError), ws.transaction(light=True):
            sessions.archive_session(mine, ws=ws)
    finally:
        ws.act_as(None)
    assert sessions.get_session(mine, ws=ws).status.value != "archived"
