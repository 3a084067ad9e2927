"""The cells of 07_evaluate_models: three models on a small labelled task, compared on quality, exact
cost and latency — the matrix, the Pareto chart, the cost per correct answer, one failure examined — and
how to send the runs' traces to a tracing tool.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# Evaluate models: which one is worth its price?

A support team wants a model to route incoming tickets to the right queue — **billing**, **bug**,
**feature** or **account**. Three candidates differ in price. This notebook runs all three on the same
labelled tickets, scores every answer, and puts quality, exact cost and latency side by side.

**What you'll learn**

1. a dataset of labelled cases, a task (an agent per case) and scorers — one of them a judge model;
2. `run_eval`: every case with every model, each stored as a session with its exact cost;
3. the case × model matrix, the per-model summary with confidence intervals, and the Pareto chart;
4. the cost per *correct* answer, which is what a cheap model really costs;
5. one failure examined, transcript and judge's reason;
6. a budget that stops the eval before the call that would cross it, and resuming it;
7. sending every case's trace to a tracing tool (Jaeger, Phoenix, Langfuse, Honeycomb).

**Prerequisites**: cmdc_nb with its `notebook` extra (`bash scripts/lab.sh` sets it all up). No API key:
the three models are offline ones that answer like real models of different quality, so the numbers
are the same on every run. With keys set, the last section runs the same eval on real providers.

**Time to run**: under a minute.

Reference: [docs/evals.md](../docs/evals.md).""",
    SETUP,
    """md:## The candidates and their prices

Three offline models stand in for a large, a mid-size and a small model. Each reads a ticket and answers
with one label, by its own rules — the large one reads the whole ticket, the small one guesses from the
first keyword it sees. Prices are USD per million tokens, as a provider's price list would give them;
cmdc_nb prices every call from its token counts, exactly.""",
    """import re
from cmdc_nb import evals, pricing, sessions
from cmdc_nb.providers import Script, Turn

RULES = {  # label: words that point to it, strongest first
    "billing": ["invoice", "charged", "refund", "payment", "price", "card"],
    "bug": ["error", "crash", "broken", "fails", "500", "blank"],
    "feature": ["could you add", "would love", "wish", "support for", "please add"],
    "account": ["password", "login", "log in", "2fa", "email address", "delete my account"],
}


def ticket_of(messages):
    return str(messages[-1]["content"]).split("Ticket:", 1)[-1].lower()


def reader(depth):
    \"\"\"A model that weighs the first `depth` words of each label's list over the whole ticket.\"\"\"
    def respond(messages):
        text = ticket_of(messages)
        score = {label: sum(text.count(w) * (len(words) - i) for i, w in enumerate(words[:depth]))
                 for label, words in RULES.items()}
        return Turn(max(score, key=score.get) if max(score.values()) else "bug")
    return respond


def first_keyword(messages):
    text = ticket_of(messages)
    hits = [(text.find(w), label) for label, words in RULES.items() for w in words[:2] if w in text]
    return Turn(min(hits)[1] if hits else "feature")


large, mid, small = Script(reader(6), name="large"), Script(reader(3), name="mid"), Script(first_keyword, name="small")
MODELS = [large.model, mid.model, small.model]
for model, (per_in, per_out) in zip(MODELS, [("3.00", "15.00"), ("0.40", "1.60"), ("0.05", "0.20")]):
    pricing.set_model_price(model, input_per_million_usd=per_in, output_per_million_usd=per_out)
MODELS
"""
    + CHECK,
    """md:## The labelled tickets

Twenty-four real-looking tickets, each with the queue a person chose. A dataset can come from a list like
this, a DataFrame, or a JSONL file; every case has `inputs`, an `expected` answer and free `metadata`.""",
    """TICKETS = [
    ("I was charged twice for March, please refund the second payment", "billing"),
    ("The export button gives a 500 error since this morning", "bug"),
    ("Could you add dark mode to the mobile app?", "feature"),
    ("I can't log in after changing my password", "account"),
    ("Where do I download last month's invoice?", "billing"),
    ("The dashboard is blank after the update, broken for everyone here", "bug"),
    ("Would love a way to export charts as SVG", "feature"),
    ("Please delete my account and all my data", "account"),
    ("My card was declined but the payment still shows as pending", "billing"),
    ("The app crashes when I open settings on Android", "bug"),
    ("I wish the search supported exact phrases", "feature"),
    ("How do I change the email address on my account?", "account"),
    ("The price on the invoice doesn't match the pricing page", "billing"),
    ("Uploading a CSV fails with an error about encoding", "bug"),
    ("Please add support for SSO with Okta", "feature"),
    ("2FA codes from my phone are rejected at login", "account"),
    ("Login page shows an error, then charges my card?!", "billing"),
    ("Could you add an API for the reports? The current export is broken for big files", "feature"),
    ("After resetting my password the app crashes on start", "bug"),
    ("I'd like a refund, the feature I paid for never worked", "billing"),
    ("Support for Excel files would be great, CSV import fails on them", "feature"),
    ("My account is locked after too many login attempts", "account"),
    ("The weekly email shows the wrong totals", "bug"),
    ("Can I pay by bank transfer instead of card?", "billing"),
]
tickets = evals.dataset(
    [{"id": f"T{n:02d}", "inputs": {"ticket": text}, "expected": label, "metadata": {"length": len(text)}}
     for n, (text, label) in enumerate(TICKETS, 1)],
    name="ticket routing",
)
tickets.frame().head(4)
"""
    + CHECK,
    """md:## The task and the scorers

The **task** is an agent factory: for each case and model, an agent with this system prompt is sent the
ticket. The **scorers** judge its reply: `exact` compares it with the label; the **judge** is a fourth
model that grades each answer against a rubric and says why — its calls are stored with the case and
its cost is booked apart from the task's.""",
    """router = evals.agent_task(
    "Ticket: {ticket}",
    name="route-ticket",
    system_prompt="Route the support ticket to one queue: billing, bug, feature or account. "
                  "Answer with the queue's name only.",
    prompt_mode="none",  # only this system prompt: no working directory, no tool list
    max_tokens=8,
)


def grade(messages):
    text = str(messages[-1]["content"])
    reference = re.search(r"Reference answer: (\\w+)", text).group(1)
    answer = re.search(r"<answer>\\n(.*)\\n</answer>", text, re.S).group(1).strip().lower()
    if answer == reference:
        return Turn('{"score": 1, "reason": "the queue the team would pick"}')
    return Turn(f'{{"score": 0, "reason": "this reads as a {reference} ticket, not {answer}"}}')


judge_model = Script(grade, name="judge").model
pricing.set_model_price(judge_model, input_per_million_usd="1.00", output_per_million_usd="4.00")
scorers = [evals.exact(), evals.judge(judge_model, rubric="The queue is the one a support lead would pick.")]
scorers
"""
    + CHECK,
    """md:## Run it

`run_eval` runs every case with every model — four at a time here — and returns at once in a notebook:
`await` it. Each case × model is a stored session holding the prompt, the reply and the exact cost, like
any chat; the eval itself is a workflow run, so a killed notebook resumes it where it stopped.""",
    """run = await evals.run_eval(tickets, router, models=MODELS, scorers=scorers, user=me, concurrency=4)
print(run.status, "-", len(run.results()), "case runs")
"""
    + CHECK,
    """md:## The matrix

One row per ticket, one column per model: ✓ where the answer matched the label. Tickets near the top
are the easy ones; the ones only the large model gets right are the reason it exists.""",
    """results = run.results()
matrix = (results.assign(mark=results["passed"].map({True: "✓", False: "✗"}))
          .pivot(index="case", columns="model", values="mark")[MODELS])
matrix.insert(0, "ticket", [t[:60] for t, _ in TICKETS])
matrix.insert(1, "label", [label for _, label in TICKETS])
matrix.style.set_uuid("matrix").map(lambda v: "color:#1a7f37;font-weight:bold" if v == "✓" else
                 "color:#cf222e;font-weight:bold" if v == "✗" else "")
"""
    + CHECK,
    """md:The same matrix, live: **EvalView** draws it as buttons — click a cell to read that case's two
transcripts side by side with each scorer's reason, switch to *failures* to see only the cases some model
got wrong — with the Pareto chart under it. It follows an eval while it runs; a reader without a kernel
sees its static picture.""",
    """from cmdc_nb.widgets import EvalView

view = EvalView(run)
view.select("T06", small.model)  # as a click on that cell would
view""",
    """md:## Quality, cost and latency, per model

`summary()` gives each model's mean score with a 95 % bootstrap interval (seeded: the same every run),
its pass rate, its exact cost — the task's and the judge's — the cost per case and per **correct**
answer, and p50/p95 latency. `pareto` marks the models no other beats on both cost and quality.""",
    """from cmdc_nb.widgets.report import formatted, usd

summary = run.summary()
shown = summary[["cases", "mean_score", "ci_low", "ci_high", "pass_rate", "cost_usd", "judge_cost_usd", "pareto"]].copy()
shown["per 1,000 cases"] = summary["cost_per_case_usd"] * 1000
shown["per 1,000 correct"] = summary["cost_per_correct_usd"] * 1000
formatted(shown.round({"mean_score": 3, "ci_low": 3, "ci_high": 3}), percent=["pass_rate"],
          money=["cost_usd", "judge_cost_usd", "per 1,000 cases", "per 1,000 correct"])
"""
    + CHECK,
    """md:## The Pareto chart

Each model at its cost per case and mean score, with the 95 % interval as an error bar; the dotted line
is the front. A model below the line is paying for quality it does not deliver.""",
    """run.pareto_chart()""",
    """front = summary[summary["pareto"]].sort_values("cost_per_case_usd")
print("on the front, cheapest first:", ", ".join(front.index))
print("dominated:", ", ".join(summary[~summary["pareto"]].index) or "none — each is cheaper or better than the others")
"""
    + CHECK,
    """md:## What a correct answer costs

A cheap model that is often wrong costs more per *correct* answer than its price suggests — and every
wrong routing costs a person's time besides. Here is the arithmetic, exactly (Decimals, not floats):""",
    """for model in MODELS:
    row = summary.loc[model]
    print(f"{model:15} {row['correct']:>2}/{row['cases']} right   a case: ${row['cost_per_case_usd']:.8f}   "
          f"a correct answer: ${row['cost_per_correct_usd']:.8f}   "
          f"(+{(row['cost_per_correct_usd'] / row['cost_per_case_usd'] - 1):.0%})")
print("the whole eval, judge included: $" + str(run.cost_usd()))
"""
    + CHECK,
    """md:## One failure, examined

The small model's mistakes, and the first one in full: the ticket, the answer, the judge's reason, and
the stored conversation — the case's session, which you could also open in a `Chat`, fork, or export as
a trace.""",
    """misses = results[(results["model"] == small.model) & ~results["passed"]]
print(len(misses), "misses:", ", ".join(misses["case"]))
miss = misses.iloc[0]
print("ticket:  ", miss["inputs"]["ticket"])
print("answered:", miss["output"], "| expected:", miss["expected"])
print("judge:   ", miss["reason_judge"])
for m in sessions.list_messages(miss["session_id"]):
    print(f"  [{m.role.value}] {m.content}")
"""
    + CHECK,
    """md:## A budget, and going on after it

`budget=` caps what an eval may spend — tasks and judges together. Before each call, what the eval has
recorded plus that call's worst case (its prompt, and all of `max_tokens` out) must fit; the call that
would cross the budget is never sent, and the eval stops there. `resume_eval` goes on with a larger
budget, without running or paying for a finished case again.""",
    """capped = await evals.run_eval(tickets, router, models=[large.model], scorers=[evals.exact()], user=me,
                              budget="0.0015", concurrency=1, name="capped")
done = capped.results()
print(capped.status, "-", int((done["status"] == "completed").sum()), "of", len(done), "cases ran;",
      "spent $" + str(capped.cost_usd()), "of $0.0015")
print(done[done["status"] == "failed"]["error"].iloc[0])

more = await evals.resume_eval(capped.run_id, budget="0.05")
print(more.status, "-", len(more.results()), "cases, $" + str(more.cost_usd()), "in all")
"""
    + CHECK,
    """md:## Every case as a trace

Each case is a session, so each is a trace in the OpenTelemetry GenAI conventions (`invoke_agent` over
`chat <model>` spans, with tokens and the exact cost). With the `traces` extra installed
(`pip install 'cmdc-nb[traces]'`) and `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at your collector — Jaeger,
Arize Phoenix, Langfuse and Honeycomb all take OTLP — one loop sends the whole eval:

```python
from cmdc_nb import traces
for session_id in run.results()["session_id"]:
    traces.export_trace(session_id)
```

Here the spans of one case go to an in-memory exporter instead, to show what a tracing tool receives:""",
    """try:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:
    print("install the traces extra to export traces: pip install 'cmdc-nb[traces]'")
else:
    from cmdc_nb import traces
    exporter = InMemorySpanExporter()
    traces.export_trace(miss["session_id"], exporter=exporter)
    for span in exporter.get_finished_spans():
        print(f"{span.name:22} tokens in/out {span.attributes.get('gen_ai.usage.input_tokens', '')}/"
              f"{span.attributes.get('gen_ai.usage.output_tokens', '')}  cost {span.attributes.get('cmdc_nb.cost_usd', '')}")
"""
    + CHECK,
    """md:## With real providers

The same eval runs on real models when their keys are set (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`,
`GEMINI_API_KEY`, …): only the model names change, and litellm's price list prices the calls. Add
`cassettes="tapes/"` to record every call, and a re-run replays them: no call sent, the same scores.
This cell runs the first six tickets on the models whose keys are set, and says so when none is.""",
    """import os
from cmdc_nb.providers import RetryPolicy
from cmdc_nb.providers.cassette import _has_key

CANDIDATES = ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash"]
real = [m for m in CANDIDATES if _has_key(m)] if os.environ.get("CMDC_NB_OFFLINE") != "1" else []
if real:
    live_router = evals.agent_task("Ticket: {ticket}", name="route-ticket-live", system_prompt=router.options["system_prompt"],
                                   prompt_mode="none", max_tokens=8, retry=RetryPolicy(retries=0), request_timeout_s=60)
    live = await evals.run_eval(tickets[:6], live_router, models=real, scorers=[evals.exact()], user=me, name="live")
    display(live.summary()[["mean_score", "pass_rate", "cost_usd", "cost_per_correct_usd", "latency_p50_s"]])
else:
    print("no provider key set (or CMDC_NB_OFFLINE=1): the offline models above are the demo")
""",
    """md:## Where next

- [docs/evals.md](../docs/evals.md): every scorer, function and workflow tasks, kills and resumes,
  cassettes, and running cases on worker processes (`executor="workers"` on PostgreSQL).
- [04 · Cost analytics](04_cost_analytics.ipynb): the eval's costs are ordinary cost records — the same
  frames and budgets apply.
- [01 · Chat and approvals](01_chat_and_approvals.ipynb): open any case's session in a `Chat` to read it,
  fork it and try another prompt.""",
]
