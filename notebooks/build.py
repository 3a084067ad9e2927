"""Write the notebooks from the cell sources below, execute them (offline, deterministic) and save them
with their outputs. CI re-executes them with nbval and compares the outputs of the cells marked
`# NBVAL_CHECK_OUTPUT` (ids, times and durations sanitised by notebooks/sanitize.cfg).

    .venv/bin/python notebooks/build.py            # every notebook
    .venv/bin/python notebooks/build.py 00_tour    # one
    CMDC_NB_TEAM_URL=postgresql://… .venv/bin/python notebooks/build.py 06_team_mode   # on PostgreSQL
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "cells"))


# A notebook's cells live in notebooks/cells/<module>.py, as the list CELLS.
SOURCES = {
    "00_tour": "tour",
    "01_chat_and_approvals": "chat",
    "02_workflows": "workflows",
    "03_rag_index": "rag",
    "04_cost_analytics": "costs",
    "05_inside_the_agent_loop": "loop",
    "06_team_mode": "team",
    "07_evaluate_models": "evals",
    "08_serve_and_share": "serve",
}


def cells(name: str) -> list[str]:
    """The cell sources of notebook `name`, as its module in notebooks/cells/ lists them."""
    return list(importlib.import_module(SOURCES[name]).CELLS)


def notebook(name: str) -> nbformat.NotebookNode:
    """Notebook `name` as written from its cells, before it is executed."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in cells(name):
        if cell.startswith("md:"):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[3:]))
        elif cell.startswith("hidden:"):  # an exercise's check: its code folded in JupyterLab
            hidden = {"jupyter": {"source_hidden": True}, "tags": ["hide-input"]}
            nb.cells.append(nbformat.v4.new_code_cell(cell[7:], metadata=hidden))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    return nb


def build(name: str) -> Path:
    nb = notebook(name)
    # No widget state in the files: a plotly FigureWidget's state carries its 5 MB JavaScript bundle, and the
    # notebooks are re-run to be seen anyway (`cmdc-nb tour` keeps the state in its HTML).
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(HERE)}},
    ).execute()
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


# Notebooks whose stored outputs are a PostgreSQL run's: built only with CMDC_NB_TEAM_URL set (to a server
# that may create databases, e.g. `bash scripts/pg.sh start`'s), and otherwise left as they are.
NEEDS_POSTGRES = {"06_team_mode"}


if __name__ == "__main__":
    os.environ["CMDC_NB_OFFLINE"] = "1"  # the stored outputs are the offline models', whatever keys are set
    for name in sys.argv[1:] or list(SOURCES):
        if name in NEEDS_POSTGRES and not os.environ.get("CMDC_NB_TEAM_URL"):
            print(
                f"left {name} as it is: its outputs are a PostgreSQL run's; set CMDC_NB_TEAM_URL to build it"
            )
            continue
        print("built", build(name))
