"""cProfile across threads, for the bench's profile scripts (the database work runs in worker threads)."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import threading
from typing import Any


class ThreadProfiles:
    """cProfile in the main thread and in every thread started while enabled, merged into one
    `pstats.Stats`."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _start(self, *_args: Any) -> None:
        sys.setprofile(None)
        p = cProfile.Profile()
        self.profiles.append(p)
        p.enable()

    def enable(self) -> None:
        threading.setprofile(self._start)
        self._start()

    def disable(self) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]
        self.profiles[0].disable()

    def stats(self, out: io.StringIO) -> pstats.Stats:
        stats = pstats.Stats(self.profiles[0], stream=out)
        for p in self.profiles[1:]:
            stats.add(p)
        return stats
