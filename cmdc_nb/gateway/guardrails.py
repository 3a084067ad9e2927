"""Guardrails at the gateway's edge: denied keywords, denied patterns and a maximum length.

Empty by default (nothing is refused); configured per gateway. A refusal is a `GuardrailError` naming
the rule, never echoing the text — the HTTP layer turns it into a 422 with that rule's name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cmdc_nb.errors import GuardrailError, InvalidInputError

__all__ = ["Guardrails"]


@dataclass(frozen=True)
class Guardrails:
    """`deny_keywords` match case-insensitively as whole words; `deny_patterns` are regular
    expressions searched anywhere; `max_prompt_length` counts characters."""

    deny_keywords: tuple[str, ...] = ()
    deny_patterns: tuple[str, ...] = ()
    max_prompt_length: int | None = None
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        deny_keywords: Iterable[str] = (),
        deny_patterns: Iterable[str] = (),
        max_prompt_length: int | None = None,
    ) -> None:
        keywords = tuple(str(k) for k in deny_keywords)
        patterns = tuple(str(p) for p in deny_patterns)
        if any(not k.strip() for k in keywords):
            raise InvalidInputError("a denied keyword cannot be blank", field="deny_keywords")
        if max_prompt_length is not None and (
            isinstance(max_prompt_length, bool)
            or not isinstance(max_prompt_length, int)
            or max_prompt_length < 1
        ):
            raise InvalidInputError("must be a positive whole number", field="max_prompt_length")
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for k in keywords:
            compiled.append((f"keyword {k!r}", re.compile(rf"(?<!\w){re.escape(k)}(?!\w)", re.IGNORECASE)))
        for p in patterns:
            try:
                compiled.append((f"pattern {p!r}", re.compile(p)))
            except re.error as exc:
                raise InvalidInputError(
                    f"{p!r} is not a regular expression: {exc}", field="deny_patterns"
                ) from None
        object.__setattr__(self, "deny_keywords", keywords)
        object.__setattr__(self, "deny_patterns", patterns)
        object.__setattr__(self, "max_prompt_length", max_prompt_length)
        object.__setattr__(self, "_compiled", tuple(compiled))

    def check(self, text: str, *, field: str = "text") -> None:
        """Refuse `text` with a `GuardrailError`, or return."""
        if self.max_prompt_length is not None and len(text) > self.max_prompt_length:
            raise GuardrailError(
                f"longer than the {self.max_prompt_length} characters allowed",
                rule="max_prompt_length",
                field=field,
            )
        for name, rx in self._compiled:
            if rx.search(text):
                raise GuardrailError(f"refused by the gateway's {name}", rule=name, field=field)
