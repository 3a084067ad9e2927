"""Fixtures: an isolated data directory per test, and workspaces on both backends.

`backend` parametrises a test over SQLite and PostgreSQL. PostgreSQL needs `CMDC_TEST_PG_URL` (the test
command starts a real server and sets it); without it those tests fail loudly rather than skip, unless
`CMDC_TEST_SKIP_PG=1` says so on purpose. Each test gets a fresh database: SQLite copies a migrated
template file, PostgreSQL clones a migrated template database.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb._plumbing import workspace as workspace_module
from cmdc_nb.store._engine import create_engine
from cmdc_nb.store.migrate import upgrade
from cmdc_nb.workspace import Workspace

# The tests' helpers (child processes, fake servers, the browser driver, the scanner) live in
# tests/support/ and import one another by their plain names, as they do when run as scripts.
sys.path.insert(0, str(Path(__file__).with_name("support")))

# The tests' agents are offline: importing the kernel must not start loading litellm in the background
# in every worker (and every child process, which inherits this). The tests of the preload set it back.
os.environ.setdefault("CMDC_NB_PRELOAD", "0")

PG_URL = os.environ.get("CMDC_TEST_PG_URL")
SKIP_PG = os.environ.get("CMDC_TEST_SKIP_PG") == "1"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
TEMPLATE_DB = f"cmdc_template_{os.getpid()}"
_counter = itertools.count()

# With `CMDC_SECRET_SENTINEL` set (the test command sets a random one), every
# provider-key variable holds a sentinel key for the whole run, the offline models stay in charge, and
# each worker keeps its log records and events in `CMDC_SECRET_SCAN_DIR`; afterwards
# `tests/support/secret_scan.py` searches them, every test's files and each PostgreSQL test database (scanned
# below before it is dropped) for the sentinel.
SENTINEL = os.environ.get("CMDC_SECRET_SENTINEL", "")
SCAN_DIR = Path(os.environ.get("CMDC_SECRET_SCAN_DIR", ".")) if SENTINEL else None
if SENTINEL and SCAN_DIR is not None:
    import secret_scan

    os.environ.update(secret_scan.sentinel_keys(SENTINEL))
    os.environ["CMDC_NB_OFFLINE"] = "1"
    SCAN_DIR.mkdir(parents=True, exist_ok=True)
    _worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    secret_scan.install_log_file(SCAN_DIR / f"log-{_worker}.txt")
    secret_scan.install_event_tap(SCAN_DIR / f"events-{_worker}.txt")


@pytest.fixture(autouse=True)
def home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("CMDC_NB_HOME", str(home))
    monkeypatch.delenv("CMDC_NB_DATABASE_URL", raising=False)
    monkeypatch.delenv("CMDC_NB_VAULT_KEY", raising=False)
    yield home
    if workspace_module._default is not None:
        workspace_module._default.close()


def pg_admin_url() -> str:
    if not PG_URL:
        if SKIP_PG:
            pytest.skip("CMDC_TEST_SKIP_PG=1: PostgreSQL tests skipped on purpose")
        pytest.fail(
            "CMDC_TEST_PG_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL"
        )
    return PG_URL


def pg_url_for(database: str) -> str:
    return sa.make_url(pg_admin_url()).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    assert not path.with_name("template.db-wal").exists()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{TEMPLATE_DB}"')
    engine = create_engine(pg_url_for(TEMPLATE_DB), poolclass=sa.pool.NullPool)
    upgrade(engine)
    engine.dispose()
    yield TEMPLATE_DB
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    admin.dispose()


def fresh_pg_database(template: str | None) -> tuple[str, sa.Engine]:
    """A new, empty (or template-cloned) database; returns its URL and an admin engine to drop it."""
    name = f"cmdc_t_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        suffix = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"{suffix}')
    return pg_url_for(name), admin


def drop_pg_database(url: str, admin: sa.Engine) -> None:
    name = sa.make_url(url).database
    if SENTINEL and SCAN_DIR is not None:
        import secret_scan

        hits = secret_scan.scan_pg_database(url, SENTINEL)
        with (SCAN_DIR / f"pg-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.txt").open("a") as out:
            out.write(f"{name} {hits}\n")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of a fresh, migrated database on `backend`."""
    if backend == "sqlite":
        path = tmp_path / "ws.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url, admin = fresh_pg_database(request.getfixturevalue("pg_template"))
    yield url
    drop_pg_database(url, admin)


@pytest.fixture
def blank_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database (no schema) on `backend`."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    url, admin = fresh_pg_database(None)
    yield url
    drop_pg_database(url, admin)


@pytest.fixture
def ws(db_url: str, home_dir: Path) -> Iterator[Workspace]:
    """An open workspace on a fresh database, made the default for the module-level API."""
    workspace = cmdc_nb.connect(db_url, home=home_dir)
    yield workspace
    workspace.close()


@pytest.fixture
def user(ws: Workspace) -> cmdc_nb.store.models.User:
    return cmdc_nb.accounts.create_user("ada@example.com", name="Ada", ws=ws)


@pytest.fixture
def session(ws: Workspace, user: cmdc_nb.store.models.User) -> cmdc_nb.store.models.Session:
    """A chat session of `user`'s, named "Work"."""
    return cmdc_nb.sessions.create_session(user, name="Work", ws=ws)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One JupyterLab and one headless Chromium for every test that looks at a widget as a user does
    (`tests/support/seeing.py`). Those tests are `xdist_group("browser")`, so with `--dist loadgroup`
    they all run on one worker, in this one session."""
    from seeing import lab as open_lab

    with open_lab(tmp_path_factory.mktemp("lab")) as seen:
        yield seen


@pytest.fixture(scope="session")
def binder_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Binder's environment, built once (`tests/support/binder_env.py`). Its tests are
    `xdist_group("binder")`: with `--dist loadgroup` they run on one worker, in this one session.
    The virtual environment (≈1 GB of packages, built with no key in sight) is removed afterwards; the
    image's HOME stays for the sentinel scan."""
    import binder_env as binder

    env = binder.build(tmp_path_factory.mktemp("binder"))
    yield env
    shutil.rmtree(env.venv, ignore_errors=True)
