"""Is the process that holds a claim still there? Shared by the scheduler and the workflow engine,
which both hand back work whose owner died on this host without waiting for its lease to lapse."""

from __future__ import annotations

import os
import socket

__all__ = ["HOST", "pid_alive"]

HOST = socket.gethostname()


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
