"""Creating and finding sessions (the rest of sessions lands with the domain services)."""

from __future__ import annotations

import pytest

from cmdc_nb import sessions
from cmdc_nb.errors import ConflictError, InvalidInputError, NotFoundError
from cmdc_nb.events import Event, topics
from cmdc_nb.store.models import User
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
