"""The storage conformance suite: the same behaviour on SQLite and on PostgreSQL.

Every test here runs once per backend (the `backend` fixture) against a real database.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import cmdc_nb
from cmdc_nb.errors import ConflictError, InvalidInputError
from cmdc_nb.store import vector
from cmdc_nb.store._engine import create_engine
from cmdc_nb.store.enums import DocumentSourceType, IndexSourceType, MessageRole, SessionStatus
from cmdc_nb.store.fulltext import search_message_ids
from cmdc_nb.store.migrate import current_revision, head_revision, include_name, upgrade
from cmdc_nb.store.migrations import HEAD
from cmdc_nb.store.models import (
    ApiCredential,
    Base,
    ContextChunk,
    CostRecord,
    CostRollup,
    Index,
    Message,
    Session,
    User,
)
from cmdc_nb.workspace import Workspace

# -- migrations ----------------------------------------------------------------------------------------


def test_head_constant_matches_the_migration_scripts() -> None:
    assert head_revision() == HEAD


def test_migrating_a_blank_database_builds_exactly_the_models(blank_db_url: str) -> None:
    engine = create_engine(blank_db_url)
    assert upgrade(engine) is True
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include_name})
        assert compare_metadata(ctx, Base.metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    # the seed's 20 tables, plus what it lacked: model prices, budgets, job runs, cost rollups, event log,
    # and the gateway's keys, A2A tasks and webhook deliveries
    assert len(Base.metadata.tables) == 28
    assert {"model_prices", "budgets", "job_runs", "cost_rollups", "event_log"} <= tables
    assert {"gateway_keys", "a2a_tasks", "webhook_deliveries"} <= tables
    engine.dispose()


def test_rerunning_migrations_is_a_no_op(blank_db_url: str) -> None:
    engine = create_engine(blank_db_url)
    assert upgrade(engine) is True
    assert upgrade(engine) is False
    engine.dispose()


def test_connect_migrates_a_blank_database(blank_db_url: str, tmp_path: Any) -> None:
    ws = cmdc_nb.connect(blank_db_url, home=tmp_path)
    with ws.read() as db:
        assert current_revision(db.connection()) == HEAD
    ws.close()


def _connect_and_count(url: str, home: str) -> int:
    ws = cmdc_nb.connect(url, home=home, vault_key=cmdc_nb.vault.generate_key())
    with ws.read() as db:
        n = db.scalar(sa.select(sa.func.count()).select_from(User))
    ws.close()
    return int(n or 0)


def test_concurrent_connects_to_a_blank_database_migrate_it_once(blank_db_url: str, tmp_path: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_connect_and_count, [(blank_db_url, str(tmp_path))] * 4)
    assert results == [0, 0, 0, 0]
    engine = create_engine(blank_db_url)
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
    engine.dispose()


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_postgres_extensions_are_installed(ws: Workspace) -> None:
    with ws.read() as db:
        names = set(db.scalars(sa.text("SELECT extname FROM pg_extension")))
    assert {"vector", "citext", "pg_trgm", "btree_gin"} <= names


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_runs_in_wal_mode_with_foreign_keys(ws: Workspace) -> None:
    with ws.read() as db:
        assert db.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        assert db.execute(sa.text("PRAGMA busy_timeout")).scalar() >= 5000


# -- constraints ---------------------------------------------------------------------------------------


def _add(ws: Workspace, *rows: Any) -> None:
    with ws.transaction() as tx:
        tx.db.add_all(rows)


def _user(ws: Workspace, email: str = "u@example.com") -> User:
    u = User(email=email)
    _add(ws, u)
    return u


def test_email_is_unique_regardless_of_case(ws: Workspace) -> None:
    _user(ws, "Grace@Example.com")
    with pytest.raises(ConflictError):
        _user(ws, "grace@example.COM")


def test_status_columns_reject_values_outside_their_enum(ws: Workspace) -> None:
    u = _user(ws)
    s = Session(user_id=u.id, name="s")
    _add(ws, s)
    with pytest.raises(InvalidInputError), ws.transaction() as tx:  # the CHECK constraint, not Python
        tx.db.execute(
            sa.text("UPDATE sessions SET status = 'exploded' WHERE id = :id").bindparams(
                sa.bindparam("id", type_=sa.Uuid())
            ),
            {"id": s.id},
        )
    with ws.read() as db:
        assert db.get(Session, s.id).status is SessionStatus.ACTIVE  # type: ignore[union-attr]


def test_check_constraints_hold(ws: Workspace) -> None:
    u = _user(ws)
    with pytest.raises(InvalidInputError):
        _add(ws, Session(user_id=u.id, name="hot", temperature=2.5))
    s = Session(user_id=u.id, name="ok")
    _add(ws, s)
    with pytest.raises(InvalidInputError):
        _add(ws, Message(session_id=s.id, role=MessageRole.USER, content="x", sequence=0))


def test_message_sequence_is_unique_per_session(ws: Workspace) -> None:
    u = _user(ws)
    s1, s2 = Session(user_id=u.id, name="a"), Session(user_id=u.id, name="b")
    _add(ws, s1, s2)
    _add(ws, Message(session_id=s1.id, role=MessageRole.USER, content="one", sequence=1))
    _add(
        ws, Message(session_id=s2.id, role=MessageRole.USER, content="one", sequence=1)
    )  # other session: fine
    with pytest.raises(ConflictError):
        _add(ws, Message(session_id=s1.id, role=MessageRole.USER, content="again", sequence=1))


def test_session_slug_is_unique_per_user_but_may_repeat_across_users(ws: Workspace) -> None:
    a, b = _user(ws, "a@example.com"), _user(ws, "b@example.com")
    _add(ws, Session(user_id=a.id, name="x", slug="plan"), Session(user_id=b.id, name="x", slug="plan"))
    _add(ws, Session(user_id=a.id, name="no slug"), Session(user_id=a.id, name="no slug either"))
    with pytest.raises(ConflictError):
        _add(ws, Session(user_id=a.id, name="y", slug="plan"))


def test_a_failed_transaction_leaves_nothing_behind(ws: Workspace) -> None:
    with pytest.raises(ConflictError), ws.transaction() as tx:
        tx.db.add(User(email="first@example.com"))
        tx.db.flush()
        tx.db.add(User(email="FIRST@example.com"))
        tx.db.flush()
    with ws.read() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(User)) == 0


# -- cascades ------------------------------------------------------------------------------------------


def test_deleting_a_user_cascades_to_what_they_own(ws: Workspace) -> None:
    u = _user(ws)
    s = Session(user_id=u.id, name="s")
    _add(ws, s)
    _add(
        ws,
        Message(session_id=s.id, role=MessageRole.USER, content="hi", sequence=1),
        ApiCredential(user_id=u.id, name="k", provider="openai"),
    )
    with ws.transaction() as tx:
        tx.db.execute(sa.delete(User).where(User.id == u.id))
    with ws.read() as db:
        for model in (Session, Message, ApiCredential):
            assert db.scalar(sa.select(sa.func.count()).select_from(model)) == 0


def test_deleting_a_parent_session_orphans_its_forks_and_deleting_a_message_unlinks_them(
    ws: Workspace,
) -> None:
    u = _user(ws)
    parent = Session(user_id=u.id, name="parent")
    _add(ws, parent)
    m = Message(session_id=parent.id, role=MessageRole.USER, content="fork here", sequence=1)
    _add(ws, m)
    fork = Session(user_id=u.id, name="fork", parent_session_id=parent.id, forked_at_message_id=m.id)
    _add(ws, fork)
    with ws.transaction() as tx:
        tx.db.execute(sa.delete(Message).where(Message.id == m.id))
    with ws.read() as db:
        assert db.get(Session, fork.id).forked_at_message_id is None  # type: ignore[union-attr]
    with ws.transaction() as tx:
        tx.db.execute(sa.delete(Session).where(Session.id == parent.id))
    with ws.read() as db:
        survivor = db.get(Session, fork.id)
        assert survivor is not None and survivor.parent_session_id is None


# -- types ---------------------------------------------------------------------------------------------


def test_enums_come_back_as_enum_members(ws: Workspace) -> None:
    u = _user(ws)
    s = Session(user_id=u.id, name="s", status=SessionStatus.PAUSED)
    _add(ws, s)
    with ws.read() as db:
        got = db.get(Session, s.id)
    assert got is not None and got.status is SessionStatus.PAUSED and got.status == "paused"


def test_json_round_trips_nested_unicode(ws: Workspace) -> None:
    doc = {
        "ünïcode": "✓ 日本",
        "lang": "日本語",
        "nested": {"list": [1, 2.5, None, True, {"deep": []}]},
        "empty": {},
    }
    u = User(email="j@example.com", preferences=doc)
    _add(ws, u)
    with ws.read() as db:
        assert db.get(User, u.id).preferences == doc  # type: ignore[union-attr]
        # and JSON is queryable on both backends
        found = db.scalar(sa.select(User.id).where(User.preferences["lang"].as_string() == "日本語"))
    assert found == u.id


def test_json_that_jsonb_cannot_hold_is_stored_with_replacement_characters(ws: Workspace) -> None:
    doc = {"nul": "a\x00b", "lone": "x\ud800y", "k\x00": 1, "literal": "\\u0000 stays text", "emoji": "🙂"}
    u = User(email="nul@example.com", preferences=doc)
    _add(ws, u)
    with ws.read() as db:
        got = db.get(User, u.id).preferences  # type: ignore[union-attr]
    if ws.backend == "postgresql":  # JSONB refuses NUL and unpaired surrogates: U+FFFD instead
        assert got == {
            "nul": "a\ufffdb",
            "lone": "x\ufffdy",
            "k\ufffd": 1,
            "literal": "\\u0000 stays text",
            "emoji": "🙂",
        }
    else:  # SQLite's JSON text holds them as they are
        assert got == doc


def test_lists_round_trip(ws: Workspace) -> None:
    u = _user(ws)
    ids = [uuid.uuid4(), uuid.uuid4()]
    s = Session(user_id=u.id, name="s", tags=["b", "a", "ü"], linked_index_ids=ids)
    _add(ws, s)
    with ws.read() as db:
        got = db.get(Session, s.id)
    assert got is not None and got.tags == ["b", "a", "ü"] and got.linked_index_ids == ids


def test_timestamps_are_aware_utc(ws: Workspace) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    expires = dt.datetime(2026, 3, 29, 3, 30, 0, 123456, tzinfo=paris)
    u = _user(ws)
    cred = ApiCredential(user_id=u.id, name="k", provider="openai", expires_at=expires)
    _add(ws, cred)
    with ws.read() as db:
        got = db.get(ApiCredential, cred.id)
    assert got is not None and got.expires_at is not None
    assert got.expires_at.tzinfo is dt.UTC and got.expires_at == expires
    assert got.inserted_at.tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("0.0000135", Decimal("0.0000135")),
        (1.35e-05, Decimal("0.0000135")),  # a float is read as the number it prints as
        (Decimal("0.000000000001"), Decimal("0.000000000001")),
        (Decimal("12345.678901234567"), Decimal("12345.678901234567")),
        (0, Decimal(0)),
    ],
)
def test_money_is_stored_exactly(ws: Workspace, amount: Any, expected: Decimal) -> None:
    u = _user(ws)
    rec = _cost(u, amount)
    _add(ws, rec)
    with ws.read() as db:
        got = db.get(CostRecord, rec.id)
    assert got is not None and got.cost_usd == expected and isinstance(got.cost_usd, Decimal)


def _cost(u: User, amount: Any) -> CostRecord:
    now = dt.datetime.now(dt.UTC)
    return CostRecord(
        user_id=u.id,
        source_type="agent_call",
        source_id=uuid.uuid4(),
        provider="openai",
        service="chat",
        model="gpt-4o-mini",
        cost_usd=amount,
        incurred_at=now,
        day=now.date(),
    )


def test_money_sums_exactly_in_the_database(ws: Workspace) -> None:
    u = _user(ws)
    _add(ws, *[_cost(u, "0.0000135") for _ in range(1000)])
    with ws.read() as db:
        total = db.scalar(sa.select(sa.func.sum(CostRecord.cost_usd)))
    assert total == Decimal("0.0135")
    # and atomic in-place increments stay exact too
    s = Session(user_id=u.id, name="s")
    _add(ws, s)
    for _ in range(3):
        with ws.transaction() as tx:
            tx.db.execute(
                sa.update(Session)
                .where(Session.id == s.id)
                .values(total_cost_usd=Session.total_cost_usd + Decimal("0.1"))
            )
    with ws.read() as db:
        assert db.get(Session, s.id).total_cost_usd == Decimal("0.3")  # type: ignore[union-attr]


# -- vectors -------------------------------------------------------------------------------------------


def _index(ws: Workspace, u: User, dims: int) -> Index:
    idx = Index(
        user_id=u.id,
        name=f"idx{dims}",
        slug=f"idx-{dims}",
        source_type=IndexSourceType.TEXTS,
        embedding_provider="local",
        embedding_model="hash",
        embedding_dimensions=dims,
    )
    _add(ws, idx)
    return idx


def _chunks(idx: Index, vectors: np.ndarray) -> list[ContextChunk]:
    return [
        ContextChunk(
            index_id=idx.id,
            source_uri=f"doc{i}",
            source_type=DocumentSourceType.TEXT,
            content=f"chunk {i}",
            content_hash=f"{idx.id.hex}{i:08d}",
            chunk_index=0,
            token_count=2,
            embedding=vec.tolist(),
        )
        for i, vec in enumerate(vectors)
    ]


def test_embeddings_round_trip_as_float32(ws: Workspace) -> None:
    u = _user(ws)
    idx = _index(ws, u, 384)
    vec = np.random.default_rng(1).standard_normal((1, 384)).astype(np.float32)
    (chunk,) = _chunks(idx, vec)
    _add(ws, chunk)
    with ws.read() as db:
        got = db.get(ContextChunk, chunk.id)
    assert got is not None
    assert got.embedding.dtype == np.float32 and got.embedding.shape == (384,)
    np.testing.assert_array_equal(got.embedding, vec[0])


def test_exact_vector_search_matches_numpy_and_each_backend(ws: Workspace) -> None:
    u = _user(ws)
    idx = _index(ws, u, 16)
    other = _index(ws, u, 8)  # vectors of another index (and dimension) must not interfere
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((200, 16)).astype(np.float32)
    _add(ws, *_chunks(idx, vectors), *_chunks(other, rng.standard_normal((20, 8)).astype(np.float32)))
    query = rng.standard_normal(16).astype(np.float32)
    with ws.read() as db:
        hits = vector.exact_search(db, idx.id, query, k=10)
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = normed @ (query / np.linalg.norm(query))
    expected = [f"doc{i}" for i in np.argsort(-sims, kind="stable")[:10]]
    with ws.read() as db:
        uris = [db.get(ContextChunk, h.chunk_id).source_uri for h in hits]  # type: ignore[union-attr]
    assert uris == expected
    np.testing.assert_allclose([h.score for h in hits], np.sort(sims)[::-1][:10], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_hnsw_index_per_rag_index_on_postgres(ws: Workspace) -> None:
    # pgvector HNSW is PostgreSQL only; SQLite always searches exactly.
    u = _user(ws)
    idx = _index(ws, u, 16)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)
    _add(ws, *_chunks(idx, vectors))
    with ws.transaction() as tx:
        name = vector.ensure_hnsw_index(tx.db, idx.id, 16)
        vector.ensure_hnsw_index(tx.db, idx.id, 16)  # idempotent
    with ws.read() as db:
        assert db.scalar(sa.text("SELECT count(*) FROM pg_indexes WHERE indexname = :n"), {"n": name}) == 1
        query = vectors[42]
        db.execute(sa.text("SET LOCAL enable_seqscan = off"))
        db.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
        plan = "\n".join(
            db.scalars(
                sa.text("EXPLAIN " + vector.hnsw_sql(idx.id, 16)), vector.hnsw_params(idx.id, query, 5)
            )
        )
        assert name in plan
        hits = vector.hnsw_search(db, idx.id, 16, query, k=5)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


# -- full-text search ----------------------------------------------------------------------------------


def test_full_text_search_over_messages(ws: Workspace) -> None:
    u = _user(ws)
    s1, s2 = Session(user_id=u.id, name="a"), Session(user_id=u.id, name="b")
    _add(ws, s1, s2)
    m1 = Message(
        session_id=s1.id, role=MessageRole.USER, content="The parser crashes on nested brackets", sequence=1
    )
    m2 = Message(
        session_id=s1.id, role=MessageRole.ASSISTANT, content="I will rewrite the tokenizer", sequence=2
    )
    m3 = Message(session_id=s2.id, role=MessageRole.USER, content="Parsing dates: crashing again", sequence=1)
    _add(ws, m1, m2, m3)
    with ws.read() as db:
        assert set(search_message_ids(db, "crash")) == {m1.id, m3.id}  # stemmed: crashes, crashing
        assert search_message_ids(db, "crash", session_id=s1.id) == [m1.id]
        assert search_message_ids(db, "nested brackets") == [m1.id]
        assert search_message_ids(db, "') OR 1=1 --") == []  # hostile input is just text
        assert search_message_ids(db, "   ") == []
    with ws.transaction() as tx:
        tx.db.get(Message, m2.id).content = "Brackets need a stack"  # type: ignore[union-attr]
        tx.db.execute(sa.delete(Message).where(Message.id == m3.id))
    with ws.read() as db:
        assert set(search_message_ids(db, "brackets")) == {m1.id, m2.id}
        assert search_message_ids(db, "tokenizer") == []
        assert search_message_ids(db, "dates") == []


def test_migration_0006_sums_existing_cost_records_into_rollups(blank_db_url: str) -> None:
    """Upgrading a database that already has cost records fills the rollups from them."""
    engine = create_engine(blank_db_url)
    assert upgrade(engine, "0005") is True
    uid = uuid.uuid4()
    now = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    rows = [
        {"id": uuid.uuid4(), "user_id": uid, "source_type": "agent_call", "source_id": uuid.uuid4(),
         "provider": "openai", "service": "chat", "model": model, "tokens_in": 10, "tokens_out": 5,
         "cache_tokens_read": 1, "cache_tokens_write": 0, "cost_usd": cost, "incurred_at": now,
         "day": now.date(), "metadata": {}, "inserted_at": now, "updated_at": now}
        for model, cost in [("a", Decimal("0.5")), ("a", Decimal("0.25")), ("b", None)]
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            sa.insert(User.__table__),
            {"id": uid, "email": "m@example.com", "status": "active", "inserted_at": now, "updated_at": now},
        )
        conn.execute(sa.insert(CostRecord.__table__), rows)
    assert upgrade(engine) is True
    with engine.connect() as conn:
        got = conn.execute(
            sa.select(CostRollup.model, CostRollup.cost_usd, CostRollup.requests, CostRollup.unpriced_requests,
                      CostRollup.tokens_in, CostRollup.tokens_out).order_by(CostRollup.model)
        ).all()  # fmt: skip
    assert [tuple(r) for r in got] == [("a", Decimal("0.75"), 2, 0, 22, 10), ("b", Decimal(0), 1, 1, 11, 5)]
    engine.dispose()
