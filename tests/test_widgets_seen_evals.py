"""EvalView as a user sees it, in real JupyterLab and headless Chromium (tests/support/seeing.py).

A notebook runs 12 cases with three offline models and a judge, and shows the view. In Light and Dark at
760 and 1280 px (High Contrast at 1280) the matrix must show as many ✓ and ✗ as the database holds, the
Pareto chart must draw three models, every text must read (≥ 4.5:1) and nothing may overflow. Then a user
clicks a failed cell: the case opens with both models' stored replies and the judge's reasons; and
"failures" leaves only the failing cases. Screenshots: ci-artifacts/screenshots/evals-<state>-<look>.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser import WAIT_MS
from seeing import LOOKS, look_name

pytestmark = pytest.mark.xdist_group("browser")

SUPPORT = Path(__file__).resolve().parent / "support"
NOTEBOOK = f"""
import os, sys, tempfile
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
sys.path.insert(0, {str(SUPPORT)!r})
import cmdc_nb
from cmdc_nb import accounts, evals
from cmdc_nb.widgets import EvalView
import eval_children as kids

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
kids.price_models(ws)
run = await evals.run_eval(kids.CASES[:12], kids.TASK, models=kids.MODELS, user=me,
                           scorers=[evals.numeric(), evals.judge("scripted/evq-judge", rubric="The sum is right.")])
results = run.results()
view = EvalView(run)
view.add_class("evals-seen")
view
"""
VIEW = ".evals-seen"


def look(lab: Any, state: str) -> None:
    errors_before = len(lab.console_errors)
    for theme, width in LOOKS:
        lab.view(theme, width)
        where = f"{state} in {theme} at {width}px"
        lab.page.locator(VIEW).scroll_into_view_if_needed()
        lab.page.wait_for_timeout(200)
        assert lab.low_contrast(VIEW) == [], where
        assert lab.overflow(VIEW) == [], where
        # the chart is drawn at a readable size: its model labels at least 9 px on screen
        sizes = lab.page.evaluate(
            "(sel) => [...document.querySelectorAll(sel + ' .cmdc-pareto-point text')]"
            ".map((t) => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)",
            VIEW,
        )
        assert len(sizes) == 3 and min(sizes) >= 9, (where, sizes)
        lab.shot(f"evals-{state}-{look_name(theme, width)}", VIEW)
    assert lab.console_errors[errors_before:] == []


def test_the_matrix_the_chart_a_click_and_the_failures(lab: Any) -> None:
    lab.open("evals_seen", [NOTEBOOK], done=f"{VIEW} .cmdc-eval-cell")
    page = lab.page
    counts = lab.kernel("print(int(results['passed'].sum()), int((~results['passed'].astype(bool)).sum()))")
    passed, failed = map(int, counts.split())
    assert page.locator(f"{VIEW} .cmdc-eval-cell.pass").count() == passed
    assert page.locator(f"{VIEW} .cmdc-eval-cell.fail").count() == failed
    assert [t.strip() for t in page.locator(f"{VIEW} .cmdc-eval-cell.fail").all_inner_texts()] == [
        "✗"
    ] * failed
    drawn = page.evaluate(
        "(sel) => [...document.querySelectorAll(sel + ' .cmdc-pareto-point')].map((g) => [g.dataset.model, "
        "g.querySelector('circle').getBoundingClientRect().width > 0])",
        VIEW,
    )
    assert drawn == [[m, True] for m in ["scripted/evq-good", "scripted/evq-fair", "scripted/evq-weak"]]
    look(lab, "matrix")

    # a failed cell, clicked: the case opens with both sides
    case = lab.kernel("print(results.query(\"model == 'scripted/evq-weak' and not passed\").iloc[0]['case'])")
    page.click(f"{VIEW} .cmdc-eval-cell[title^='{case} · scripted/evq-weak']")
    page.wait_for_selector(f"{VIEW} .cmdc-eval-side.fail[data-model='scripted/evq-weak']", timeout=WAIT_MS)
    sides = page.locator(f"{VIEW} .cmdc-eval-side")
    assert sides.count() == 2
    assert "wrong number" in sides.nth(0).inner_text() and "the number matches" in sides.nth(1).inner_text()
    reply = lab.kernel(
        "from cmdc_nb import sessions; r = results.query(\"model == 'scripted/evq-weak' and not passed\").iloc[0];"
        " print(sessions.list_messages(r['session_id'])[-1].content)"
    )
    assert reply in sides.nth(0).inner_text()
    assert page.locator(f"{VIEW} .cmdc-eval-cell.selected").count() == 1
    look(lab, "open")

    # failures only: the rows left are the failing cases, each still marked as stored
    page.click(f"{VIEW} .widget-toggle-buttons button:has-text('failures')")
    failing = int(lab.kernel("print(results[~results['passed'].astype(bool)]['case'].nunique())"))
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel + ' .cmdc-eval-case-label').length === n",
        arg=[VIEW, failing],
        timeout=WAIT_MS,
    )
    assert f"of {failing} failing cases" in page.locator(f"{VIEW} .cmdc-row .cmdc-stats").last.inner_text()
    assert lab.kernel("print(view.show.value)") == "failures"
