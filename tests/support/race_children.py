"""The racing side of `tests/test_tool_safety_races.py`, in its own process (no GIL between it and the
tools it races)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def swap_forever(root: str, outside: str, stop: Any, swaps: Any) -> None:
    """Swap `root/d` and `root/f.txt` for symlinks to their twins in `outside` and back until `stop` is
    set, counting each completed swap in `swaps`."""
    r, o = Path(root), Path(outside)
    pairs = ((r / "d", r / "d.real", o), (r / "f.txt", r / "f.real", o / "f.txt"))
    while not stop.is_set():
        for name, real, target in pairs:
            try:
                os.rename(name, real)
                os.symlink(target, name)
                os.unlink(name)
                os.rename(real, name)
            except OSError:
                continue  # a tool's temporary file or a write got in the way: swap on
            with swaps.get_lock():
                swaps.value += 1
