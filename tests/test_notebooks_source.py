"""The committed notebooks are what `notebooks/build.py` writes from `notebooks/cells/`: a cell edited in
one place and not the other fails here, so the notebooks a reader opens never drift from their source."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build()


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, bool]]:
    return [
        (c.cell_type, c.source, bool(c.metadata.get("jupyter", {}).get("source_hidden"))) for c in nb.cells
    ]


@pytest.mark.parametrize("name", sorted(build.SOURCES))
def test_the_committed_notebook_is_what_its_cells_build(name: str) -> None:
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert cells(committed) == cells(build.notebook(name)), (
        f"notebooks/{name}.ipynb differs from notebooks/cells/{build.SOURCES[name]}.py:"
        f" run `.venv/bin/python notebooks/build.py {name}`"
    )


def test_every_committed_notebook_has_its_cells_and_each_cell_module_a_notebook() -> None:
    on_disk = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert on_disk == set(build.SOURCES)
    modules = {p.stem for p in (NOTEBOOKS / "cells").glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(build.SOURCES.values())


def test_a_changed_cell_is_caught() -> None:
    """The comparison above can fail: one character changed in a cell is a difference."""
    name = "00_tour"
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    committed.cells[1].source += " "
    assert cells(committed) != cells(build.notebook(name))


def test_the_team_notebook_stores_a_postgresql_run() -> None:
    # what a reader without a server sees is what the team run gives, not the cells' "skipped" lines
    nb = nbformat.read(NOTEBOOKS / "06_team_mode.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "skipped — no PostgreSQL" not in shown and "No PostgreSQL" not in shown
    assert "deployed by Grace" in shown
    assert "06_team_mode" in build.NEEDS_POSTGRES


def test_nbval_compares_at_least_four_in_five_code_cells_of_every_notebook() -> None:
    """A cell whose output is compared (`# NBVAL_CHECK_OUTPUT`) fails CI when the code stops doing what
    the notebook says; the others only have to run."""
    shares = {}
    for name in build.SOURCES:
        code = [
            c for c in nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells if c.cell_type == "code"
        ]
        shares[name] = (sum("# NBVAL_CHECK_OUTPUT" in c.source for c in code), len(code))
    compared, total = (sum(s[i] for s in shares.values()) for i in (0, 1))
    assert compared / total >= 0.8, shares
    assert all(c / n >= 0.7 for c, n in shares.values()), shares  # none far behind the rest
