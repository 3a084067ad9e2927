"""cmdc_nb — run, watch and study AI agents from a notebook.

>>> import cmdc_nb
>>> ws = cmdc_nb.connect()            # doctest: +SKIP  (SQLite in ~/.local/share/cmdc_nb by default)
>>> user = cmdc_nb.accounts.create_user("ada@example.com")   # doctest: +SKIP

`import cmdc_nb` stays light: the submodules (`accounts`, `sessions`, `agents`, `approvals`, …)
load on first use, and litellm, pandas, plotly and ipywidgets only where they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cmdc_nb import errors
from cmdc_nb._version import __version__

if TYPE_CHECKING:
    from cmdc_nb import (
        accounts,
        activity,
        agents,
        approvals,
        artifacts,
        budgets,
        costs,
        events,
        frames,
        kernel,
        matching,
        pgserver,
        plugins,
        presence,
        pricing,
        providers,
        rag,
        scheduling,
        sessions,
        store,
        toolkit,
        vault,
        widgets,
        workflows,
    )
    from cmdc_nb.workspace import Workspace, acting_as, connect, get_workspace

__all__ = [
    "Workspace",
    "__version__",
    "accounts",
    "acting_as",
    "activity",
    "agents",
    "approvals",
    "artifacts",
    "budgets",
    "connect",
    "costs",
    "errors",
    "events",
    "frames",
    "gateway",
    "get_workspace",
    "kernel",
    "matching",
    "pgserver",
    "plugins",
    "presence",
    "pricing",
    "providers",
    "rag",
    "scheduling",
    "sessions",
    "store",
    "toolkit",
    "vault",
    "widgets",
    "workflows",
]

_FROM_WORKSPACE = frozenset({"Workspace", "acting_as", "connect", "get_workspace"})
# Everything public that is not loaded eagerly above is a submodule loaded on first use.
_LAZY_SUBMODULES = frozenset(__all__) - _FROM_WORKSPACE - {"__version__", "errors"}


def __getattr__(name: str) -> Any:
    # SQLAlchemy and friends load on first use, so `import cmdc_nb` costs next to nothing.
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"cmdc_nb.{name}")
        globals()[name] = module
        return module
    if name in _FROM_WORKSPACE:
        value = getattr(importlib.import_module("cmdc_nb.workspace"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cmdc_nb' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext cmdc_nb`: the %%chat and %cmdc magics (see cmdc_nb.widgets.magics)."""
    from cmdc_nb.widgets.magics import load_ipython_extension as load

    load(ipython)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
