"""Hostile input: hypothesis throws generated data at every public function that
takes user data — workflow specs, approval rules, cron schedules, tool arguments, message content,
imported transcripts, index configs — on both backends.

Each call either succeeds or raises a typed `cmdc_nb.errors.CmdcError` (tools: their `ToolError`, the
message the model gets back); never anything else. A call that fails leaves every table's row count as
it was: nothing half-written. 40 examples per function in CI, 10,000 with `CMDC_RELIABILITY_FULL=1`.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reliability import record, sized

from cmdc_nb import agents, approvals, rag, scheduling, sessions
from cmdc_nb import workflows as wf
from cmdc_nb.errors import CmdcError, StorageError
from cmdc_nb.kernel import ToolContext, ToolError
from cmdc_nb.store.models import Base, Session, User
from cmdc_nb.toolkit import LocalSandbox, builtin_tools
from cmdc_nb.workspace import Workspace

EXAMPLES = int(os.environ.get("CMDC_FUZZ_EXAMPLES") or sized(40, 10_000))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # the same examples on every machine: derandomized below
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Text as users and models produce it, hostile parts included: NUL, lone surrogates, control and
# bidi characters, very long strings, template and SQL syntax.
nasty = st.sampled_from(
    [
        "\x00",
        "\ud800",
        "\u202e",
        "'; DROP TABLE users; --",
        "{{ 7*7 }}",
        "{% for %}",
        "../" * 5,
        "ß" * 300,
        "",
    ]
)
any_text = st.one_of(st.text(max_size=80), st.text(st.characters(codec=None), max_size=40), nasty)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), any_text
)
json_like = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(any_text, c, max_size=4), max_leaves=12
)


def row_counts(ws: Workspace) -> dict[str, int]:
    with ws.read() as db:
        return {
            t.name: db.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


class Outcomes:
    """Calls `fn`; a typed error must leave the tables as they were. Counts what happened."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.seen: Counter[str] = Counter()

    def call(self, fn: Callable[[], Any], typed: tuple[type[BaseException], ...] = (CmdcError,)) -> Any:
        before = row_counts(self.ws)
        try:
            result = fn()
        except StorageError as exc:
            # A database error is typed, but bad input should be told as such before it gets there.
            raise AssertionError(f"bad input reached the database: {exc}") from None
        except typed as exc:
            self.seen[type(exc).__name__] += 1
            after = row_counts(self.ws)
            assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            return None
        self.seen["ok"] += 1
        return result

    def both_paths(self) -> None:
        """The generated data reached both the success path and the error path."""
        assert self.seen["ok"] > 0 and sum(self.seen.values()) > self.seen["ok"], self.seen


@pytest.fixture
def outcomes(ws: Workspace, request: pytest.FixtureRequest) -> Iterator[Outcomes]:
    o = Outcomes(ws)
    started = time.perf_counter()
    yield o
    name = request.node.originalname.removeprefix("test_")
    record(
        "fuzz",
        f"{name}[{ws.backend}]",
        {
            "examples": sum(o.seen.values()),
            "outcomes": dict(o.seen),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )


STEP_TYPES = [
    "python",
    "transform",
    "condition",
    "approval",
    "agent_call",
    "tool",
    "shell",
    "rag_query",
    "nope",
]
step_ids = st.one_of(st.sampled_from(["a", "b", "c", "d"]), any_text)
steps = st.fixed_dictionaries(
    {"id": step_ids, "type": st.sampled_from(STEP_TYPES) | any_text},
    optional={
        "depends_on": st.lists(step_ids, max_size=3) | json_like,
        "config": st.fixed_dictionaries(
            {}, optional={"value": json_like, "function": any_text, "command": any_text}
        )
        | json_like,
        "value": st.sampled_from(["{{ input.n }}", "{{ steps.a.output }}", "{{ x | attr('__class__') }}"])
        | json_like,
        "condition": any_text,
        "retries": st.integers(-3, 20) | json_like,
        "timeout": st.floats() | st.integers(-5, 10**9) | any_text,
        "function": st.sampled_from(["os.system", "builtins.eval", "json.dumps"]) | any_text,
        "command": any_text,
        "on_interrupt": any_text,
    },
)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed spec most of the time (transform steps over earlier ones), with hostile parts."""
    n = draw(st.integers(1, 5))
    out = []
    for i in range(n):
        earlier = [f"s{j}" for j in range(i)]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else []
        value = draw(
            st.sampled_from([1, "{{ input.n }}", "{{ input.n * 2 }}"])
            | st.sampled_from([f"{{{{ steps.{d}.output }}}}" for d in deps] or ["plain"])
            | (json_like if draw(st.booleans()) else st.just("x"))
        )
        out.append({"id": f"s{i}", "type": "transform", "config": {"value": value}, "depends_on": deps})
    return {"name": draw(st.text(min_size=1, max_size=30) | any_text), "steps": out}


specs = st.one_of(
    dags(),
    st.fixed_dictionaries(
        {"name": any_text, "steps": st.lists(steps, max_size=5)},
        optional={"input_schema": json_like, "description": any_text, "extra": json_like},
    ),
    json_like,
    any_text,
)


def test_workflow_specs(ws: Workspace, user: User, outcomes: Outcomes) -> None:
    @FUZZ
    @given(spec=specs)
    def check(spec: Any) -> None:
        outcomes.call(lambda: wf.create_workflow(user, spec, ws=ws))

    check()
    outcomes.both_paths()


CONDITION_KEYS = ["input_matches", "command_pattern", "path_glob", "risk_level_max", "regex", "max_cost_usd"]
rules = st.fixed_dictionaries(
    {
        "name": any_text,
        "action": st.sampled_from(["approve", "deny", "ask"]) | any_text,
    },
    optional={
        "approval_type": st.sampled_from(["*", "tool_use", "shell_command"]) | any_text,
        "tool_names": st.lists(any_text, max_size=3),
        "conditions": st.dictionaries(st.sampled_from(CONDITION_KEYS) | any_text, json_like, max_size=3),
        "priority": st.integers(-(2**70), 2**70),
        "max_auto_approvals_per_hour": st.none() | st.integers(-5, 2**40),
        "max_auto_approvals_per_session": st.none() | st.integers(-5, 2**40),
        "description": st.none() | any_text,
    },
)


def test_approval_rules(ws: Workspace, user: User, outcomes: Outcomes) -> None:
    @FUZZ
    @given(kw=rules)
    def check(kw: dict[str, Any]) -> None:
        outcomes.call(lambda: approvals.create_approval_rule(user, ws=ws, **kw))

    check()
    outcomes.both_paths()


cron_field = st.one_of(
    st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "5-1", "MON", "JAN", "?", "L", "#", "*/0", "-1"]),
    st.integers(-5, 100).map(str),
    any_text,
)


valid_field = st.sampled_from(["*", "*/5", "0", "1-5", "1,2,3", "*/15"])


@st.composite
def crons(draw: st.DrawFn) -> str:
    """Well-formed five-field expressions more than half the time; otherwise anything."""
    if draw(st.integers(0, 9)) < 6:
        return " ".join(draw(valid_field) for _ in range(5))
    return draw(
        st.one_of(
            st.lists(cron_field, min_size=1, max_size=7).map(" ".join),
            any_text,
            st.sampled_from(["@daily", "@hourly", "@reboot", "@every 5m"]),
        )
    )


def test_cron_schedules(ws: Workspace, user: User, outcomes: Outcomes) -> None:
    @FUZZ
    @given(
        cron=crons(),
        tz=st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus", "", "../../etc/passwd", "Europe"])
        | any_text,
    )
    def check(cron: str, tz: str) -> None:
        outcomes.call(
            lambda: scheduling.create_scheduled_job(
                user, cron=cron, timezone=tz, job_config={"handler": "h"}, ws=ws
            )
        )

    check()
    outcomes.both_paths()


message_kw = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool_result"]) | any_text},
    optional={
        "content": st.none() | any_text | st.text(max_size=3000),
        "content_blocks": st.none() | st.lists(json_like, max_size=3) | json_like,
        "token_count": st.none() | st.integers(-10, 2**70),
        "metadata": st.none() | st.dictionaries(any_text, json_like, max_size=3),
        "attachments": st.none() | st.lists(json_like, max_size=2),
    },
)


def test_message_content(ws: Workspace, session: Session, outcomes: Outcomes) -> None:
    @FUZZ
    @given(kw=message_kw)
    def check(kw: dict[str, Any]) -> None:
        msg = outcomes.call(lambda: sessions.create_message(session, ws=ws, **kw))
        if msg is not None and kw.get("content"):  # what was stored is what was given
            stored = sessions.get_message(msg.id, ws=ws)
            assert stored.content == kw["content"]

    check()
    outcomes.both_paths()


@pytest.fixture
def export_doc(ws: Workspace, user: User, session: Session) -> dict[str, Any]:
    first = sessions.create_message(session, role="user", content="hello", ws=ws)
    call = agents.create_agent_call(session, model="gpt-4o-mini", provider="openai", ws=ws)
    tu = agents.create_tool_use(call, tool_name="ls", input={"path": "."}, tool_use_id="t1", ws=ws)
    sessions.create_message(session, role="assistant", content="listing", agent_call=call, ws=ws)
    sessions.create_message(session, role="tool_result", content="a.txt", tool_use=tu, ws=ws)
    sessions.fork_session(session, first, name="fork", ws=ws)
    return dict(sessions.export_session(session, ws=ws))


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def test_imported_transcripts(
    ws: Workspace, user: User, export_doc: dict[str, Any], outcomes: Outcomes
) -> None:
    paths = [p for p in _paths(export_doc) if p]

    @FUZZ
    @given(
        edits=st.integers(0, 9).flatmap(
            # unedited 30% of the time, so the success path is taken too (and a name may still clash)
            lambda k: (
                st.just([])
                if k < 3
                else st.lists(
                    st.tuples(st.sampled_from(paths), st.sampled_from(["delete", "replace"]), json_like),
                    min_size=1,
                    max_size=4,
                )
            )
        ),
        name=st.none() | any_text,
    )
    # amounts whose picodollars need more than Decimal's default 28 digits, and one past numeric(38, 12)
    @example(edits=[(("session", "total_cost_usd"), "replace", 1e16)], name=None)
    @example(edits=[(("session", "total_cost_usd"), "replace", 1e30)], name=None)
    def check(edits: list[tuple[tuple[Any, ...], str, Any]], name: str | None) -> None:
        doc = copy.deepcopy(export_doc)
        for path, how, value in edits:
            parent: Any = doc
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if how == "delete":
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = value
            except (KeyError, IndexError, TypeError):
                continue  # an earlier edit removed the way there
        outcomes.call(lambda: sessions.import_session(user, doc, name=name, ws=ws))

    check()
    outcomes.both_paths()


index_kw = st.fixed_dictionaries(
    {"name": any_text},
    optional={
        "source_type": st.sampled_from(["texts", "local_repo", "dataframe", "url"]) | any_text,
        "source_config": st.none()
        | st.dictionaries(st.sampled_from(["path", "include", "exclude"]) | any_text, json_like, max_size=3),
        "chunk_strategy": st.sampled_from(["fixed", "recursive", "code_aware", "semantic"]) | any_text,
        "max_tokens": st.integers(-10, 10**7),
        "overlap_tokens": st.integers(-10, 10**7),
        "embedding_provider": st.sampled_from(["hashing", "openai", "local"]) | any_text,
        "embedding_model": st.none() | any_text,
        "embedding_dimensions": st.none() | st.integers(-5, 10**6),
        "slug": st.none() | any_text,
        "tags": st.lists(any_text, max_size=3),
    },
)


def test_index_configs(ws: Workspace, user: User, outcomes: Outcomes) -> None:
    @FUZZ
    @given(kw=index_kw)
    def check(kw: dict[str, Any]) -> None:
        outcomes.call(lambda: rag.create_index(user, ws=ws, **kw))

    check()
    outcomes.both_paths()


def arguments_for(
    schema: dict[str, Any], path_like: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments shaped by a tool's JSON schema most of the time (right names, right types, hostile
    values), otherwise anything at all."""
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "string": path_like,
        "integer": st.integers(-(2**70), 2**70) | st.integers(-3, 50),
        "number": st.floats(allow_nan=True) | st.integers(-3, 5),
        "array": st.lists(json_like, max_size=3),
    }
    props: dict[str, st.SearchStrategy[Any]] = {}
    for name, spec in schema.get("properties", {}).items():
        kinds = [spec.get("type")] + [a.get("type") for a in spec.get("anyOf", [])]
        props[name] = st.one_of([by_type[k] for k in kinds if k in by_type] or [json_like]) | st.none()
    required = set(schema.get("required") or ())
    shaped = st.fixed_dictionaries(
        {k: v for k, v in props.items() if k in required},
        optional={k: v for k, v in props.items() if k not in required},
    )
    return shaped | st.dictionaries(any_text, json_like, max_size=3)


def test_tool_arguments(ws: Workspace, tmp_path: Path, outcomes: Outcomes) -> None:
    """Every built-in tool validates generated arguments; the file tools also run on them inside a
    sandbox. Only ToolError (what the model is told) or a typed error comes out, and nothing outside
    the sandbox is touched."""
    box = tmp_path / "box"
    root = box / "sandbox"
    root.mkdir(parents=True)
    (root / "a.txt").write_text("alpha\nbeta\n")
    (box / "secret.txt").write_text("outside")
    tools = {t.name: t for t in builtin_tools()}
    runnable = ["read_file", "ls", "glob", "grep", "write_file", "edit_file"]
    path_like = st.one_of(
        st.sampled_from(
            ["a.txt", ".", "..", "../secret.txt", "/etc/passwd", "a.txt/..", "~", "*", "**/*", "alpha"]
        ),
        any_text,
    )

    @FUZZ
    @given(data=st.data(), name=st.sampled_from(sorted(tools)))
    def check(data: st.DataObject, name: str) -> None:
        t = tools[name]
        args = data.draw(arguments_for(t.parameters, path_like))
        ctx = ToolContext(
            agent_id="fuzz", session_id=None, working_dir=str(root), user_data={}, sandbox=LocalSandbox(root)
        )
        if name in runnable:
            outcomes.call(lambda: asyncio.run(t.invoke(args, ctx)), typed=(ToolError, CmdcError))
        else:
            outcomes.call(lambda: t.validate(args), typed=(ToolError, CmdcError))
        assert (box / "secret.txt").read_text() == "outside"
        assert sorted(x.name for x in box.iterdir()) == ["sandbox", "secret.txt"]

    check()
    outcomes.both_paths()
