"""The widget set (ipywidgets). Only this package imports ipywidgets; the core runs without it.

>>> from cmdc_nb.widgets import ChatWidget
>>> ChatWidget(agent)      # doctest: +SKIP

Each widget's module loads on first use, so `from cmdc_nb.widgets import ChatWidget` does not also load
the workflow engine (DagView) or RAG (IndexBuilder).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cmdc_nb.widgets.activity import ActivityFeed
    from cmdc_nb.widgets.approvals import ApprovalQueue
    from cmdc_nb.widgets.chat import ChatWidget
    from cmdc_nb.widgets.costs import CostDashboard
    from cmdc_nb.widgets.dag import DagView
    from cmdc_nb.widgets.evals import EvalView
    from cmdc_nb.widgets.index_builder import IndexBuilder
    from cmdc_nb.widgets.plan import PlanView

_MODULES = {
    "ActivityFeed": "activity",
    "ApprovalQueue": "approvals",
    "ChatWidget": "chat",
    "CostDashboard": "costs",
    "DagView": "dag",
    "EvalView": "evals",
    "IndexBuilder": "index_builder",
    "PlanView": "plan",
}
__all__ = [
    "ActivityFeed",
    "ApprovalQueue",
    "ChatWidget",
    "CostDashboard",
    "DagView",
    "EvalView",
    "IndexBuilder",
    "PlanView",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = getattr(importlib.import_module(f"cmdc_nb.widgets.{_MODULES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cmdc_nb.widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
