"""The DAG view as a user sees it, in real JupyterLab and headless Chromium (tests/support/seeing.py).

One notebook shows three runs of a release pipeline: one started with `stop_when_blocked=True` (as the
tour starts it), one whose driver waits in another cell, and one that failed; and a sign-off run waiting
for a person's step. A user approves both gates, retries the failed run and completes the person's step
(after a refused output) by clicking and typing in the page; each run must move on, the view must say so,
and the database must agree. In Light and Dark at 760 and 1280 px (High Contrast at 1280) every text must read (≥ 4.5:1), no
view may overflow its output area, node labels must stay ≥ 11 px, and the page may log no error.
Screenshots: ci-artifacts/screenshots/dag-<state>-<light|dark>-<width>.png."""

from __future__ import annotations

from typing import Any

import pytest
from browser import WAIT_MS
from seeing import LOOKS, look_name

pytestmark = pytest.mark.xdist_group("browser")

NOTEBOOK = """
import os, tempfile, asyncio
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
import cmdc_nb
from cmdc_nb import accounts
from cmdc_nb import workflows as wf
from cmdc_nb.widgets import DagView

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
release = wf.create_workflow(me, {
    "name": "Release v2",
    "input_schema": {"type": "object", "properties": {"version": {"type": "string", "default": "2.0.0"}}},
    "steps": [
        wf.step("build", "transform", name="Build", value="built {{ input.version }}"),
        wf.step("unit", "transform", name="Unit tests", depends_on="build", value="412 passed"),
        wf.step("e2e", "transform", name="E2E tests", depends_on="build", value="38 passed"),
        wf.step("docs", "transform", name="Docs", depends_on="build", value="docs built"),
        wf.step("ship", "approval", name="Ship it?", depends_on=["unit", "e2e", "docs"],
                title="Ship {{ input.version }} to production?", payload={"version": "{{ input.version }}"}),
        wf.step("deploy", "transform", name="Deploy", depends_on="ship", value="deployed"),
        wf.step("announce", "transform", name="Announce", depends_on="deploy", value="announced"),
    ]})
calls = {"n": 0}

@wf.step_function("seen.flaky_tests")
def flaky_tests() -> str:
    calls["n"] += 1
    if calls["n"] == 1:
        raise RuntimeError("the test database was not ready")
    return "412 passed"

flaky = wf.create_workflow(me, {"name": "Nightly", "steps": [
    wf.step("build", "transform", name="Build", value="built"),
    wf.step("tests", fn="seen.flaky_tests", name="Tests", depends_on="build"),
    wf.step("publish", "transform", name="Publish", depends_on="tests", value="published"),
]})
"""
BLOCKED = """
blocked = await wf.arun_workflow(release, input={"version": "2.0.1"}, stop_when_blocked=True)
view_blocked = DagView(blocked)
view_blocked.add_class("dag-blocked")
view_blocked.select("ship")
view_blocked
"""
DRIVEN = """
handle = wf.run_workflow(release, input={"version": "2.0.2"})  # its driver waits at the gate
while wf.get_workflow_run(handle.run_id).status.value != "waiting_approval":
    await asyncio.sleep(0.05)
view_driven = DagView(handle.run_id)
view_driven.add_class("dag-driven")
view_driven.select("ship")
view_driven
"""
FAILED = """
failed = await wf.arun_workflow(flaky)
view_failed = DagView(failed)
view_failed.add_class("dag-failed")
view_failed
"""
HAND = """
signoff = wf.create_workflow(me, {"name": "Sign-off", "steps": [
    wf.step("draft", "transform", name="Draft", value="release note 2.0"),
    {"id": "sign", "name": "Legal sign-off", "type": "external", "depends_on": ["draft"], "config": {
        "instructions": "Read the {{ steps.draft.output }} and sign it",
        "output_schema": {"type": "object", "required": ["signed_by"],
                          "properties": {"signed_by": {"type": "string", "default": "Ada"}}}}},
    wf.step("file", "transform", name="File it", depends_on="sign", value="{{ steps.sign.output.signed_by }}"),
]})
hand = await wf.arun_workflow(signoff, stop_when_blocked=True)  # waits for a person at "sign"
view_hand = DagView(hand, user=me)
view_hand.add_class("dag-hand")
view_hand.select("sign")
view_hand
"""
NEW = """
view_new = DagView(release)  # the workflow itself: a user starts a run from the view
view_new.add_class("dag-new")
view_new
"""
VIEWS = {
    ".dag-blocked": 7,
    ".dag-driven": 7,
    ".dag-failed": 3,
    ".dag-hand": 3,
}  # each view, and its number of nodes

# The size a node's label is drawn at on screen: its font size times the SVG's scale.
_LABEL_PX_JS = """
(sel) => [...document.querySelectorAll(sel + " text.cmdc-dag-label")]
  .map((t) => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)
"""


def node(view: str, step: str, status: str | None = None) -> str:
    return f".{view} g.cmdc-dag-node[data-step='{step}']" + (f"[data-status='{status}']" if status else "")


# JupyterLab sometimes asks which kernel to start for a notebook that names its kernel (when it opens
# before the kernel specs are loaded); a user clicks Select. The shared page does it for the notebook.
_ACCEPT_KERNEL_JS = """
new MutationObserver(() => {
  const dialog = document.querySelector(".jp-Dialog");
  if (dialog && /Select Kernel/.test(dialog.querySelector(".jp-Dialog-header")?.textContent || "")) {
    dialog.querySelector("button.jp-mod-accept")?.click();
  }
}).observe(document, { childList: true, subtree: true });
"""


@pytest.fixture(scope="module")
def dags(lab: Any) -> Any:
    lab.page.add_init_script(_ACCEPT_KERNEL_JS)
    lab.open("dag_seen", [NOTEBOOK, BLOCKED, DRIVEN, FAILED, HAND, NEW], done=".jp-Notebook")
    # cells outside the window are not drawn by JupyterLab until scrolled to: wait for them in the DOM
    lab.page.wait_for_selector(
        node("dag-blocked", "ship", "waiting_approval"), state="attached", timeout=WAIT_MS
    )
    lab.page.wait_for_selector(node("dag-failed", "tests", "failed"), state="attached", timeout=WAIT_MS)
    lab.page.wait_for_selector(".dag-driven button:has-text('Approve')", state="attached", timeout=WAIT_MS)
    lab.page.wait_for_selector(node("dag-hand", "sign", "waiting_input"), state="attached", timeout=WAIT_MS)
    lab.page.wait_for_selector(".dag-new button:has-text('Start run')", state="attached", timeout=WAIT_MS)
    return lab


def look(lab: Any, state: str) -> None:
    """Every DAG view in every look (theme and width): readable, inside its output area, labels ≥ 11 px."""
    errors_before = len(lab.console_errors)
    for theme, width in LOOKS:
        lab.view(theme, width)
        for view, nodes in VIEWS.items():
            where = f"{view} in {theme} at {width}px"
            lab.page.locator(view).scroll_into_view_if_needed()  # drawn only when in the window
            lab.page.wait_for_timeout(200)
            assert lab.low_contrast(view) == [], where
            assert lab.overflow(view) == [], where
            sizes = lab.page.evaluate(_LABEL_PX_JS, view)
            assert len(sizes) == nodes and min(sizes) >= 11, (where, sizes)
            lab.shot(f"dag-{state}-{view[5:]}-{look_name(theme, width)}", view)
    assert lab.console_errors[errors_before:] == []


def test_the_views_read_well_while_runs_wait_and_fail(dags: Any) -> None:
    # a gate waiting (buttons live), a run that failed (Retry offered), in every theme and width
    assert dags.page.locator(".dag-blocked button:has-text('Approve')").count() == 1
    assert dags.page.locator(".dag-failed button:has-text('Retry from failed step')").count() == 1
    look(dags, "waiting")


def test_a_person_completes_their_step_in_the_view_and_the_run_goes_on(dags: Any) -> None:
    page = dags.page
    hand = page.locator(".dag-hand")
    hand.scroll_into_view_if_needed()
    assert "waiting for input at sign" in page.locator(".dag-hand .cmdc-stats").inner_text()
    assert "Read the release note 2.0 and sign it" in hand.inner_text()  # rendered for the person
    box = page.locator(".dag-hand .cmdc-dag-output textarea")
    assert '"Ada"' in box.input_value()  # started from the step's output schema
    page.click(".dag-hand button:has-text('Take it up')")
    page.wait_for_selector(node("dag-hand", "sign", "running"), timeout=WAIT_MS)
    page.wait_for_selector(".dag-hand button:has-text('Take it up')", state="detached", timeout=WAIT_MS)
    box.fill('{"signed_by": 7}')  # the wrong type: refused, said next to what was typed
    page.click(".dag-hand button:has-text('Mark done')")
    page.wait_for_selector(".dag-hand :text(\"is not of type 'string'\")", timeout=WAIT_MS)
    assert box.input_value() == '{"signed_by": 7}'
    assert dags.kernel("print(wf.get_workflow_step(hand, 'sign').status.value)") == "running"
    box.fill('{"signed_by": "Grace"}')
    page.click(".dag-hand button:has-text('Mark done')")
    page.wait_for_selector(node("dag-hand", "file", "completed"), timeout=WAIT_MS)
    page.wait_for_selector(".dag-hand .cmdc-stats:has-text('completed · 3/3 steps')", timeout=WAIT_MS)
    stored = dags.kernel(
        "s = wf.get_workflow_step(hand, 'sign'); r = wf.get_workflow_run(hand);"
        " print(s.output['signed_by'], s.meta['completed_by'] == str(me.id), r.status.value, r.output)"
    )
    assert stored == "Grace True completed {'file': 'Grace'}"


def test_a_gate_approved_in_the_view_moves_a_stop_when_blocked_run_on(dags: Any) -> None:
    page = dags.page
    page.click(".dag-blocked button:has-text('Approve')")
    # the buttons go at once (no second decision), then the run goes on to the end
    page.wait_for_selector(".dag-blocked button:has-text('Approve')", state="detached", timeout=WAIT_MS)
    page.wait_for_selector(node("dag-blocked", "announce", "completed"), timeout=WAIT_MS)
    assert page.locator(".dag-blocked g.cmdc-dag-node[data-status='completed']").count() == 7
    # the run's own completion is its next event after its last step's: the line follows it
    page.wait_for_selector(".dag-blocked .cmdc-stats:has-text('completed · 7/7 steps')", timeout=WAIT_MS)
    assert "Step ship approved" in page.locator(".dag-blocked").inner_text()
    stored = dags.kernel(
        "print(wf.get_workflow_run(blocked).status.value, wf.get_workflow_step(blocked, 'ship').status.value)",
    )
    assert stored == "completed completed"


def test_a_gate_approved_in_the_view_moves_a_run_driven_elsewhere_on(dags: Any) -> None:
    page = dags.page
    page.click(".dag-driven button:has-text('Approve')")
    page.wait_for_selector(node("dag-driven", "announce", "completed"), timeout=WAIT_MS)
    # the run's own end is the driver's next transaction after its last step's: the line follows it
    page.wait_for_selector(".dag-driven .cmdc-stats:has-text('completed · 7/7 steps')", timeout=WAIT_MS)
    # the other cell's driver finished it; the view started none of its own
    stored = dags.kernel("print(handle.done() and handle.result().status.value, view_driven.handle)")
    assert stored == "completed None"


def test_a_failed_step_is_retried_from_the_view(dags: Any) -> None:
    page = dags.page
    page.click(".dag-failed button:has-text('Retry from failed step')")
    page.wait_for_selector(node("dag-failed", "publish", "completed"), timeout=WAIT_MS)
    assert page.locator(".dag-failed g.cmdc-dag-node[data-status='completed']").count() == 3
    assert "retry of run" in page.locator(".dag-failed .cmdc-stats").inner_text()
    stored = dags.kernel(
        "r = view_failed.run; print(r.retry_of_run_id == failed.id, r.status.value,"
        " wf.get_workflow_step(r, 'tests').status.value, calls['n'])",
    )
    assert stored == "True completed completed 2"
    look(dags, "finished")


def test_a_run_started_in_the_view_stops_at_its_gate_and_an_approval_finishes_it(dags: Any) -> None:
    page = dags.page
    page.locator(".dag-new").scroll_into_view_if_needed()
    # the start box offers the input schema's default, as a user would send it
    assert '"2.0.0"' in page.locator(".dag-new textarea").first.input_value()
    page.click(".dag-new button:has-text('Start run')")
    page.wait_for_selector(node("dag-new", "ship", "waiting_approval"), timeout=WAIT_MS)
    page.click(node("dag-new", "ship"))
    page.wait_for_selector(".dag-new :text('Ship 2.0.0 to production?')", timeout=WAIT_MS)
    page.click(".dag-new button:has-text('Approve')")
    page.wait_for_selector(node("dag-new", "announce", "completed"), timeout=WAIT_MS)
    assert page.locator(".dag-new g.cmdc-dag-node[data-status='completed']").count() == 7
    page.click(node("dag-new", "build"))
    page.wait_for_selector(".dag-new :text('built 2.0.0')", timeout=WAIT_MS)
    stored = dags.kernel("r = view_new.run; print(r.status.value, r.input)")
    assert stored == "completed {'version': '2.0.0'}"
