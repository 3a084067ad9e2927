"""Storage: models, column types, migrations, pagination. Lower layers import nothing from above."""

from cmdc_nb.store import enums, models
from cmdc_nb.store.pagination import Page

__all__ = ["Page", "enums", "models"]
