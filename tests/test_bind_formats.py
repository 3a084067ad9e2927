"""The write path's own shortcuts store exactly what the general path would: SQLite's datetime text in
one step instead of two chained processors, JSON dumped by encoders made once, and a transaction
begun on the driver's connection (its error still typed)."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import zoneinfo
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from cmdc_nb._plumbing.workspace import _translate_db_errors
from cmdc_nb.errors import InvalidInputError, StorageError
from cmdc_nb.store._engine import _begin, compact_dumps, jsonb_dumps
from cmdc_nb.store.types import UTCDateTime

ZONES: list[dt.tzinfo | None] = [
    None,
    dt.UTC,
    dt.timezone(dt.timedelta(0)),
    zoneinfo.ZoneInfo("UTC"),
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
    dt.timezone(dt.timedelta(hours=-11)),
    zoneinfo.ZoneInfo("America/New_York"),
    zoneinfo.ZoneInfo("Australia/Lord_Howe"),  # a half-hour daylight-saving shift
]


def _chained(value: Any) -> Any:
    """What SQLAlchemy's own processors make of a value: the type's `process_bind_param`, then
    SQLite's DATETIME text format."""
    d = sqlite.dialect()
    inner = sa.DateTime(timezone=True).dialect_impl(d).bind_processor(d)
    assert inner is not None
    return inner(UTCDateTime().process_bind_param(value, d))


def test_sqlite_datetime_text_is_what_the_chained_processors_write() -> None:
    d = sqlite.dialect()
    fast = UTCDateTime().dialect_impl(d).bind_processor(d)
    rng = random.Random(7)
    values = [
        dt.datetime(1, 1, 1, 12),
        dt.datetime(9999, 12, 31, 11, 59, 59, 999999),
        dt.datetime(2026, 3, 29, 1, 30, tzinfo=zoneinfo.ZoneInfo("Europe/London")),  # a gap
        dt.datetime(2026, 10, 25, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/London")),  # a fold
    ]
    for _ in range(5000):
        values.append(
            dt.datetime(
                rng.randint(2, 9998), rng.randint(1, 12), rng.randint(1, 28),
                rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                rng.choice([0, rng.randint(0, 999_999)]),  # no microseconds: still written as .000000
                tzinfo=rng.choice(ZONES),
            )
        )  # fmt: skip
    for value in values:
        assert fast(value) == _chained(value), value
    assert fast(None) is None
    for wrong in ["2026-01-01 00:00:00", 1_700_000_000, dt.date(2026, 1, 1), ["2026-01-01"]]:
        with pytest.raises(InvalidInputError):
            fast(wrong)
        with pytest.raises(InvalidInputError):
            _chained(wrong)


JSON_CORPUS: list[Any] = [
    [], {}, None, 0, -1.5, True, "", "plain", "ünïcødé ✓ 🙂", "quote \" backslash \\ newline \n tab \t",
    "\x00 NUL and \x1f", "\ud800 lone surrogate", float("nan"), float("inf"), -float("inf"),
    {"nested": {"list": [1, 2, {"k": None}], "empty": [], "e": {}}}, [[], {}, [[]]],
    {"ünï": "cødé", "1": 1}, list(range(50)), {"a": [{"b": "c" * 1000}]},
]  # fmt: skip


@pytest.mark.parametrize("value", JSON_CORPUS, ids=range(len(JSON_CORPUS)))
def test_json_is_dumped_as_json_dumps_would(value: Any) -> None:
    assert compact_dumps(value) == json.dumps(value, separators=(",", ":"))
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
        expected = text if "\\u0000" not in text else None
    except UnicodeEncodeError:
        expected = None
    if expected is not None:
        assert jsonb_dumps(value) == expected
    else:  # cleaned: NUL and lone surrogates replaced, nothing else changed
        cleaned = jsonb_dumps(value)
        cleaned.encode("utf-8")
        assert "\\u0000" not in cleaned


def test_json_that_is_not_json_is_refused_as_before() -> None:
    for dump in (compact_dumps, jsonb_dumps):
        with pytest.raises(TypeError):
            dump({"when": dt.datetime(2026, 1, 1)})
        with pytest.raises(TypeError):
            dump({1, 2})
    assert math.isnan(json.loads(compact_dumps(float("nan"))))


def test_a_begin_that_fails_is_a_typed_error(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/b.db", connect_args={"isolation_level": None})
    with engine.connect() as conn:
        conn.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]
        with pytest.raises(sa.exc.OperationalError, match="within a transaction"):
            _begin(conn, "BEGIN IMMEDIATE")
        # and what a workspace's transaction makes of it: a StorageError, first line only
        with pytest.raises(StorageError, match="within a transaction"), _translate_db_errors():
            _begin(conn, "BEGIN IMMEDIATE")
    engine.dispose()
