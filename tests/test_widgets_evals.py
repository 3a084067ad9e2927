"""EvalView in the kernel: the matrix says what the results say, a click opens that case for two models
with their stored transcripts and the scorers' reasons, the failures filter and the pager move through
the cases, the view follows a running eval, and the static picture carries the matrix and the chart."""

from __future__ import annotations

import asyncio
from typing import Any

import eval_children as kids  # tests/support: the offline models, cases and task
import pytest

from cmdc_nb import evals
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.models import User
from cmdc_nb.widgets import EvalView
from cmdc_nb.workspace import Workspace

SCORERS = [evals.numeric(), evals.judge("scripted/evq-judge", rubric="The sum is right.")]


def cells(view: EvalView) -> dict[tuple[str, str], Any]:
    """The matrix's cell buttons by (case, model), read from their tooltips as a person reads them."""
    out = {}
    for child in view.grid.children:
        tip = getattr(child, "tooltip", None)
        if tip and " · " in tip:
            case, rest = tip.split(" · ", 1)
            out[(case, rest.split(":", 1)[0])] = child
    return out


@pytest.fixture
def run(ws: Workspace, user: User) -> evals.EvalRun:
    kids.price_models(ws)
    return evals.run_eval(kids.CASES[:12], kids.TASK, models=kids.MODELS, scorers=SCORERS, user=user, ws=ws)


def test_the_matrix_marks_every_case_as_the_results_say(run: evals.EvalRun) -> None:
    view = EvalView(run)
    results = run.results()
    drawn = cells(view)
    assert len(drawn) == 36
    for row in results.itertuples():
        button = drawn[(row.case, row.model)]
        assert button.description == ("✓" if row.passed else "✗")
        assert ("pass" if row.passed else "fail") in button._dom_classes
    assert "completed · 36/36 case runs" in view.stats.value
    assert f"${run.cost_usd()}" in view.stats.value
    assert view.chart.value.count('class="cmdc-pareto-point"') == 3


def test_a_click_opens_the_case_for_two_models_with_transcripts_and_reasons(run: evals.EvalRun) -> None:
    view = EvalView(run)
    weak, good = kids.MODELS[2], kids.MODELS[0]
    failed = run.results().query("model == @weak and not passed").iloc[0]
    cells(view)[(failed.case, weak)].click()
    assert view.selected == (failed.case, weak)
    assert "selected" in cells(view)[(failed.case, weak)]._dom_classes  # redrawn, still marked
    shown = view.detail.value
    a, b = int(failed.inputs["a"]), int(failed.inputs["b"])
    # the failed model's side first, then a model that got it right (the compared one)
    assert shown.index(f"✗ {weak}") < shown.index(f"✓ {good}")
    assert f"{a} + {b} = {a + b + 1}. The answer is {a + b + 1}." in shown  # its stored reply
    assert f"{a} + {b} = {a + b}. The answer is {a + b}." in shown
    assert "wrong number" in shown and "the number matches" in shown  # the judge's reasons
    assert f"expected <code>{a + b}</code>" in shown

    view_cmp = EvalView(run, compare=kids.MODELS[1])
    view_cmp.select(failed.case, weak)
    assert f"{kids.MODELS[1]}</div>" in view_cmp.detail.value and f"✓ {good}" not in view_cmp.detail.value


def test_failures_only_and_the_pager(run: evals.EvalRun) -> None:
    view = EvalView(run, page_size=5)
    results = run.results()
    failing = sorted(set(results[~results["passed"].astype(bool)]["case"]))
    assert len(cells(view)) == 15 and "1–5 of 12 cases" in view.pager.children[1].value
    view.pager.children[2].click()  # ▶
    assert {c for c, _ in cells(view)} == {f"q{i:02d}" for i in range(5, 10)}
    view.show.value = "failures"
    assert {c for c, _ in cells(view)} == set(failing[:5])
    assert f"of {len(failing)} failing cases" in view.pager.children[1].value


async def test_the_view_follows_a_running_eval(ws: Workspace, user: User) -> None:
    kids.price_models(ws)
    slow = [kids.MODELS[0]]
    handle = evals.run_eval(
        kids.CASES[:8], kids.TASK, models=slow, scorers=[evals.numeric()], user=user, concurrency=1, ws=ws
    )
    view = EvalView(handle)
    assert any(b.description == "·" for b in cells(view).values())  # not run yet
    await handle
    for _ in range(100):  # the last case's event reaches the view's refresher on this loop
        if all(b.description == "✓" for b in cells(view).values()):
            break
        await asyncio.sleep(0.05)
    assert [b.description for b in cells(view).values()] == ["✓"] * 8
    assert "completed · 8/8" in view.stats.value
    view.close()


def test_the_static_picture_has_the_matrix_the_open_case_and_the_chart(run: evals.EvalRun) -> None:
    view = EvalView(run)
    case = run.results().iloc[0]["case"]
    view.select(case, kids.MODELS[0])
    page = view._snapshot_page()
    results = run.results()
    assert page.count('<td class="pass">✓</td>') == int(results["passed"].sum())
    assert page.count('<td class="fail">✗</td>') == int((~results["passed"].astype(bool)).sum())
    assert page.count('class="cmdc-pareto-point"') == 3
    assert "cmdc-eval-detail" in page and "<button" not in page


def test_bad_arguments_are_refused(run: evals.EvalRun, ws: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="is not one of this eval's models"):
        EvalView(run, compare="scripted/nope")
    with pytest.raises(InvalidInputError, match="at least 1"):
        EvalView(run, page_size=0)
    view = EvalView(run)
    with pytest.raises(InvalidInputError, match="no case 'q99'"):
        view.select("q99", kids.MODELS[0])
