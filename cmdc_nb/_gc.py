"""Long-lived objects kept out of the cyclic garbage collector's full collections.

A full collection (generation 2) walks every object the collector tracks. After `connect()` a kernel
holds ≈190,000 of them that live as long as the process — SQLAlchemy's mapped schema and compiled
statements, the migrations it ran — and litellm adds hundreds of thousands more once loaded. A full
collection comes every few hundred agent rounds, as the conversation's objects grow, and walked all
of them: 60 ms in the middle of a 100-round run (0.6 ms a round), longer with litellm loaded.
`gc.freeze()` moves every object alive now to a permanent generation the collector never walks; they
are still freed by reference counting, and only cyclic garbage alive at that moment (≈40 objects
after `connect()`) is never collected.

This happens once per process after the first `connect()`, once the ORM is first used (the mapped
schema loaded with it) and once litellm is loaded: never again after that, or each new workspace would freeze the cyclic garbage of the ones closed before it (a test
suite connects thousands of times). The first freeze also holds that workspace's engine and pool, so
closing that workspace thaws everything (`thaw`): its ≈16 MB can then be collected, and the process
goes on with Python's default collections. `$CMDC_NB_GC_FREEZE` false turns it off.
"""

from __future__ import annotations

import gc
import os
import threading

__all__ = ["ENV", "freeze_long_lived", "thaw"]

ENV = "CMDC_NB_GC_FREEZE"
_FALSE = {"0", "false", "no", "off"}
_done: set[str] = set()
_lock = threading.Lock()


def freeze_long_lived(after: str) -> bool:
    """Move every object alive now out of the full collections' walk, the first time this process
    gets here `after` something (`"connect"`, `"orm"`, `"litellm"`), unless `$CMDC_NB_GC_FREEZE` is false.
    Returns whether it froze."""
    if os.environ.get(ENV, "").strip().lower() in _FALSE:
        return False
    with _lock:
        if after in _done:
            return False
        _done.add(after)
    gc.freeze()
    return True


def thaw() -> None:
    """Give every frozen object back to the collector (the workspace the freeze was taken for closed)."""
    gc.unfreeze()
