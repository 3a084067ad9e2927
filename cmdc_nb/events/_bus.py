"""An in-process publish/subscribe bus with per-topic replay buffers.

Topics are the seed's strings (`session:{id}`, `user:{id}:approvals`, …). A subscription names one topic
or a glob over topics (`session:*`, `*`). Every event gets an `index` that increases across the whole bus,
so a subscriber that remembers the last index it saw can come back with `since=` and replay what it
missed from the buffers (each keeps the newest `buffer_size` events of its topic), then follow live.
`types=` filters the replay only; live events are never filtered, so a narrow replay cannot make a
subscriber miss what happens next.

Publishing is thread-safe. Sync callbacks run in the publisher's thread (an exception in one is logged
and never reaches the publisher or other subscribers); async streams are fed through their own event
loop, so a background thread can publish into a notebook's loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import itertools
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Event", "EventBus", "EventStream", "LazyPayload", "Subscription"]

log = logging.getLogger("cmdc_nb.events")

DEFAULT_BUFFER_SIZE = 500


@dataclass(frozen=True, slots=True)
class Event:
    """One published event. `payload` is read-only and holds plain JSON-able values, never secrets."""

    topic: str
    type: str
    payload: Mapping[str, Any]
    index: int
    ts: dt.datetime
    origin: str | None = None  # None: this workspace; else the process that committed it (team mode)

    def __repr__(self) -> str:
        return f"<Event #{self.index} {self.topic} {self.type}>"


class LazyPayload(Mapping[str, Any]):
    """A payload made when it is first read, then kept: for events that are mostly buffered and seldom
    read. A stored agent mirrors each of its kernel events on the bus (≈9 a round); converting every one
    to plain JSON as it happened cost ≈0.2 ms of a stored round on SQLite, for subscribers that mostly
    skip them (or replay them later). `make` must give the same plain JSON-able mapping whenever it is
    called: it may run on whichever thread reads first, and twice if two read at once."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Mapping[str, Any]]) -> None:
        self._make = make
        self._value: Mapping[str, Any] | None = None

    def _get(self) -> Mapping[str, Any]:
        value = self._value
        if value is None:
            value = self._value = MappingProxyType(dict(self._make()))
        return value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(dict(self._get()))


def _matcher(pattern: str) -> Callable[[str], bool]:
    if any(ch in pattern for ch in "*?["):
        return lambda topic: fnmatch.fnmatchcase(topic, pattern)
    return lambda topic: topic == pattern


@dataclass(eq=False)
class _Subscriber:
    pattern: str
    matches: Callable[[str], bool]
    deliver: Callable[[Event], None]
    active: bool = True


@dataclass(eq=False)
class Subscription:
    """A live sync subscription; `close()` (or leaving a `with` block) stops delivery."""

    _bus: EventBus
    _sub: _Subscriber

    @property
    def active(self) -> bool:
        return self._sub.active

    def close(self) -> None:
        self._bus._remove(self._sub)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class EventStream:
    """An async iterator over a subscription: replay first, then live events, until `close()`."""

    _bus: EventBus
    _queue: asyncio.Queue[Event | None]
    _sub: _Subscriber | None = None
    _closed: bool = field(default=False)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def get(self, timeout: float | None = None) -> Event:
        """The next event, waiting at most `timeout` seconds (TimeoutError after that)."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        if self._sub is not None:
            self._bus._remove(self._sub)
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Topic-based pub/sub with bounded replay. See the module docstring for the semantics."""

    def __init__(self, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        if buffer_size < 0:
            raise ValueError("buffer_size must be >= 0")
        self.buffer_size = buffer_size
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._last_index = 0
        self._buffers: dict[str, deque[Event]] = {}
        self._exact: dict[str, list[_Subscriber]] = {}
        self._patterns: list[_Subscriber] = []

    def __repr__(self) -> str:
        return f"<EventBus topics={len(self._buffers)} last_index={self._last_index}>"

    # -- publishing -------------------------------------------------------------------------------------
    def publish(self, topic: str, type: str, payload: Mapping[str, Any] | None = None) -> Event:
        """Publish one event now. Domain services call this only after their transaction commits."""
        return self.publish_many([(topic, type, {} if payload is None else payload)])[0]

    def publish_many(
        self, items: Iterable[tuple[str, str, Mapping[str, Any]]], *, origin: str | None = None
    ) -> list[Event]:
        """Publish several events in order, as one batch (no other publisher interleaves). `origin`
        marks events another process committed (brought in by the workspace's event bridge)."""
        now = dt.datetime.now(dt.UTC)
        delivered: list[tuple[Event, list[_Subscriber]]] = []
        with self._lock:
            for topic, type_, payload in items:
                frozen = payload if type(payload) is LazyPayload else MappingProxyType(dict(payload))
                event = Event(topic, type_, frozen, next(self._counter), now, origin)
                self._last_index = event.index
                if self.buffer_size:
                    buf = self._buffers.get(topic)
                    if buf is None:
                        buf = self._buffers[topic] = deque(maxlen=self.buffer_size)
                    buf.append(event)
                subs = [*self._exact.get(topic, ()), *(s for s in self._patterns if s.matches(topic))]
                delivered.append((event, subs))
            # Deliver under the lock so that every subscriber sees events in index order, and a
            # subscribe() racing with us gets each event exactly once (replay or live, never both).
            for event, subs in delivered:
                for sub in subs:
                    if sub.active:
                        self._safe_deliver(sub, event)
        return [e for e, _ in delivered]

    @staticmethod
    def _safe_deliver(sub: _Subscriber, event: Event) -> None:
        try:
            sub.deliver(event)
        except Exception:
            log.exception("event subscriber for %r failed on %r", sub.pattern, event)

    # -- reading ----------------------------------------------------------------------------------------
    def last_index(self, topic: str | None = None) -> int | None:
        """The index of the newest event (on `topic`, or on any topic), or None if there is none."""
        with self._lock:
            if topic is None:
                return self._last_index or None
            buf = self._buffers.get(topic)
            return buf[-1].index if buf else None

    def replay(
        self, pattern: str, *, since: int | None = None, types: Iterable[str] | None = None
    ) -> list[Event]:
        """Buffered events on topics matching `pattern` with index > `since`, oldest first."""
        with self._lock:
            return self._replay_locked(_matcher(pattern), since, types)

    def _replay_locked(
        self, matches: Callable[[str], bool], since: int | None, types: Iterable[str] | None
    ) -> list[Event]:
        wanted = set(types) if types is not None else None
        floor = since if since is not None else 0
        events = [
            e
            for topic, buf in self._buffers.items()
            if matches(topic)
            for e in buf
            if e.index > floor and (wanted is None or e.type in wanted)
        ]
        events.sort(key=lambda e: e.index)
        return events

    # -- subscribing ------------------------------------------------------------------------------------
    def subscribe(
        self,
        pattern: str,
        callback: Callable[[Event], None],
        *,
        since: int | None = None,
        types: Iterable[str] | None = None,
    ) -> Subscription:
        """Call `callback(event)` for each event on matching topics.

        With `since=`, buffered events after that index are replayed first (filtered by `types=`).
        """
        sub = _Subscriber(pattern, _matcher(pattern), callback)
        with self._lock:
            if since is not None:
                for event in self._replay_locked(sub.matches, since, types):
                    self._safe_deliver(sub, event)
            self._add(sub)
        return Subscription(self, sub)

    def stream(
        self, pattern: str, *, since: int | None = None, types: Iterable[str] | None = None
    ) -> EventStream:
        """An async iterator of events on matching topics; call it from inside a running event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        stream = EventStream(self, queue)

        def deliver(event: Event) -> None:
            if _running_loop() is loop:
                queue.put_nowait(event)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, event)

        sub = _Subscriber(pattern, _matcher(pattern), deliver)
        with self._lock:
            if since is not None:
                for event in self._replay_locked(sub.matches, since, types):
                    queue.put_nowait(event)
            self._add(sub)
        stream._sub = sub
        return stream

    def _add(self, sub: _Subscriber) -> None:
        if any(ch in sub.pattern for ch in "*?["):
            self._patterns.append(sub)
        else:
            self._exact.setdefault(sub.pattern, []).append(sub)

    def _remove(self, sub: _Subscriber) -> None:
        with self._lock:
            if not sub.active:
                return
            sub.active = False
            if sub in self._patterns:
                self._patterns.remove(sub)
            else:
                subs = self._exact.get(sub.pattern, [])
                if sub in subs:
                    subs.remove(sub)
                if not subs:
                    self._exact.pop(sub.pattern, None)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._patterns) + sum(len(v) for v in self._exact.values())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
