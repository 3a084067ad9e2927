"""Which process this is, and is the process that holds a claim still there? Shared by the scheduler
and the workflow engine, which both hand back work whose owner died on this host without waiting for its
lease to lapse, and by the agent kernel, which records where each model call was made."""

from __future__ import annotations

import os
import socket

__all__ = ["HOST", "pid_alive", "process_origin"]

HOST = socket.gethostname()


def process_origin() -> dict[str, str | int]:
    """This process: its host and pid and, in a Jupyter kernel, the notebook it was started for (the
    path from the server's root, which Jupyter Server hands its kernels as JPY_SESSION_NAME).

    >>> sorted(process_origin()) in (["host", "pid"], ["host", "notebook", "pid"])
    True
    """
    origin: dict[str, str | int] = {"host": HOST, "pid": os.getpid()}
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook:
        origin["notebook"] = notebook
    return origin


def pid_alive(pid: int) -> bool:
    """True unless no process `pid` exists on this host (another user's process counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
