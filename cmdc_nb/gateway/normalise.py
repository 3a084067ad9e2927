"""Text as a guardrail compares it: disguises folded away, so a rule and the text meet in one form.

`normalise` is the plain form, readable and used for patterns too:

1. HTML character references are decoded (`b&#111;mb`).
2. Invisible characters are removed: format characters (zero-width space, joiner and non-joiner, word
   joiner, soft hyphen, bidirectional controls, byte order mark, tag characters, …), the other
   default-ignorable code points (variation selectors, Hangul fillers, …) and control characters.
3. NFKC (fullwidth, mathematical, circled and superscript letters become plain ones), then NFD with
   every combining mark removed (accents, strike-throughs, underlines: `b̶o̶m̶b̶` is `bomb`).
4. Every non-ASCII character that Unicode's confusables (UTS #39, from `confusable-homoglyphs`) says
   looks like another is replaced by that character's prototype: Cyrillic `о` and Greek `ο` are `o`,
   Cyrillic `В` is `B`. Two readings are added to UTS #39: a look-alike of a capital I counts as `i`
   (it would be `l`, which case folding then could not meet), and Latin small capitals are their
   letters (`ʙᴏᴍʙ`). ASCII itself is left as written.
5. Case folded; every run of whitespace (spaces, no-break spaces, tabs, newlines, …) is one space.

Three more forms catch what an attacker does with ASCII alone; a keyword is refused in any of them:

- `join_split_words`: punctuation between two letters or digits is removed (`b.o.m.b`, `bo-mb`,
  `b_o_m_b`, `b*o*m*b`); apostrophes stay, so `he'll` never becomes `hell`.
- `fold_lookalikes`: in a word that has a letter or an `@`, digits and symbols read as letters (`0`→o,
  `1`→i, `3`→e, `4`→a, `5`→s, `7`→t, `8`→b, `@`→a, `$`→s, `!` and `|` inside a word →i), `l` is `i`,
  `rn` is `m` and `vv` is `w`. Numbers (`455`, `$455`, `2024`) are not read as words.
- `spaced_runs`: three or more single letters apart by up to three spaces or punctuation marks
  (`b o m b`, `b. o. m. b`) joined into one run, which a keyword is searched inside.

Not covered: a word split into pieces longer than one letter by spaces (`bo mb`), apostrophes inside a
word, text reversed or behind a right-to-left override, encodings (base64, rot13, URL escapes), other
languages' words and synonyms, and look-alikes that UTS #39 does not list.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import cache

__all__ = ["fold_lookalikes", "join_split_words", "normalise", "spaced_runs"]

_WHITESPACE = re.compile(r"\s+")
# punctuation (never an apostrophe) or underscores between two letters or digits
_INNER_PUNCTUATION = re.compile(r"(?<=[^\W_])(?:[^\w\s']|_)+(?=[^\W_])")
# a number: digits and `$` (with `!` and `|`) but no letter and no `@` (`@$$` is a word, `$455` a price)
_NUMBER = re.compile(r"(?<![\w$@!|])[\d$!|_]+(?![\w$@!|])")
_INNER_BAR = re.compile(r"(?<=[\w$@])[!|](?=[\w$@])")  # `b!tch`, but not `kill!`
_LOOKALIKE_CHARS = str.maketrans("0134578@$l", "oieastbasi")
_SPACED_RUN = re.compile(r"(?<![^\W_])[^\W_](?:(?:\W|_){1,3}[^\W_]){2,}(?![^\W_])")
_NOT_ALNUM = re.compile(r"[\W_]+")
_SMALL_CAPITAL = re.compile(r"LATIN LETTER SMALL CAPITAL ([A-Z])")
# Default_Ignorable_Code_Point (DerivedCoreProperties.txt) beyond the format characters and marks
_IGNORABLE_RANGES = (
    (0x115F, 0x1160),
    (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
)
_PLANES_WITH_MARKS = range(0x30000)  # marks and format characters are all in planes 0-2 (and 14, above)


def normalise(text: str) -> str:
    """The plain form of `text` (see the module's docstring): `normalise("ＢОМＢ’s")` is `"bomb's"`."""
    drop, prototypes = _tables()
    text = html.unescape(text).translate(drop)
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text)).translate(drop)
    text = text.translate(prototypes).casefold()
    # case folding can leave a mark behind (İ folds to i and a combining dot)
    text = unicodedata.normalize("NFD", text).translate(drop)
    return _WHITESPACE.sub(" ", text)


def join_split_words(plain: str) -> str:
    """`plain` with punctuation between two letters or digits removed: `b.o.m.b` is `bomb`."""
    return _INNER_PUNCTUATION.sub("", plain)


def fold_lookalikes(plain: str) -> str:
    """`plain` with digits and symbols that stand for letters read as those letters, in every word
    that has a letter or an `@`: `k1ll` and `klll` are both `kiii`, `@$$` is `ass`; a number (`455`,
    `$5`) is no word and becomes `#`."""
    # Only keywords are looked for in this form, and a keyword that is a number is found in the plain
    # form. Each step is one pass in C, so a long text costs little.
    text = _INNER_BAR.sub("i", _NUMBER.sub("#", plain)).translate(_LOOKALIKE_CHARS)
    return text.replace("rn", "m").replace("vv", "w")


def spaced_runs(plain: str) -> list[str]:
    """Runs of three or more single letters or digits spelled apart, each joined and read with
    `fold_lookalikes`: `b o m b` and `b. 0. m. b` are both `bomb`."""
    return [fold_lookalikes(_NOT_ALNUM.sub("", run.group())) for run in _SPACED_RUN.finditer(plain)]


@cache
def _tables() -> tuple[dict[int, None], dict[int, str]]:
    """What `normalise` removes, and each look-alike's prototype; built once, on first use."""
    drop: dict[int, None] = {}
    small_capitals: dict[int, str] = {}
    for cp in [*_PLANES_WITH_MARKS, *range(0xE0000, 0xE1000)]:
        char = chr(cp)
        category = unicodedata.category(char)
        if category[0] == "M" or category == "Cf" or (category == "Cc" and not char.isspace()):
            drop[cp] = None
        elif category == "Ll" and (letter := _SMALL_CAPITAL.fullmatch(unicodedata.name(char, ""))):
            small_capitals[cp] = letter.group(1).lower()
    for low, high in _IGNORABLE_RANGES:
        drop.update(dict.fromkeys(range(low, high + 1)))
    prototypes: dict[int, str] = {}
    for source, target in _confusables().items():
        if source.isascii():
            continue  # ASCII is the side look-alikes are read as: `m` stays `m`, `0` stays `0`
        if target == "l" and source != source.casefold():
            target = "i"  # a capital I's look-alike: after case folding, a capital I is an i
        target = unicodedata.normalize("NFD", target).translate(drop)
        prototypes[ord(source)] = target.replace("rn", "m").replace("''", '"').casefold()
    prototypes.update(small_capitals)  # read as letters, though UTS #39 lists few of them
    return drop, prototypes


def _confusables() -> dict[str, str]:
    """Each source character of UTS #39's confusables.txt and its prototype.

    `confusable-homoglyphs` keeps each mapping in both directions; the direction is recovered from the
    data's shape: a prototype is never itself a source, so a character listed beside several others
    is a prototype, and one listed beside a single prototype is a source. A pair listed only with each
    other is the same either way; the lower code point is taken as the prototype."""
    from confusable_homoglyphs import confusables  # type: ignore[import-untyped]

    neighbours: dict[str, set[str]] = {}
    for key, entries in confusables.confusables_data.items():
        # right-to-left characters are kept between left-to-right marks, which are not part of them
        chars = key.replace("\u200e", "")
        neighbours.setdefault(chars, set()).update(e["c"].replace("\u200e", "") for e in entries)
    sources: dict[str, str] = {}
    for char, others in neighbours.items():
        if len(char) != 1 or len(others) != 1:
            continue
        (other,) = others
        if len(other) > 1 or len(neighbours.get(other, ())) > 1 or other < char:
            sources[char] = other
    return sources
