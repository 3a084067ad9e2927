"""Sessions and messages: statuses, config, counters, sequences, search, forks, export and import."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts, activity, agents, sessions
from cmdc_nb.errors import ConflictError, InvalidInputError, InvalidStateError, NotFoundError
from cmdc_nb.events import Event, topics
from cmdc_nb.store.enums import SessionStatus
from cmdc_nb.store.models import Message, User
from cmdc_nb.workspace import Workspace


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Refactor the Parser", "refactor-the-parser"),
        ("  Café -- crème brûlée!! ", "cafe-creme-brulee"),
        ("日本語", "session"),
        ("x" * 80, "x" * 50),
    ],
)
def test_slugs_follow_the_seed_rules(name: str, slug: str) -> None:
    assert sessions.slugify(name) == slug


def test_create_session_publishes_and_numbers_repeated_slugs(ws: Workspace, user: User) -> None:
    got: list[Event] = []
    ws.bus.subscribe(topics.user_sessions(user.id), got.append)
    a = sessions.create_session(user, name="Plan", tags=["x"], ws=ws)
    b = sessions.create_session(user, name="Plan", ws=ws)
    assert (a.slug, b.slug) == ("plan", "plan-2")
    assert [e.payload["session_id"] for e in got] == [str(a.id), str(b.id)]
    assert sessions.get_session_by_slug(user, "plan-2", ws=ws).id == b.id
    assert sessions.get_session(a.id, ws=ws).tags == ["x"]
    assert {s.id for s in sessions.list_sessions(user, ws=ws)} == {a.id, b.id}


def test_explicit_slugs_must_be_valid_and_free(ws: Workspace, user: User) -> None:
    sessions.create_session(user, name="A", slug="mine", ws=ws)
    with pytest.raises(ConflictError):
        sessions.create_session(user, name="B", slug="mine", ws=ws)
    with pytest.raises(InvalidInputError):
        sessions.create_session(user, name="C", slug="Not A Slug", ws=ws)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "temperature": 3}, "temperature"),
        ({"name": "x", "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_session_input_names_the_field(ws: Workspace, user: User, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        sessions.create_session(user, ws=ws, **kwargs)
    assert info.value.field == field


def test_a_session_needs_a_real_user(ws: Workspace) -> None:
    with pytest.raises(NotFoundError):
        sessions.create_session("00000000-0000-0000-0000-000000000001", name="orphan", ws=ws)


# --- status, config, counters -----------------------------------------------------------------------


def test_status_follows_the_transition_table(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    assert sessions.update_session_status(s, "paused", ws=ws).status == "paused"
    assert sessions.update_session_status(s, "completed", ws=ws).status == "completed"
    with pytest.raises(InvalidStateError) as info:
        sessions.update_session_status(s, "paused", ws=ws)
    assert (info.value.current, info.value.target) == ("completed", "paused")
    assert info.value.allowed == ["active", "archived"]
    assert sessions.archive_session(s, ws=ws).status == "archived"
    with pytest.raises(InvalidStateError):
        sessions.archive_session(s, ws=ws)
    with pytest.raises(InvalidInputError, match="one of"):
        sessions.update_session_status(s, "deleted", ws=ws)
    actions = [a.action for a in activity.list_resource_activity("session", s.id, ws=ws)]
    assert actions.count("session.update") == 2 and actions.count("session.archive") == 1


@pytest.mark.parametrize(
    ("current", "target"),
    [(a, b) for a in SessionStatus for b in SessionStatus if b not in sessions.SESSION_TRANSITIONS[a]],
)
def test_every_illegal_session_transition_raises(
    ws: Workspace, user: User, current: SessionStatus, target: SessionStatus
) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    path = {"active": [], "paused": ["paused"], "completed": ["completed"], "archived": ["archived"]}
    for step in path[current.value]:
        sessions.update_session_status(s, step, ws=ws)
    with pytest.raises(InvalidStateError):
        sessions.update_session_status(s, target, ws=ws)
    assert sessions.get_session(s, ws=ws).status == current


def test_config_updates_change_only_what_is_given_and_are_audited(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="S", system_prompt="be brief", temperature=0.2, ws=ws)
    got: list[Event] = []
    ws.bus.subscribe(topics.session(s.id), got.append)
    out = sessions.update_session_config(s, default_model="gpt-4o-mini", temperature=None, tags=["a"], ws=ws)
    assert (out.default_model, out.temperature, out.system_prompt, out.tags) == (
        "gpt-4o-mini",
        None,
        "be brief",
        ["a"],
    )
    assert got[-1].type == "session_updated" and got[-1].payload["changed"] == [
        "default_model",
        "tags",
        "temperature",
    ]
    entry = activity.list_resource_activity("session", s.id, ws=ws)[0]
    assert entry.details["changed"]["temperature"] == {"from": 0.2, "to": None}
    with pytest.raises(InvalidInputError) as info:
        sessions.update_session_config(s, max_tokens=-1, ws=ws)
    assert info.value.field == "max_tokens"


def test_list_sessions_filters_by_status_tags_and_text(ws: Workspace, user: User) -> None:
    a = sessions.create_session(user, name="Parser rewrite", tags=["parser", "rust"], ws=ws)
    b = sessions.create_session(user, name="Docs", purpose="Write the PARSER guide", tags=["docs"], ws=ws)
    c = sessions.create_session(user, name="Ops", tags=["ops"], ws=ws)
    sessions.archive_session(c, ws=ws)

    def ids(**kw: object) -> set:
        return {s.id for s in sessions.list_sessions(user, ws=ws, **kw)}

    assert ids(tags=["rust", "docs"]) == {a.id, b.id}
    assert ids(tags=["nothing"]) == set()
    assert ids(search="parser") == {a.id, b.id}
    assert ids(search="100%") == set()
    assert ids(status="archived") == {c.id}
    assert ids(status=["active", "archived"], tags=["ops"]) == {c.id}
    assert {s.id for s in sessions.list_active_sessions(user, ws=ws)} == {a.id, b.id}


def test_counters_add_atomically(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    sessions.increment_session_stats(s, tokens_in=10, cost_usd="0.000001", ws=ws)
    out = sessions.increment_session_stats(s, tokens_in=5, tokens_out=7, duration_ms=3, cost_usd=0.5, ws=ws)
    assert (out.total_tokens_in, out.total_tokens_out, out.total_duration_ms) == (15, 7, 3)
    assert out.total_cost_usd == Decimal("0.500001")
    with pytest.raises(InvalidInputError):
        sessions.increment_session_stats(s, tokens_in=-1, ws=ws)


# --- messages ---------------------------------------------------------------------------------------


def test_messages_get_gap_free_sequences_and_events(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    got: list[Event] = []
    ws.bus.subscribe(topics.session_messages(s.id), got.append)
    made = [sessions.create_message(s, role="user", content=f"m{i}", ws=ws) for i in range(5)]
    assert [m.sequence for m in made] == [1, 2, 3, 4, 5]
    assert [e.payload["sequence"] for e in got] == [1, 2, 3, 4, 5]
    assert sessions.get_session(s, ws=ws).message_count == 5
    assert sessions.count_messages(s, ws=ws) == 5
    assert sessions.get_message(made[2].id, ws=ws).content == "m2"


def test_a_sequence_collision_is_retried_not_dropped(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    sessions.create_message(s, role="user", content="first", ws=ws)
    real = sessions.messages._next_sequence
    calls = iter([1, 1])  # pretend another writer raced us twice to number 1

    def racing(tx, sid):  # type: ignore[no-untyped-def]
        return next(calls, None) or real(tx, sid)

    monkeypatch.setattr(sessions.messages, "_next_sequence", racing)
    m = sessions.create_message(s, role="user", content="second", ws=ws)
    assert m.sequence == 2
    assert [x.content for x in sessions.list_messages(s, ws=ws)] == ["first", "second"]


def test_messages_need_content_and_a_writable_session(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    with pytest.raises(InvalidInputError, match="content"):
        sessions.create_message(s, role="user", ws=ws)
    with pytest.raises(InvalidInputError, match="one of"):
        sessions.create_message(s, role="robot", content="x", ws=ws)
    sessions.archive_session(s, ws=ws)
    with pytest.raises(InvalidStateError):
        sessions.create_message(s, role="user", content="x", ws=ws)
    assert sessions.get_session(s, ws=ws).message_count == 0  # the failed call changed nothing
    with pytest.raises(NotFoundError):
        sessions.create_message("00000000-0000-0000-0000-000000000009", role="user", content="x", ws=ws)


def test_list_messages_pages_in_order_and_filters(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    for i in range(25):
        sessions.create_message(s, role="user" if i % 2 == 0 else "assistant", content=str(i), ws=ws)
    seen, cursor = [], None
    while True:
        page = sessions.list_messages(s, limit=10, after=cursor, ws=ws)
        seen += [m.sequence for m in page]
        if not page.has_next:
            break
        cursor = page.next_cursor
    assert seen == list(range(1, 26))
    assert [m.sequence for m in sessions.list_messages(s, role="assistant", after_sequence=20, ws=ws)] == [
        22,
        24,
    ]


def test_conversation_history_is_the_tail_in_order(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="S", ws=ws)
    for i, role in enumerate(["system", "user", "assistant", "tool_result", "user", "assistant"]):
        sessions.create_message(s, role=role, content=str(i), ws=ws)
    assert [m.content for m in sessions.get_conversation_history(s, limit=3, ws=ws)] == ["2", "4", "5"]
    assert [m.content for m in sessions.get_conversation_history(s, limit=None, roles=None, ws=ws)] == list(
        "012345"
    )
    assert [m.content for m in sessions.get_conversation_history(s, roles=["tool_result"], ws=ws)] == ["3"]


def test_full_text_search_is_stemmed_and_scoped(ws: Workspace, user: User) -> None:
    a = sessions.create_session(user, name="A", ws=ws)
    b = sessions.create_session(user, name="B", ws=ws)
    other = accounts.create_user("bob@example.com", ws=ws)
    c = sessions.create_session(other, name="C", ws=ws)
    m1 = sessions.create_message(a, role="user", content="The parser is parsing tokens", ws=ws)
    sessions.create_message(b, role="user", content="A parser for YAML", ws=ws)
    sessions.create_message(c, role="user", content="parsers everywhere", ws=ws)
    sessions.create_message(a, role="user", content="unrelated", ws=ws)
    assert {m.id for m in sessions.search_messages("parsing tokens", ws=ws)} == {m1.id}
    assert len(sessions.search_messages("parser", user=user, ws=ws)) == 2
    assert len(sessions.search_messages("parser", ws=ws)) == 3
    assert [m.id for m in sessions.search_messages("parser", session=a, ws=ws)] == [m1.id]
    assert sessions.search_messages('"; DROP TABLE messages; --', ws=ws) == []


# --- forks ------------------------------------------------------------------------------------------


def test_a_fork_copies_the_prefix_and_branches_stay_apart(ws: Workspace, user: User) -> None:
    parent = sessions.create_session(user, name="Main", system_prompt="sys", tags=["t"], ws=ws)
    msgs = [sessions.create_message(parent, role="user", content=f"p{i}", ws=ws) for i in range(5)]
    fork = sessions.fork_session(parent, msgs[2], name="Alt", ws=ws)
    assert (fork.parent_session_id, fork.forked_at_message_id) == (parent.id, msgs[2].id)
    assert (fork.system_prompt, fork.tags, fork.message_count) == ("sys", ["t"], 3)

    def contents(s: object) -> list[str]:
        return [m.content for m in sessions.list_messages(s, ws=ws)]

    assert contents(fork) == contents(parent)[:3]
    sessions.create_message(fork, role="user", content="only in fork", ws=ws)
    sessions.create_message(parent, role="user", content="only in parent", ws=ws)
    assert contents(fork) == ["p0", "p1", "p2", "only in fork"]
    assert contents(parent) == ["p0", "p1", "p2", "p3", "p4", "only in parent"]
    assert [m.sequence for m in sessions.list_messages(fork, ws=ws)] == [1, 2, 3, 4]
    assert sessions.list_messages(fork, ws=ws)[0].meta["forked_from"] == str(msgs[0].id)


def test_forks_form_a_tree(ws: Workspace, user: User) -> None:
    root = sessions.create_session(user, name="Root", ws=ws)
    m = sessions.create_message(root, role="user", content="hi", ws=ws)
    a = sessions.fork_session(root, m, ws=ws)
    b = sessions.fork_session(root, m, ws=ws)
    a1 = sessions.fork_session(a, sessions.list_messages(a, ws=ws)[0], ws=ws)
    assert [s.id for s in sessions.lineage(a1, ws=ws)] == [root.id, a.id, a1.id]
    assert [s.id for s in sessions.forks(root, ws=ws)] == [a.id, b.id]
    assert a.name == "Root (fork)" and a.slug == "root-fork" and b.slug == "root-fork-2"
    assert {s.id for s in sessions.list_sessions(user, parent=root, ws=ws)} == {a.id, b.id}
    entry = activity.list_resource_activity("session", a1.id, ws=ws)[0]
    assert entry.action == "session.fork" and entry.details["copied_messages"] == 1


def test_forking_at_another_sessions_message_is_refused(ws: Workspace, user: User) -> None:
    a = sessions.create_session(user, name="A", ws=ws)
    b = sessions.create_session(user, name="B", ws=ws)
    m = sessions.create_message(b, role="user", content="x", ws=ws)
    with pytest.raises(InvalidInputError, match="another session"):
        sessions.fork_session(a, m, ws=ws)
    assert len(sessions.list_sessions(user, ws=ws)) == 2


# --- export / import --------------------------------------------------------------------------------


def test_export_then_import_loses_nothing(ws: Workspace, user: User, tmp_path: Path) -> None:
    s = sessions.create_session(user, name="Review", purpose="PR 1", tags=["x"], temperature=0.3, ws=ws)
    sessions.create_message(s, role="system", content="be careful", ws=ws)
    call = agents.create_agent_call(
        s, model="anthropic/claude-sonnet-4", prompt_messages=[{"role": "user"}], ws=ws
    )
    # the provider's own tool-call id: text, not a UUID (an import once tried to read it as one)
    tu = agents.create_tool_use(
        call, tool_name="read_file", input={"path": "a.py"}, tool_use_id="toolu_01", ws=ws
    )
    agents.start_streaming(call, ws=ws)
    agents.complete_agent_call(
        call, response_content="ok", tokens_in=3, tokens_out=4, cost_usd="0.0123", ws=ws
    )
    sessions.create_message(
        s,
        role="assistant",
        content="héllo ✓",
        agent_call=call,
        tool_use=tu,
        content_blocks=[{"type": "text", "text": "héllo"}],
        metadata={"k": [1, 2]},
        ws=ws,
    )
    doc = sessions.export_session(s, tmp_path / "s.json", ws=ws)
    copy = sessions.import_session(user, tmp_path / "s.json", ws=ws)
    again = sessions.export_session(copy, ws=ws)

    def strip(d: dict) -> dict:
        ids = {"id", "original_id", "agent_call_id", "tool_use_id", "slug", "updated_at", "meta"}
        return {k: v for k, v in d.items() if k not in ids}

    assert strip(again["session"]) == strip(doc["session"])
    for key in ("messages", "agent_calls", "tool_uses"):
        assert [strip(r) for r in again[key]] == [strip(r) for r in doc[key]]
    new_msg = sessions.list_messages(copy, ws=ws)[1]
    new_call = agents.list_agent_calls(copy, ws=ws)[0]
    assert new_msg.agent_call_id == new_call.id != call.id
    assert copy.total_cost_usd == Decimal("0.0123") and copy.meta["imported_from"] == str(s.id)
    assert [t["tool_use_id"] for t in again["tool_uses"]] == ["toolu_01"]


def test_import_rejects_foreign_documents_whole(ws: Workspace, user: User) -> None:
    with pytest.raises(InvalidInputError, match=r"cmdc_nb\.session/1"):
        sessions.import_session(user, {"format": "other"}, ws=ws)
    s = sessions.create_session(user, name="S", ws=ws)
    sessions.create_message(s, role="user", content="x", ws=ws)
    doc = sessions.export_session(s, ws=ws)
    doc["messages"][0]["inserted_at"] = "not a date"
    with pytest.raises(InvalidInputError):
        sessions.import_session(user, doc, ws=ws)
    for broken in (
        {**doc, "session": None},
        {**doc, "messages": [{"role": "user"}]},
        {"format": doc["format"]},
    ):
        with pytest.raises(InvalidInputError, match=r"malformed|bad value"):
            sessions.import_session(user, broken, ws=ws)
    assert len(sessions.list_sessions(user, ws=ws)) == 1


def test_search_finds_text_as_it_is_edited_and_indexes_no_empty_message(ws: Workspace, user: User) -> None:
    """An assistant message that only asks for tools has no text: nothing to find, nothing indexed (on
    SQLite, no search row: migration 0012). A message edited from empty to text becomes findable, and
    edited again, is found by its new words only."""
    s = sessions.create_session(user, name="edits", ws=ws)
    empty = sessions.create_message(s, role="assistant", content="", ws=ws)
    sessions.create_message(s, role="user", content="zebra crossing", ws=ws)

    def set_content(text: str) -> None:
        with ws.engine.begin() as conn:
            conn.execute(sa.update(Message).where(Message.id == empty.id).values(content=text))

    def found(words: str) -> set[uuid.UUID]:
        return {m.id for m in sessions.search_messages(words, session=s, ws=ws)}

    if ws.backend == "sqlite":
        with ws.engine.connect() as conn:
            indexed = conn.exec_driver_sql("SELECT message_id FROM messages_fts").scalars().all()
        assert indexed == [sessions.get_conversation_history(s, ws=ws)[-1].id.hex]
    set_content("a quokka appeared")
    assert found("quokka") == {empty.id}
    set_content("a wombat instead")
    assert found("quokka") == set() and found("wombat") == {empty.id}
    set_content("")
    assert found("wombat") == set() and len(found("zebra")) == 1


def test_migration_0012_drops_the_search_rows_of_empty_messages_and_back(tmp_path: Path) -> None:
    from alembic import command

    from cmdc_nb.store import migrate

    ws = cmdc_nb.connect(f"sqlite:///{tmp_path}/m.db", home=tmp_path)
    try:
        owner = accounts.create_user("m@example.com", ws=ws)
        s = sessions.create_session(owner, name="m", ws=ws)
        for text in ["", "alpha", "", "beta"]:
            sessions.create_message(s, role="user", content=text, ws=ws)
        cfg = migrate._config()

        def rows(conn: sa.Connection) -> list[str]:
            return sorted(conn.exec_driver_sql("SELECT content FROM messages_fts").scalars())

        with ws.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            assert rows(conn) == ["alpha", "beta"]
            command.downgrade(cfg, "0011")
            assert rows(conn) == ["", "", "alpha", "beta"]  # as 0001's triggers kept them
            command.upgrade(cfg, "head")
            assert rows(conn) == ["alpha", "beta"]
        assert len(sessions.search_messages("alpha", ws=ws)) == 1
    finally:
        ws.close()
