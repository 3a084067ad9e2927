"""What every notebook's cells share: the marker of a compared cell and the first cell."""

from __future__ import annotations

CHECK = "# NBVAL_CHECK_OUTPUT"

SETUP = f"""import os, tempfile
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp(prefix="cmdc-nb-")  # a fresh, throw-away data folder
import cmdc_nb
from cmdc_nb import accounts
ws = cmdc_nb.connect()  # SQLite by default; cmdc_nb.connect("postgresql+psycopg://…") for a team
me = accounts.create_user("ada@example.com", name="Ada Lovelace")
print(ws.backend, "workspace ready for", me.name)
{CHECK}"""
