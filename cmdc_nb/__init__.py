"""cmdc_nb — run, watch and study AI agents from a notebook.

>>> import cmdc_nb
>>> ws = cmdc_nb.connect()            # doctest: +SKIP  (SQLite in ~/.local/share/cmdc_nb by default)
>>> user = cmdc_nb.accounts.create_user("ada@example.com")   # doctest: +SKIP

`import cmdc_nb` stays light: the submodules (`accounts`, `sessions`, `agents`, `approvals`, …)
load on first use, and litellm, pandas, plotly and ipywidgets only where they are needed.

The domain services live in `cmdc_nb.services` and are reached here by their seed names:
`cmdc_nb.sessions`, `from cmdc_nb import sessions` and `import cmdc_nb.sessions` all give the one
module object `cmdc_nb.services.sessions`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cmdc_nb import errors as errors
from cmdc_nb._public import PUBLIC
from cmdc_nb._version import __version__ as __version__
from cmdc_nb.services import SERVICES

if TYPE_CHECKING:
    from cmdc_nb import evals as evals
    from cmdc_nb import events as events
    from cmdc_nb import gateway as gateway
    from cmdc_nb import indexes as indexes
    from cmdc_nb import kernel as kernel
    from cmdc_nb import pgserver as pgserver
    from cmdc_nb import plugins as plugins
    from cmdc_nb import providers as providers
    from cmdc_nb import rag as rag
    from cmdc_nb import store as store
    from cmdc_nb import toolkit as toolkit
    from cmdc_nb import traces as traces
    from cmdc_nb import widgets as widgets
    from cmdc_nb import workflows as workflows
    from cmdc_nb.services import accounts as accounts
    from cmdc_nb.services import activity as activity
    from cmdc_nb.services import agents as agents
    from cmdc_nb.services import approvals as approvals
    from cmdc_nb.services import artifacts as artifacts
    from cmdc_nb.services import attachments as attachments
    from cmdc_nb.services import budgets as budgets
    from cmdc_nb.services import costs as costs
    from cmdc_nb.services import frames as frames
    from cmdc_nb.services import matching as matching
    from cmdc_nb.services import presence as presence
    from cmdc_nb.services import pricing as pricing
    from cmdc_nb.services import scheduling as scheduling
    from cmdc_nb.services import sessions as sessions
    from cmdc_nb.services import vault as vault
    from cmdc_nb.workspace import Workspace as Workspace
    from cmdc_nb.workspace import acting_as as acting_as
    from cmdc_nb.workspace import connect as connect
    from cmdc_nb.workspace import get_workspace as get_workspace

__all__ = list(PUBLIC[__name__])

_SERVICES = frozenset(SERVICES)
_FROM_WORKSPACE = frozenset({"Workspace", "acting_as", "connect", "get_workspace"})
# Everything public that is not loaded eagerly above is a submodule loaded on first use.
_LAZY_SUBMODULES = frozenset(__all__) - _FROM_WORKSPACE - {"__version__", "errors"}


def _module_path(name: str) -> str:
    return f"cmdc_nb.services.{name}" if name in _SERVICES else f"cmdc_nb.{name}"


def __getattr__(name: str) -> Any:
    # SQLAlchemy and friends load on first use, so `import cmdc_nb` costs next to nothing.
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(_module_path(name))
        globals()[name] = module
        return module
    if name in _FROM_WORKSPACE:
        value = getattr(importlib.import_module("cmdc_nb.workspace"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cmdc_nb' has no attribute {name!r}")


class _ServiceAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import cmdc_nb.sessions` (and `from cmdc_nb.sessions import …`) yields `cmdc_nb.services.sessions`
    itself — one module object under both names, so a patch or a registry on one is on the other."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in _SERVICES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(_module_path(spec.name.rpartition(".")[2]))
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just stamped the alias's spec on the real module: give it back its own.
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)


if not any(isinstance(finder, _ServiceAlias) for finder in sys.meta_path):
    sys.meta_path.append(_ServiceAlias())


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext cmdc_nb`: the %%chat and %cmdc magics (see cmdc_nb.widgets.magics)."""
    from cmdc_nb.widgets.magics import load_ipython_extension as load

    load(ipython)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
