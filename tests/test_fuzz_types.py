"""Wrong types at every public entry point: each public function of the service, workflow and RAG
modules (found from their `__all__`, so a new one is fuzzed without a line here) is called with one
argument of the wrong kind at a time — a string for a list, bytes or a list for text, a bool for a
number, NaN, infinities, huge integers, lone surrogates, NUL, plain objects, None for a required
argument — on both backends.

Each call either raises a typed `CmdcError` (and leaves every table's row count as it was), or is
accepted: then the value must fit the parameter's hint, and every row the call wrote must hold what
its column promises (text is valid text, a bool a bool, a number a finite number, a list of strings a
list of strings). And no secret handed to an entry point that takes one is ever echoed in an error, its
causes, or a log record, whatever the value.
"""

from __future__ import annotations

import asyncio
import collections.abc as cabc
import datetime as dt
import inspect
import logging
import math
import os
import re
import types
import typing
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import record, sized

from cmdc_nb import (
    accounts,
    activity,
    agents,
    approvals,
    artifacts,
    budgets,
    costs,
    frames,
    matching,
    presence,
    pricing,
    rag,
    scheduling,
    sessions,
    vault,
)
from cmdc_nb import workflows as wf
from cmdc_nb._plumbing.checked import _hints
from cmdc_nb.errors import CmdcError, InvalidInputError, StorageError
from cmdc_nb.store import models
from cmdc_nb.store.models import Base
from cmdc_nb.store.types import TextList
from cmdc_nb.workspace import Workspace

MODULES = [
    accounts,
    activity,
    agents,
    approvals,
    artifacts,
    budgets,
    costs,
    frames,
    matching,
    presence,
    pricing,
    rag,
    scheduling,
    sessions,
    vault,
    wf,
]
# Functions that take no user data at all: there is no argument to get wrong.
NO_ARGUMENTS = {"costs.current_notebook_cell", "pricing.litellm_providers", "vault.generate_key"}

EXAMPLES = int(os.environ.get("CMDC_FUZZ_EXAMPLES") or sized(10, 300))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


class Opaque:
    """A plain object of no kind any function expects."""

    def __repr__(self) -> str:
        return "Opaque()"


# Wrong (or hostile) values, one of which replaces one argument per call.
BAD: list[Any] = [
    "shell",  # a string where a list is expected would be split into characters
    "",
    "lone \ud800 surrogate",
    "nul \x00 inside",
    b"bytes",
    bytearray(b"ab"),
    ["a", "b"],
    ["a", 1, None],
    ("\ud800",),
    {"k": "v"},
    {"k": float("nan")},
    {"k": "\udfff"},
    {1: "int key"},
    True,
    False,
    0,
    -1,
    2**70,
    -(2**70),
    1.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal("NaN"),
    Decimal("Infinity"),
    None,
    Opaque(),
    uuid.UUID(int=0),
    dt.datetime(2024, 1, 1),  # naive
    dt.timedelta(days=-1),
    lambda *a, **k: None,
    "x" * 100_000,
]


@dataclass
class World:
    """One of every kind of row, to be the valid arguments around the wrong one."""

    user: models.User
    session: models.Session
    message: models.Message
    call: models.AgentCall
    tool_use: models.ToolUse
    item: models.ApprovalItem
    rule: models.ApprovalRule
    artifact: models.Artifact
    budget: models.Budget
    job: models.ScheduledJob
    presence: models.PresenceRecord
    workflow: models.Workflow
    run: models.WorkflowRun
    index: models.Index
    credential: models.ApiCredential
    frame: Any

    def of(self, cls: type) -> Any:
        for value in vars(self).values():
            if type(value) is cls:
                return value
        return None


SPEC = {"name": "fuzz", "steps": [{"id": "a", "type": "transform", "config": {"value": 1}}]}


def make_world(ws: Workspace) -> World:
    user = accounts.create_user("fuzz@example.com", name="Fuzz", ws=ws)
    session = sessions.create_session(user, name="Fuzz", ws=ws)
    message = sessions.create_message(session, role="user", content="hello", ws=ws)
    call = agents.create_agent_call(session, model="gpt-4o-mini", provider="openai", ws=ws)
    tool_use = agents.create_tool_use(call, tool_name="ls", input={"path": "."}, tool_use_id="t1", ws=ws)
    workflow = wf.create_workflow(user, SPEC, ws=ws)
    index = rag.create_index(user, "fuzz", ws=ws)
    rag.ingest(index, texts=["hello world", "goodbye"], progress=False, ws=ws)
    costs.record_cost(
        user, source_type="agent_call", source_id=call.id, provider="openai", model="gpt-4o-mini", ws=ws
    )
    return World(
        user=user,
        session=session,
        message=message,
        call=call,
        tool_use=tool_use,
        item=approvals.create_approval_item(
            user, approval_type="custom", title="t", payload={}, session=session, ws=ws
        ),
        rule=approvals.create_approval_rule(user, name="r", action="approve", tool_names=["ls"], ws=ws),
        artifact=artifacts.create_artifact(user, name="a.txt", content="one\n", ws=ws),
        budget=budgets.create_budget(name="b", limit_usd="10", user=user, ws=ws),
        job=scheduling.create_scheduled_job(user, interval_seconds=3600, job_config={"handler": "h"}, ws=ws),
        presence=presence.join_resource(user, "session", session.id, client_id="c1", ws=ws),
        workflow=workflow,
        run=wf.start_workflow_run(workflow, user, ws=ws),
        index=index,
        credential=accounts.create_api_credential(
            user, name="k", provider="openai", api_key="sk-fuzz-0000", ws=ws
        ),
        frame=frames.costs_frame(ws=ws),
    )


# Valid values of the required arguments no row of the world stands for, by name (or function.name).
def baseline(world: World) -> dict[str, Any]:
    return {
        "action": "session.create",
        "approvals.create_approval_rule.action": "approve",
        "after": dt.datetime.now(dt.UTC),
        "api_key": "sk-fuzz-1111",
        "approval_type": "custom",
        "client_id": "c1",
        "column": "model",
        "chunk_index": 0,
        "command": "ls -la",
        "conditions": {},
        "content": "hello",
        "content_hash": "ab" * 32,
        "credential_id": world.credential.id,
        "user_id": world.user.id,
        "day": dt.date.today(),
        "dimensions": 8,
        "doc_id": "doc-1",
        "document": rag.list_documents(world.index)[0],
        "email": "fuzz@example.com",
        "embedding": [0.5] * world.index.embedding_dimensions,
        "embedding_column": None,
        "error_type": "Boom",
        "factory": lambda model, dimensions, **options: None,
        "filters": {},
        "frame": world.frame,
        "hits": [],
        "items": [],
        "id": "a",
        "index": world.index,
        "input_per_million_usd": "1.5",
        "output_per_million_usd": "2",
        "key": b"k" * 32,
        "labelled": {},
        "limit_usd": "10",
        "messages": "hello",
        "model": "gpt-4o-mini",
        "name": "fuzz",
        "other": "two\n",
        "password": "pw",
        "path": "src/a.py",
        "pattern": "ls *",
        "payload": {},
        "policy": {},
        "preferences": {},
        "provider": "openai",
        "query": "hello",
        "rating": "like",
        "raw": SPEC,
        "resource_id": world.session.id,
        "resource_type": "session",
        "role": "user",
        "sequence": 1,
        "slug": "fuzz",
        "sessions.import_session.source": sessions.export_session(world.session, ws=None),
        "source": SPEC,
        "source_id": world.call.id,
        "source_type": "agent_call",
        "spec": SPEC,
        "status": "active",
        "step_id": "a",
        "step_type": "fuzz",
        "text": "hello world",
        "title": "t",
        "token_count": 1,
        "uri": "text-0",
        "vector": [0.5] * world.index.embedding_dimensions,
    }


def public_functions() -> list[tuple[str, Callable[..., Any]]]:
    found = []
    for mod in MODULES:
        short = mod.__name__.rsplit(".", 1)[-1]
        for name in mod.__all__:
            fn = getattr(mod, name)
            if inspect.isfunction(fn) and f"{short}.{name}" not in NO_ARGUMENTS:
                found.append((f"{short}.{name}", fn))
    # Those that end a row's life (delete, archive, revoke, cancel, …) go last, so the others still
    # find the world's rows alive and reach their success paths.
    ending = ("delete", "archive", "revoke", "cancel", "deny", "fail", "complete", "timeout", "leave")
    return sorted(found, key=lambda item: (item[0].split(".")[1].startswith(ending), item[0]))


def arguments(qualname: str, fn: Callable[..., Any], world: World, known: dict[str, Any]) -> dict[str, Any]:
    """Valid values for `fn`'s required arguments."""
    out = {}
    hints = _hints(inspect.unwrap(fn))
    for name, p in inspect.signature(fn).parameters.items():
        if p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        for key in (f"{qualname}.{name}", name):
            if key in known:
                out[name] = known[key]
                break
        else:
            row = next((world.of(c) for c in _classes(hints.get(name)) if world.of(c) is not None), None)
            if row is None and name in ("user", "session"):
                row = getattr(world, name)
            assert row is not None, f"no valid value for {qualname}({name}=…): add one to baseline()"
            out[name] = row
    return out


def _classes(hint: Any) -> list[type]:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return [a for a in args if isinstance(a, type)]


# --- what a value must be to fit a hint: the rules, stated independently of the code under test ---


def fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object or not (isinstance(hint, type) or origin is not None or hint is None):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is str:
        return isinstance(value, str) and _good_text(value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    if hint is float:
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and abs(value) < 2**63
        )
    if hint is Decimal:
        return isinstance(value, Decimal) and value.is_finite()
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (list, tuple, cabc.Sequence, cabc.Collection):
        item = args[0] if args else Any
        return isinstance(value, list | tuple) and all(fits(x, item) for x in value)
    if origin in (dict, cabc.Mapping):
        return isinstance(value, cabc.Mapping)
    if origin in (cabc.Callable,) or hint is cabc.Callable:
        return callable(value)
    if isinstance(hint, type) and getattr(hint, "_is_protocol", False):
        return True
    return isinstance(value, origin or hint)


def _good_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def garbage_in(value: Any, column: sa.Column[Any]) -> str | None:
    """What is wrong with a stored `value` for its column, or None."""
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return None if isinstance(value, bool) else f"{type(value).__name__} in a bool column"
    if isinstance(kind, sa.Integer):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{type(value).__name__} in an integer column"
    if isinstance(kind, sa.Float):
        return None if isinstance(value, float) and math.isfinite(value) else f"{value!r} stored"
    if isinstance(kind, TextList):
        ok = isinstance(value, list) and all(isinstance(x, str) and _good_text(x) for x in value)
        return None if ok else f"{value!r} in a list of strings"
    if isinstance(kind, sa.String | sa.Enum):
        return None if isinstance(value, str) and _good_text(value) else f"{type(value).__name__} as text"
    if isinstance(kind, sa.JSON) or type(kind).__name__.startswith("JSON"):
        return _json_garbage(value)
    if isinstance(value, Decimal):
        return None if value.is_finite() else f"{value!r} stored"
    return None


def _json_garbage(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} in JSON"
    if isinstance(value, str) and not _good_text(value):
        return "bad text in JSON"
    if isinstance(value, dict):
        for k, x in value.items():
            if (why := _json_garbage(k) or _json_garbage(x)) is not None:
                return why
    if isinstance(value, list):
        for x in value:
            if (why := _json_garbage(x)) is not None:
                return why
    return None


def row_counts(ws: Workspace) -> dict[str, int]:
    tables = Base.metadata.sorted_tables
    counts = [sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in tables]
    with ws.read() as db:
        row = db.execute(sa.select(*counts)).one()
    return {t.name: n for t, n in zip(tables, row, strict=True)}


def stored_garbage(ws: Workspace, tables: set[str]) -> list[str]:
    found = []
    with ws.read() as db:
        for table in Base.metadata.sorted_tables:
            if table.name not in tables:
                continue
            for row in db.execute(sa.select(table)).mappings():
                for column in table.columns:
                    if (why := garbage_in(row[column.name], column)) is not None:
                        found.append(f"{table.name}.{column.name}: {why}")
    return found


def tables_of(result: Any) -> set[str]:
    rows = getattr(result, "items", result)
    rows = rows if isinstance(rows, list | tuple) else [rows]
    return {r.__table__.name for r in rows if isinstance(r, Base)}


class Tally:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.seen: Counter[str] = Counter()
        self.failures: list[str] = []
        self.functions: set[str] = set()

    def call(self, qualname: str, fn: Callable[..., Any], kwargs: dict[str, Any], field: str) -> None:
        self.functions.add(qualname)
        bad = kwargs[field]
        before = row_counts(self.ws)
        try:
            result = fn(**kwargs)
            if inspect.iscoroutine(result):  # an async entry point checks when awaited
                result = asyncio.run(result)
        except StorageError as exc:  # typed, but bad input should be told as such before the database
            self.fail("untyped_errors", qualname, field, bad, f"reached the database: {exc}")
            return
        except CmdcError:
            self.seen["typed_errors"] += 1
            after = row_counts(self.ws)
            if after != before:
                changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
                self.fail("partial_writes", qualname, field, bad, str(changed))
            return
        except Exception as exc:
            self.fail("untyped_errors", qualname, field, bad, f"{type(exc).__name__}: {exc}"[:300])
            return
        self.seen["accepted"] += 1
        hint = _hints(inspect.unwrap(fn)).get(field, Any)
        if field != "ws" and not fits(bad, hint):
            self.fail("garbage_stored", qualname, field, bad, f"accepted though the hint is {hint}")
        after = row_counts(self.ws)
        written = {k for k in before if before[k] != after[k]} | tables_of(result)
        for why in stored_garbage(self.ws, written):
            self.fail("garbage_stored", qualname, field, bad, why)

    def fail(self, kind: str, qualname: str, field: str, bad: Any, why: str) -> None:
        self.seen[kind] += 1
        shown = repr(bad)[:60]
        self.failures.append(f"{kind}: {qualname}({field}={shown}): {why}")


FUNCTIONS = public_functions()


@pytest.fixture
def world(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.chdir(tmp_path)  # a path argument that is accepted (export_session's) is written here
    return make_world(ws)


def test_every_public_function_refuses_wrong_types(ws: Workspace, world: World) -> None:
    known = baseline(world)
    tally = Tally(ws)
    for qualname, fn in FUNCTIONS:
        fuzz(tally, qualname, fn, arguments(qualname, fn, world, known))
    n_inputs = sum(tally.seen[k] for k in ("typed_errors", "accepted", "untyped_errors", "partial_writes"))
    record(
        "typed_input",
        ws.backend,
        {
            "functions": len(tally.functions),
            "inputs": n_inputs,
            "typed_errors": tally.seen["typed_errors"],
            "accepted": tally.seen["accepted"],
            "untyped_errors": tally.seen["untyped_errors"],
            "garbage_stored": tally.seen["garbage_stored"],
            "partial_writes": tally.seen["partial_writes"],
        },
    )
    assert tally.failures == [], "\n".join(tally.failures[:80]) + f"\n… {len(tally.failures)} in all"
    assert len(tally.functions) == len(FUNCTIONS) and tally.seen["typed_errors"] > 0


def fuzz(tally: Tally, qualname: str, fn: Callable[..., Any], valid: dict[str, Any]) -> None:
    """Call `fn` with `valid` arguments but one, which is wrong."""
    params = inspect.signature(fn).parameters
    fields = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    @FUZZ
    @given(field=st.sampled_from(fields), bad=st.sampled_from(BAD))
    def one(field: str, bad: Any) -> None:
        kwargs = {**valid, field: bad}
        if "ws" in fields and field != "ws":
            kwargs["ws"] = tally.ws
        tally.call(qualname, fn, kwargs, field)

    one()


def test_every_public_function_is_checked() -> None:
    # a new public function without @checked would take a string for a list again
    unchecked = [q for q, fn in FUNCTIONS if not hasattr(fn, "__wrapped__")]
    assert unchecked == []


# --- no secret echoed ---------------------------------------------------------------------------

MARK = "Zq7SECRETxv93"  # in every secret below, and in nothing else
SECRET = f"sk-{MARK}-wxyz"
SECRETS: list[Any] = [
    SECRET,
    SECRET + "\ud800",  # a lone surrogate: no codec takes it, and codec errors carry the whole string
    "\udfff" + SECRET,
    SECRET + "\x00",
    SECRET * 5000,  # far past any length limit
    f"  {SECRET}\n",
    SECRET.encode(),
    bytearray(SECRET.encode()),
    [SECRET],
    (SECRET,),
    {"key": SECRET},
    {SECRET: 1},
]


def secret_entry_points(world: Secrets) -> dict[str, Callable[[Any], Any]]:
    """Every public entry point that takes a secret, by the parameter that holds it."""
    from cmdc_nb import connect, gateway

    ws, user, n = world.ws, world.user, iter(range(10**6))
    return {
        "accounts.create_api_credential.api_key": lambda s: accounts.create_api_credential(
            user, name=f"k{next(n)}", provider="openai", api_key=s, ws=ws
        ),
        "accounts.create_user.password": lambda s: accounts.create_user(
            f"u{next(n)}@example.com", password=s, ws=ws
        ),
        "accounts.verify_password.password": lambda s: accounts.verify_password(user, s),
        "vault.rotate_vault_key.new_key": lambda s: vault.rotate_vault_key(new_key=s, ws=ws),
        "vault.key_id.key": lambda s: vault.key_id(s),
        "vault.KeyRing.from_text.text": lambda s: vault.KeyRing.from_text(s),
        "vault.Vault.encrypt.plaintext": lambda s: ws.vault.encrypt(
            s, table="api_credentials", column="encrypted_key", row_id=user.id
        ),
        "workspace.connect.vault_key": lambda s: connect(world.url, vault_key=s, make_default=False).close(),
        "gateway.authenticate_gateway_key.token": lambda s: gateway.authenticate_gateway_key(s, ws=ws),
        # an issued token given where its id belongs
        "gateway.revoke_gateway_key.key": lambda s: gateway.revoke_gateway_key(s, ws=ws),
        "gateway.sign.secret": lambda s: gateway.sign(s, "1700000000", b"{}"),
        "gateway.verify.secret": lambda s: gateway.verify(s, "1700000000", b"{}", "sha256=00"),
    }


@dataclass
class Secrets:
    ws: Workspace
    url: str
    user: models.User


ENTRY_POINTS = re.findall(r'"([a-z_]+\.[A-Za-z_.]+)":', inspect.getsource(secret_entry_points))


def echoes(exc: BaseException | None, seen: set[int] | None = None) -> list[str]:
    """Every text an error shows or carries: its str, repr and args, and those of its causes."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return []
    seen.add(id(exc))
    out = [str(exc), repr(exc), *(repr(a) for a in exc.args), *(str(a) for a in exc.args)]
    out += [repr(x) for x in vars(exc).values()] if hasattr(exc, "__dict__") else []
    return out + echoes(exc.__cause__, seen) + echoes(exc.__context__, seen)


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_no_secret_is_echoed(
    entry_point: str, ws: Workspace, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = accounts.create_user("secret@example.com", password="pw-12345678", ws=ws)
    enter = secret_entry_points(Secrets(ws, db_url, user))[entry_point]
    leaks, outcomes = [], Counter[str]()
    for secret in SECRETS:
        try:
            result = enter(secret)
        except Exception as exc:
            outcomes["typed" if isinstance(exc, CmdcError) else type(exc).__name__] += 1
            shown = echoes(exc)
        else:
            outcomes["accepted"] += 1
            shown = [repr(result), str(result)]
        shown += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
        caplog.clear()
        if any(MARK in text for text in shown):
            leaks.append(repr(secret)[:40])
    record("secret_echo", f"{entry_point}[{ws.backend}]", {"secrets": len(SECRETS), "echoed": len(leaks)})
    assert leaks == [], leaks
    # the wrong kinds of value are refused with typed errors
    assert set(outcomes) <= {"typed", "accepted"} and outcomes["typed"] >= 6, outcomes


def test_every_secret_taking_entry_point_is_tried() -> None:
    # a parameter named like a secret in any public function must be in the table above
    from cmdc_nb import gateway

    named = {
        f"{mod.__name__.rsplit('.', 1)[-1]}.{name}.{p}"
        for mod in [*MODULES, gateway]
        for name in mod.__all__
        if inspect.isfunction(fn := getattr(mod, name))
        for p in inspect.signature(fn).parameters
        if p in ("api_key", "password", "secret", "token", "new_key", "key", "plaintext", "vault_key")
    }
    tried = {p if isinstance(p, str) else p.values[0] for p in ENTRY_POINTS}
    assert named - tried == set()


# --- the red team's cases, as examples ------------------------------------------------------------

RED_TEAM_CASES: list[tuple[str, Callable[[World, Workspace], Any], str]] = [
    (
        "a string for a list",
        lambda w, ws: approvals.create_approval_rule(
            w.user, name="r2", action="approve", tool_names="shell", ws=ws
        ),
        "tool_names",
    ),
    (
        "a word for a bool",
        lambda w, ws: budgets.update_budget(w.budget, hard_limit="no", ws=ws),  # type: ignore[arg-type]
        "hard_limit",
    ),
    (
        "a bool for a number",
        lambda w, ws: sessions.create_session(w.user, name="s", max_tokens=True, ws=ws),
        "max_tokens",
    ),
    (
        "bytes for text",
        lambda w, ws: sessions.create_message(w.session, role="user", content=b"hi", ws=ws),  # type: ignore[arg-type]
        "content",
    ),
    (
        "an infinite timeout",
        lambda w, ws: agents.create_tool_use(
            w.call, tool_name="ls", requires_approval=True, expires_in=float("inf"), ws=ws
        ),
        "expires_in",
    ),
    (
        "a NaN temperature",
        lambda w, ws: sessions.create_session(w.user, name="s", temperature=float("nan"), ws=ws),
        "temperature",
    ),
    (
        "a tool_use_id that is no id",
        lambda w, ws: agents.create_tool_use(w.call, tool_name="ls", tool_use_id="a b\n" * 100, ws=ws),
        "tool_use_id",
    ),
    (
        "a lone surrogate in metadata",
        lambda w, ws: costs.record_cost(
            w.user,
            source_type="agent_call",
            source_id=w.call.id,
            provider="openai",
            model="m",
            metadata={"note": "\ud800"},
            ws=ws,
        ),
        "note",
    ),
    (
        "a naive datetime",
        lambda w, ws: scheduling.next_occurrence(w.job, after=dt.datetime(2030, 1, 1)),
        "after",
    ),
]


@pytest.mark.parametrize(("case", "call", "field"), RED_TEAM_CASES, ids=[c[0] for c in RED_TEAM_CASES])
def test_the_red_team_cases_are_refused_naming_the_field(
    case: str, call: Callable[[World, Workspace], Any], field: str, ws: Workspace, world: World
) -> None:
    before = row_counts(ws)
    with pytest.raises(InvalidInputError) as info:
        call(world, ws)
    assert info.value.field == field
    assert row_counts(ws) == before
