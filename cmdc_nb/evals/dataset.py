"""Datasets of cases: what a task gets (`inputs`), what a right answer is (`expected`), and anything
else worth keeping beside the scores (`metadata`).

A dataset is made from a list (of `Case`s, of mappings, or of plain inputs), a pandas DataFrame or a
JSONL file. Every value must be JSON, because cases are stored with the eval run — that is what lets a
killed eval resume in another process, or run on worker machines, with exactly the same cases.

>>> ds = dataset([{"inputs": {"q": "2+2"}, "expected": "4"}, {"inputs": {"q": "3*3"}, "expected": "9"}])
>>> [c.id for c in ds], ds[1].expected
(['case-1', 'case-2'], '9')
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmdc_nb.errors import InvalidInputError

__all__ = ["MAX_CASES", "Case", "Dataset", "dataset"]

MAX_CASES = 100_000
_CASE_KEYS = frozenset({"id", "inputs", "expected", "metadata"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/ -]{0,199}$")


def _json_value(value: Any, where: str) -> Any:
    """`value` as it will be stored: JSON only, and no NaN or infinity (they do not round-trip)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{where} must be JSON (text, numbers, booleans, None, lists and dicts with text keys): {exc}",
            field=where.split(" ")[0],
        ) from None
    return json.loads(text)


@dataclass(frozen=True)
class Case:
    """One case: `inputs` for the task, the `expected` output (None when a scorer needs none, e.g. a
    judge or a JSON-schema check) and free `metadata`. `id` names the case in results and resumes."""

    inputs: Any
    expected: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "inputs": self.inputs,
            "expected": self.expected,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Case:
        return cls(raw["inputs"], raw.get("expected"), dict(raw.get("metadata") or {}), str(raw["id"]))


def _valid_id(cid: Any) -> bool:
    return not isinstance(cid, bool) and isinstance(cid, str | int) and bool(_ID.fullmatch(str(cid)))


def _case(raw: Any, n: int) -> Case:
    where = f"case {n}"
    cid: Any
    if isinstance(raw, Case):
        inputs, expected, metadata, cid = raw.inputs, raw.expected, raw.metadata, raw.id
    elif isinstance(raw, Mapping) and "inputs" in raw:
        unknown = sorted(set(map(str, raw)) - _CASE_KEYS)
        if unknown:
            raise InvalidInputError(
                f"{where} has unknown key(s) {', '.join(unknown)}; a case has id, inputs, expected, metadata",
                field="cases",
            )
        inputs, expected = raw["inputs"], raw.get("expected")
        metadata, cid = raw.get("metadata") or {}, raw.get("id") or ""
    else:
        inputs, expected, metadata, cid = raw, None, {}, ""
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(
            f"{where}: metadata must be a mapping, not {type(metadata).__name__}", field="cases"
        )
    if cid in ("", None):
        cid = f"case-{n}"
    if isinstance(cid, float) and cid.is_integer():
        cid = int(cid)  # an id column with a missing value is read as floats
    if not _valid_id(cid):
        raise InvalidInputError(
            f"{where}: id must be text of letters, digits and . _ : / - (at most 200), got {cid!r}",
            field="cases",
        )
    return Case(
        _json_value(inputs, f"inputs of {where}"),
        _json_value(expected, f"expected of {where}"),
        _json_value(dict(metadata), f"metadata of {where}"),
        str(cid),
    )


class Dataset(Sequence[Case]):
    """An ordered, immutable list of cases with unique ids. Build one with `dataset(...)`."""

    def __init__(self, cases: Iterable[Case], *, name: str = "dataset") -> None:
        self.cases: tuple[Case, ...] = tuple(cases)
        self.name = name
        seen: set[str] = set()
        for c in self.cases:
            if c.id in seen:
                raise InvalidInputError(f"two cases have the id {c.id!r}", field="cases")
            seen.add(c.id)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: Any) -> Any:
        return self.cases[i]

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r} cases={len(self.cases)}>"

    def frame(self) -> Any:
        """The cases as a DataFrame (id, inputs, expected, metadata)."""
        import pandas as pd

        return pd.DataFrame(
            [c.as_dict() for c in self.cases], columns=["id", "inputs", "expected", "metadata"]
        )


def _from_frame(frame: Any) -> list[dict[str, Any]]:
    frame = frame.rename(columns=str)  # a column named 0 is the input field "0"
    cols = list(frame.columns)
    if "inputs" in cols:
        rows = frame.to_dict("records")
        return [{k: _plain(v) for k, v in r.items() if k in _CASE_KEYS} for r in rows]
    # Every column but expected / id / metadata is an input field.
    fields = [c for c in cols if c not in _CASE_KEYS]
    out = []
    for r in frame.to_dict("records"):
        case: dict[str, Any] = {"inputs": {f: _plain(r[f]) for f in fields}}
        for key in ("id", "expected", "metadata"):
            if key in r and _plain(r[key]) is not None:
                case[key] = _plain(r[key])
        out.append(case)
    return out


def _plain(value: Any) -> Any:
    """numpy scalars, pandas' missing values and timestamps as plain Python (inside lists and dicts too)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat") and callable(value.isoformat):
        return value.isoformat()
    if hasattr(value, "tolist") and not isinstance(value, str):
        return _plain(value.tolist())
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, list | dict | str):
        with contextlib.suppress(ValueError, TypeError):
            value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value.__class__.__name__ in ("NAType", "NaTType"):
        return None
    return value


def _from_jsonl(path: Path) -> list[Any]:
    out = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of line 1
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path.name}: {exc.__class__.__name__}", field="cases") from None
    # "\n" only: str.splitlines() also splits at U+2028 / U+2029, which JSON strings may hold raw
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path.name} line {n} is not JSON: {exc.msg}", field="cases") from None
    return out


def dataset(cases: Any, *, name: str | None = None) -> Dataset:
    """A Dataset from a list (Cases, `{"inputs", "expected", "metadata", "id"}` mappings or plain
    inputs), a pandas DataFrame (an `inputs` column, or one column per input field beside `expected`)
    or the path of a JSONL file (one case per line). A Dataset is returned as it is."""
    if isinstance(cases, Dataset):
        return cases
    label = name
    if isinstance(cases, str | Path) and str(cases).endswith((".jsonl", ".ndjson")):
        path = Path(cases)
        label = label or path.stem
        raw: list[Any] = _from_jsonl(path)
    elif hasattr(cases, "to_dict") and hasattr(cases, "columns"):
        raw = _from_frame(cases)
    elif isinstance(cases, set | frozenset):
        raise InvalidInputError(
            "a set has no order, and cases are numbered in order: give a list", field="cases"
        )
    elif isinstance(cases, str | bytes | Mapping) or not isinstance(cases, Iterable):
        raise InvalidInputError(
            f"cases must be a list, a DataFrame or a .jsonl path, not {type(cases).__name__}", field="cases"
        )
    else:
        raw = list(cases)
    if not raw:
        raise InvalidInputError("a dataset needs at least one case", field="cases")
    if len(raw) > MAX_CASES:
        raise InvalidInputError(f"at most {MAX_CASES} cases in one dataset, got {len(raw)}", field="cases")
    return Dataset((_case(r, n) for n, r in enumerate(raw, 1)), name=label or "dataset")
