"""Per-workspace memory of lookups every agent call makes and that rarely change: a model's price, and
that no budget applies to a user's session. A stored round asked the database both each time (three
price SELECTs that miss for offline models, two budget SELECTs when none is defined).

How an entry stops being used, and how soon a change is seen:
- in this process, at once: the services that change prices and budgets call `invalidate()` before
  their transaction and again after it ends (committed or not), which drops every workspace's entries
  (a change through another Workspace object on the same database counts too);
- from another process, at once when the workspace shares events (PostgreSQL's default: the event
  bridge brings the other process's `model_price_*` / `budget_*` events onto this bus, and
  `watch_events` invalidates on them);
- in any case an entry is used for at most `TTL_S` seconds, so a change the bus does not carry (a
  process on SQLite with events not shared, a row edited by hand in SQL) applies within that time.
  Until then a new hard budget may let through calls it would have refused — the same window a
  concurrent writer already has, as the guard reads before the call, not under a lock.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

__all__ = [
    "MISS",
    "TTL_S",
    "cached",
    "changing",
    "current",
    "invalidate",
    "lookup",
    "remember",
    "watch_events",
]

TTL_S = 2.0
MISS: Any = object()  # `cached` found nothing usable
T = TypeVar("T")

_lock = threading.Lock()
_generation = 0  # bumped by every invalidation, in any workspace of this process
# workspace -> {key: (value, generation, stored at)}; weak, so a closed workspace's entries go with it
_entries: weakref.WeakKeyDictionary[Any, dict[Hashable, tuple[Any, int, float]]] = weakref.WeakKeyDictionary()
_watched: weakref.WeakSet[Any] = weakref.WeakSet()

WATCHED_TYPES = frozenset(
    {"model_price_set", "model_price_deleted", "budget_created", "budget_updated", "budget_deleted"}
)


def invalidate() -> None:
    """Forget every workspace's entries (a price or a budget changed)."""
    global _generation
    with _lock:
        _generation += 1
        for entries in _entries.values():
            entries.clear()


@contextlib.contextmanager
def changing() -> Iterator[None]:
    """Around a change of prices or budgets: entries read before it or during it are dropped."""
    invalidate()
    try:
        yield
    finally:
        invalidate()


def cached(ws: Any, key: Hashable) -> Any:
    """The value remembered for `key` in `ws`, or MISS when there is none still valid."""
    entries = _entries.get(ws)
    hit = entries.get(key) if entries is not None else None
    if hit is None:
        return MISS
    value, generation, at = hit
    if generation != _generation or time.monotonic() - at > TTL_S:
        return MISS
    return value


def remember(ws: Any, key: Hashable, value: T, generation: int) -> T:
    """Remember `value`, read while the generation was `generation` (see `current`): a value read
    before an invalidation that happened meanwhile is not kept."""
    with _lock:
        if generation == _generation:
            _entries.setdefault(ws, {})[key] = (value, generation, time.monotonic())
    watch_events(ws)
    return value


def current() -> int:
    """The generation to pass to `remember` for a value about to be read."""
    return _generation


def lookup(ws: Any, key: Hashable, read: Callable[[], T]) -> T:
    """`cached(ws, key)`, else `read()` remembered."""
    hit = cached(ws, key)
    if hit is not MISS:
        return hit  # type: ignore[no-any-return]
    generation = current()
    return remember(ws, key, read(), generation)


def watch_events(ws: Any) -> None:
    """Invalidate on other processes' price and budget changes that reach `ws`'s bus (once per ws)."""
    if not getattr(ws, "shares_events", False) or ws in _watched:
        return
    with _lock:
        if ws in _watched:
            return
        _watched.add(ws)

    def on_event(event: Any) -> None:
        if event.type in WATCHED_TYPES:
            invalidate()

    ws.bus.subscribe("workspace", on_event)  # prices, workspace budgets
    ws.bus.subscribe("user:*:costs", on_event)  # user and session budgets
