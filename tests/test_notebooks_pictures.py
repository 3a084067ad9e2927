"""What a reader without a kernel sees of the committed notebooks: exported to HTML as nbconvert exports
them (no widget state, as they are saved), every notebook shows pictures — SVG charts and the widgets'
snapshots — and no widget shows as a bare text repr such as `<ChatWidget agent=… messages=0>`. (06, two
kernels sharing a PostgreSQL workspace, shows what each kernel printed: it has no picture to give.)"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
# A widget's text line, shown when its picture is missing.
TEXT_REPR = re.compile(
    r"<(ChatWidget|CostDashboard|DagView|PlanView|ApprovalQueue|IndexBuilder|ActivityFeed|EvalView)\b"
)


def exported(name: str) -> BeautifulSoup:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return BeautifulSoup(html, "html.parser")


@pytest.mark.parametrize("name", NAMES)
def test_every_notebook_shows_pictures_in_its_static_html(name: str) -> None:
    page = exported(name)
    outputs = page.select(".jp-OutputArea-output")
    pictures = [
        o for o in outputs if o.find("svg") or o.find("img") or o.select_one(".cmdc-snapshot, .cmdc-panel")
    ]
    if name == "06_team_mode":  # two kernels sharing one database: what it shows is what each one printed
        assert len(outputs) >= 5, len(outputs)
    else:
        assert pictures, f"{name} shows no picture in its static HTML"
    shown = " ".join(o.get_text(" ") for o in outputs)
    assert not TEXT_REPR.search(shown), TEXT_REPR.search(shown)


def test_the_eval_notebook_shows_the_matrix_and_the_pareto_chart_without_a_kernel() -> None:
    """07's static HTML: the case × model matrix with a mark per case and model, as the run scored them,
    and the Pareto chart with its three models, drawn as SVG (no JavaScript)."""
    page = exported("07_evaluate_models")
    matrices = page.select("table.cmdc-eval-matrix")
    assert len(matrices) == 1
    marks = [td.get_text(strip=True) for td in matrices[0].select("td.pass, td.fail")]
    assert (
        len(marks) == 24 * 3 and marks.count("✗") == 20
    )  # the 21, 16 and 15 right of 24 the notebook prints
    points = page.select("svg.cmdc-pareto g.cmdc-pareto-point")
    assert [p["data-model"] for p in points] == ["scripted/large", "scripted/mid", "scripted/small"]
    assert sum(p["data-front"] == "true" for p in points) == 3
