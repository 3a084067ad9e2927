"""pandas DataFrames of every kind of record, with typed columns, filters and the common cuts.

Column types are documented per function and hold on both backends:

- ids, providers, models, statuses, roles, actions, notebook cells → `category`
- timestamps → `datetime64[us, UTC]`; `day` → `datetime64[s]` (midnight UTC)
- counts → `int64` (`Int64` where the column may be empty)
- money → `decimal128(38, 12)[pyarrow]`: exact, sums exactly in `groupby`, and missing (`<NA>`) where a
  request was unpriced — never a silent 0.
- a tool's arguments and an approver's edits (`approvals_frame`) → `object` (dicts, as they were stored)

Rows are read with the ORM bypassed (one query): with the `fast-frames` extra as Arrow columns through
ADBC's drivers, else row by row with columns built by numpy; both give the same dtypes and values.
`daily_costs` pushes the grouping into the database instead.

pandas and pyarrow are imported when a frame is first asked for, not with `cmdc_nb`.

>>> df = costs_frame(user=user, since=datetime(2026, 11, 1, tzinfo=UTC))        # doctest: +SKIP
>>> by_day(df, by="model")                                                      # doctest: +SKIP
"""

from __future__ import annotations

from cmdc_nb.services.frames.approvals import APPROVAL_COLUMNS, approvals_frame
from cmdc_nb.services.frames.cuts import by_day, by_model, by_session, by_week, daily_costs, top_n, unit_costs
from cmdc_nb.services.frames.feedback import FEEDBACK_COLUMNS, feedback_frame
from cmdc_nb.services.frames.records import (
    COST_COLUMNS,
    activity_frame,
    calls_frame,
    costs_frame,
    messages_frame,
    sessions_frame,
    tool_uses_frame,
)

__all__ = [
    "APPROVAL_COLUMNS",
    "COST_COLUMNS",
    "FEEDBACK_COLUMNS",
    "activity_frame",
    "approvals_frame",
    "by_day",
    "by_model",
    "by_session",
    "by_week",
    "calls_frame",
    "costs_frame",
    "daily_costs",
    "feedback_frame",
    "messages_frame",
    "sessions_frame",
    "tool_uses_frame",
    "top_n",
    "unit_costs",
]
