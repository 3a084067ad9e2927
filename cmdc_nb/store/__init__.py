"""Storage: models, column types, migrations, pagination. Lower layers import nothing from above.

`models`, `enums` and `Page` load on first use, so `cmdc_nb.store.values` (money, time, text with no
database in sight) can be imported without SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cmdc_nb.store import enums as enums
    from cmdc_nb.store import models as models
    from cmdc_nb.store.pagination import Page as Page

__all__ = ["Page", "enums", "models"]


def __getattr__(name: str) -> Any:
    if name in ("enums", "models"):
        return importlib.import_module(f"cmdc_nb.store.{name}")
    if name == "Page":
        return importlib.import_module("cmdc_nb.store.pagination").Page
    raise AttributeError(f"module 'cmdc_nb.store' has no attribute {name!r}")
