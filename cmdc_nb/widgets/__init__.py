"""The widget set (ipywidgets). Only this package imports ipywidgets; the core runs without it.

>>> from cmdc_nb.widgets import ChatWidget
>>> ChatWidget(agent)      # doctest: +SKIP
"""

from __future__ import annotations

from cmdc_nb.widgets.activity import ActivityFeed
from cmdc_nb.widgets.approvals import ApprovalQueue
from cmdc_nb.widgets.chat import ChatWidget
from cmdc_nb.widgets.costs import CostDashboard
from cmdc_nb.widgets.dag import DagView
from cmdc_nb.widgets.index_builder import IndexBuilder
from cmdc_nb.widgets.plan import PlanView

__all__ = [
    "ActivityFeed",
    "ApprovalQueue",
    "ChatWidget",
    "CostDashboard",
    "DagView",
    "IndexBuilder",
    "PlanView",
]
