"""The public API is explicit and frozen: changing it should be a deliberate act.

The frozen list is `cmdc_nb._public.PUBLIC`, which also makes `cmdc_nb.__all__` and llms.txt.
"""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

import cmdc_nb
from cmdc_nb._public import PUBLIC

# names other tools look up by spelling (IPython's `%load_ext`), public without being our API
PROTOCOL_HOOKS = {"load_ipython_extension"}
# helpers that take an open transaction, for sibling services only (see cmdc_nb/services/__init__.py)
SIBLING_SUFFIX = "_in"


@pytest.mark.parametrize("name", cmdc_nb.__all__)
def test_every_exported_module_has_its_names_frozen(name: str) -> None:
    # a module exported without an entry in PUBLIC (as `rag` once was) cannot slip by
    if isinstance(getattr(cmdc_nb, name), types.ModuleType):
        assert f"cmdc_nb.{name}" in PUBLIC, f"cmdc_nb.{name} is exported but has no entry in cmdc_nb._public"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_exactly_these(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    assert not [name for name in mod.__all__ if name.endswith(SIBLING_SUFFIX)], "an _in helper is not public"
    for name in mod.__all__:
        assert getattr(mod, name) is not None
    # and nothing else defined in the module looks public: a new function is either exported or _private
    defined_here = {
        name
        for name, obj in vars(mod).items()
        if not name.startswith("_")
        and name not in PROTOCOL_HOOKS
        and not name.endswith(SIBLING_SUFFIX)
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == mod.__name__
    }
    assert defined_here <= set(mod.__all__), (
        f"public-looking but not exported: {sorted(defined_here - set(mod.__all__))}"
    )


def test_every_error_derives_from_the_one_base() -> None:
    from cmdc_nb import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.CmdcError)
    # and the tree in the docstring names every class
    for name in errors.__all__:
        assert name in (errors.__doc__ or "")


def test_version_is_a_string() -> None:
    assert isinstance(cmdc_nb.__version__, str) and cmdc_nb.__version__.count(".") == 2


def test_indexes_is_the_seeds_name_for_rags_own_objects() -> None:
    # `cmdc_nb.indexes` (the seed's Command.Indexes) re-exports: one implementation, never a copy
    from cmdc_nb import indexes, rag

    assert set(PUBLIC["cmdc_nb.indexes"]) <= set(PUBLIC["cmdc_nb.rag"])
    assert all(getattr(indexes, name) is getattr(rag, name) for name in PUBLIC["cmdc_nb.indexes"])
    assert not [n for n, obj in vars(indexes).items() if getattr(obj, "__module__", "") == indexes.__name__]
