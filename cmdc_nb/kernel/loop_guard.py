"""Runaway tool loops: the same call again and again, a repeating pattern of calls, or turn after turn
whose tool calls all fail. `observe` (per call) and `batch` (per turn) return what they saw, (kind,
detail), the first time a limit is crossed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoopGuard"]


@dataclass
class LoopGuard:
    max_identical: int = 3
    max_failures: int = 5
    pattern_repeats: int = 3
    _hashes: list[str] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)
    _failures: int = 0

    def reset(self) -> None:
        self._hashes.clear()
        self._counts.clear()
        self._failures = 0

    def observe(self, name: str, args: Mapping[str, Any]) -> tuple[str, str] | None:
        """One tool call: the same call again and again, or a repeating pattern of calls."""
        digest = hashlib.sha256(json.dumps([name, args], sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]
        self._hashes.append(digest)
        self._counts[digest] = self._counts.get(digest, 0) + 1
        if self._counts[digest] >= self.max_identical:
            return "repeated_call", f"{name} was called {self._counts[digest]} times with the same arguments"
        for period in (2, 3):
            span = period * self.pattern_repeats
            tail = self._hashes[-span:]
            if (
                len(tail) == span
                and len(set(tail[:period])) == period
                and all(tail[i] == tail[i % period] for i in range(span))
            ):
                return "repeating_pattern", f"the same {period} calls repeated {self.pattern_repeats} times"
        return None

    def batch(self, failed: bool, last: str) -> tuple[str, str] | None:
        """One turn's tool calls done: a turn whose calls all failed extends the failure streak."""
        self._failures = self._failures + 1 if failed else 0
        if self._failures >= self.max_failures:
            return (
                "consecutive_failures",
                f"the tool calls of {self._failures} turns in a row failed (last: {last})",
            )
        return None
