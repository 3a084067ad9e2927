"""A safety plugin configured with a string where a list belongs must refuse it, not split it.

`HumanApproval(require_approval_for="shell")` once became the set {'s', 'h', 'e', 'l'}: the shell no
longer waited for anyone. Every built-in plugin's and the gateway's guardrails' constructor is held to
its type hints (`@checked`); this tries, for each, every list-like parameter with a bare string and
every flag with a word, and expects a typed error naming the field.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest

from cmdc_nb import plugins
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.gateway import Guardrails
from cmdc_nb.kernel import Agent
from cmdc_nb.kernel.plugins import Plugin

CLASSES = sorted(
    [c for c in vars(plugins).values() if isinstance(c, type) and issubclass(c, Plugin) and c is not Plugin]
    + [Guardrails],
    key=lambda c: c.__name__,
)
LISTS = ("Sequence", "Iterable", "list", "tuple", "frozenset", "set")


def _params(cls: type) -> list[tuple[str, str]]:
    hints = typing.get_type_hints(inspect.unwrap(cls.__init__))
    return [(n, str(h)) for n, h in hints.items() if n != "return"]


def _required(cls: type) -> dict[str, Any]:
    # the one required argument among the built-ins: a ModelRouter's rules
    return {"rules": []} if cls is plugins.ModelRouter else {}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_list_parameter_refuses_a_bare_string_and_every_flag_a_word(cls: type) -> None:
    assert hasattr(cls.__init__, "__wrapped__"), f"{cls.__name__}.__init__ is not @checked"
    tried = 0
    for name, hint in _params(cls):
        if (any(word in hint for word in LISTS) and "str]" in hint.replace(" ", "")) or hint.startswith(
            LISTS
        ):
            bad: Any = "shell"
        elif hint == "<class 'bool'>" or hint == "bool":
            bad = "no"
        else:
            continue
        tried += 1
        with pytest.raises(InvalidInputError) as caught:
            cls(**{**_required(cls), name: bad})
        assert caught.value.field == name
    if cls in (plugins.SecurityGuard, plugins.HumanApproval, Guardrails):
        assert tried >= 2  # the safety plugins' lists were tried, not skipped by a hint spelled otherwise


def test_human_approval_still_guards_the_shell_when_configured_right() -> None:
    guard = plugins.HumanApproval(require_approval_for=["shell"])
    assert guard.require == frozenset({"shell"})


@pytest.mark.parametrize("name", [5, b"bot", "", "a\x00b"])
def test_an_agent_name_is_text(name: Any) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Agent(model="scripted/x", name=name)
    assert caught.value.field == "name"


def test_a_cost_limit_that_is_not_an_amount_is_refused() -> None:
    for bad in ("x", "-1", "Infinity"):
        with pytest.raises(InvalidInputError) as caught:
            plugins.CostGuard(max_cost_usd=bad)
        assert caught.value.field == "max_cost_usd"
