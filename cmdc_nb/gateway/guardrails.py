"""Guardrails at the gateway's edge: denied keywords, denied patterns and a maximum length.

Empty by default (nothing is refused); configured per gateway. A refusal is a `GuardrailError` naming
the rule and the field, never echoing the text — the HTTP layer turns it into a 422 with that rule's name.
The gateway runs every string of a request's body through `Guardrails.check_json`: values at any depth
and the keys of objects, so a session's name, system prompt and user data are checked as a prompt is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import GuardrailError, InvalidInputError
from cmdc_nb.gateway.normalise import fold_lookalikes, join_split_words, normalise, spaced_runs

__all__ = ["Guardrails"]

# The forms a keyword is looked for in, each made from the plain form (`normalise`) of the text and
# of the keyword alike, so that a rule and the text always meet in the same form.
_FORMS: tuple[Callable[[str], str], ...] = (
    lambda plain: plain,
    join_split_words,
    fold_lookalikes,
    lambda plain: fold_lookalikes(join_split_words(plain)),
)
_MAX_FIELD_NAME = 200  # a refusal names the field by its path; keys are the client's, so bounded


@dataclass(frozen=True)
class Guardrails:
    """Refuse text by denied keywords, denied patterns or length.

    - `deny_keywords` match as whole words in the form `cmdc_nb.gateway.normalise` describes: invisible
      characters, combining marks, look-alike letters from other scripts (Unicode's confusables),
      fullwidth and styled letters, case and runs of whitespace make no difference; nor do letters
      split by punctuation (`b.o.m.b`) or spelled apart (`b o m b`), nor digits and symbols standing
      for letters (`b0mb`, `a$$`). A keyword's common English forms count too: `-s`, `-es`, `-'s`,
      `-ed`, `-ing`, `-er`, `-ers` (with a final `e` dropped, a final consonant doubled, a final `y`
      as `-ies`/`-ied`). Words that merely contain a keyword are not refused: `bombastic` for `bomb`,
      `classic` for `ass`. Not caught: a word split by spaces into longer pieces (`bo mb`), reversed
      or encoded text, synonyms, and the other gaps the normalise module lists.
    - `deny_patterns` are regular expressions searched in the text as sent and in its plain form
      (case folded: write such a pattern in lower case, or with `(?i)`).
    - `max_prompt_length` counts the characters of each string as sent.

    >>> Guardrails(deny_keywords=["bomb"]).check("how to build a ｂ.о.𝗆.b", field="text")
    Traceback (most recent call last):
    cmdc_nb.errors.GuardrailError: text: refused by the gateway's keyword 'bomb'
    """

    deny_keywords: tuple[str, ...] = ()
    deny_patterns: tuple[str, ...] = ()
    max_prompt_length: int | None = None
    _searches: tuple[tuple[_Search, ...], ...] = field(init=False, repr=False, compare=False)
    _runs: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _patterns: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    @checked
    def __init__(
        self,
        deny_keywords: Iterable[str] = (),
        deny_patterns: Iterable[str] = (),
        max_prompt_length: int | None = None,
    ) -> None:
        keywords = tuple(str(k) for k in deny_keywords)
        patterns = tuple(str(p) for p in deny_patterns)
        plains = [normalise(k).strip() for k in keywords]
        if any(not p for p in plains):
            raise InvalidInputError("a denied keyword cannot be blank or invisible", field="deny_keywords")
        if max_prompt_length is not None and (
            isinstance(max_prompt_length, bool)
            or not isinstance(max_prompt_length, int)
            or max_prompt_length < 1
        ):
            raise InvalidInputError("must be a positive whole number", field="max_prompt_length")
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for p in patterns:
            try:
                compiled.append((f"pattern {p!r}", re.compile(p)))
            except re.error as exc:
                raise InvalidInputError(
                    f"{p!r} is not a regular expression: {exc}", field="deny_patterns"
                ) from None
        rules = tuple(f"keyword {k!r}" for k in keywords)
        inflected = [_word_forms(p) for p in plains]
        searches = tuple(
            tuple(_Search.of(rule, {make(w) for w in ws}) for rule, ws in zip(rules, inflected, strict=True))
            for make in _FORMS
        )
        # a run of spelled-apart letters has lost its word boundaries: a keyword is looked for inside
        runs = tuple(
            (rule, run) for rule, p in zip(rules, plains, strict=True) if len(run := _compact(p)) >= 3
        )
        object.__setattr__(self, "deny_keywords", keywords)
        object.__setattr__(self, "deny_patterns", patterns)
        object.__setattr__(self, "max_prompt_length", max_prompt_length)
        object.__setattr__(self, "_searches", searches if keywords else ())
        object.__setattr__(self, "_runs", runs)
        object.__setattr__(self, "_patterns", tuple(compiled))

    @property
    def active(self) -> bool:
        """Whether any rule is set (with none, checking is skipped)."""
        return bool(self.deny_keywords or self.deny_patterns or self.max_prompt_length is not None)

    def check(self, text: str, *, field: str = "text") -> None:
        """Refuse `text` with a `GuardrailError` naming the rule and `field`, or return."""
        if self.max_prompt_length is not None and len(text) > self.max_prompt_length:
            raise GuardrailError(
                f"longer than the {self.max_prompt_length} characters allowed",
                rule="max_prompt_length",
                field=field,
            )
        if not (self.deny_keywords or self.deny_patterns):
            return
        rule = self._refusing_rule(text)
        if rule is not None:
            raise GuardrailError(f"refused by the gateway's {rule}", rule=rule, field=field)

    def check_json(self, value: object, *, field: str = "") -> None:
        """`check` every string in a JSON-like `value` — nested objects and arrays, and the keys of
        objects — naming each by its path (`userData.profile[0]`), under `field` when given."""
        if not self.active:
            return
        pending: list[tuple[str, object]] = [(field, value)]
        while pending:
            path, item = pending.pop()
            if isinstance(item, str):
                self.check(item, field=_name(path or "body"))
            elif isinstance(item, Mapping):
                children = []
                for key, child in item.items():
                    self.check(str(key), field=_name(f"{path or 'body'} (a key)"))
                    children.append((f"{path}.{key}" if path else str(key), child))
                pending.extend(reversed(children))  # first field first: refusals name the earliest
            elif isinstance(item, list | tuple):
                pending.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)]))

    def _refusing_rule(self, text: str) -> str | None:
        for rule, rx in self._patterns:
            if rx.search(text):
                return rule
        plain = normalise(text)
        for rule, rx in self._patterns:
            if rx.search(plain):
                return rule
        if not self._searches:
            return None
        for make, searches in zip(_FORMS, self._searches, strict=True):
            form = make(plain)
            for search in searches:
                if search.found_in(form):
                    return search.rule
        runs = spaced_runs(plain)
        for rule, wanted in self._runs:
            if any(wanted in run for run in runs):
                return rule
        return None


@dataclass(frozen=True)
class _Search:
    """One keyword in one form: the text all its word forms begin with, found by `str.find` at the
    speed of C, and the expression that says whether a whole word form stands there. (One expression
    over the whole text would try every word form at every position: seconds for a long prompt.)"""

    rule: str
    start: str
    rx: re.Pattern[str]

    @classmethod
    def of(cls, rule: str, words: set[str]) -> _Search:
        ordered = sorted(words, key=lambda w: (-len(w), w))
        first, last = min(words), max(words)  # what these two share, every word between shares
        shared = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first))
        return cls(rule, first[:shared], re.compile("|".join(_whole(w) for w in ordered)))

    def found_in(self, text: str) -> bool:
        if not self.start:
            return self.rx.search(text) is not None
        at = text.find(self.start)
        while at != -1:
            if self.rx.match(text, at):  # a lookbehind still sees the text before `at`
                return True
            at = text.find(self.start, at + 1)
        return False


def _word_forms(keyword: str) -> set[str]:
    """The keyword and its common English inflections (a keyword ending in a letter only)."""
    forms = {keyword}
    last = keyword[-1]
    if not ("a" <= last <= "z"):
        return forms
    forms.update(keyword + s for s in ("s", "es", "'s", "ed", "ing", "er", "ers"))
    if last == "e" and len(keyword) > 2:
        forms.update([keyword + "d", keyword + "r", keyword + "rs", keyword[:-1] + "ing"])
    vowels = "aeiou"
    if last == "y" and len(keyword) > 1 and keyword[-2] not in vowels:
        forms.update(keyword[:-1] + s for s in ("ies", "ied", "ier", "iers"))
    if last not in vowels + "wxy" and len(keyword) > 1 and keyword[-2] in vowels:
        forms.update(keyword + last + s for s in ("ed", "ing", "er", "ers"))  # stab: stabbed
    return forms


def _whole(word: str) -> str:
    """A regular expression for `word` not inside a longer word. Where the word begins or ends with
    an ASCII letter or digit, only ASCII ones continue it: in `制造bomb的` the keyword stands alone."""

    def edge(char: str) -> str:
        if char.isascii() and char.isalnum():
            return "[a-z0-9]"
        return r"[^\W_]" if char.isalnum() else ""

    before, after = edge(word[0]), edge(word[-1])
    return (f"(?<!{before})" if before else "") + re.escape(word) + (f"(?!{after})" if after else "")


def _compact(word: str) -> str:
    """A keyword as `spaced_runs` joins the text: letters and digits only, look-alikes folded."""
    return fold_lookalikes("".join(c for c in word if c.isalnum()))


def _name(path: str) -> str:
    return path if len(path) <= _MAX_FIELD_NAME else path[: _MAX_FIELD_NAME - 1] + "…"
