"""The cells of 04_cost_analytics: a team lead's questions about six weeks of agent spend.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# Cost analytics: what the agents cost, and where the month is heading

A team lead's questions about the agents' spend, one section each, answered from the cost records
cmdc_nb keeps: every model call is priced from its token counts and your price table, exactly.

**What you'll learn**

1. which model, project and notebook cell cost most;
2. the daily cost, stacked by model;
3. the week-over-week trend;
4. the cost per 1,000 tokens and per successful call;
5. what retries cost — and what they do not;
6. spend against a monthly budget: the burn rate and the month-end projection;
7. the soft budget's warnings at 50 % and 80 %;
8. how a hard budget refuses a call before it is sent.

**Prerequisites**: cmdc_nb with its `notebook` extra (`bash scripts/lab.sh` sets it all up); no API key —
everything here runs offline, in a throw-away workspace. [00_tour](00_tour.ipynb) is a gentler start.

**Time to run**: about a minute, most of it recording six weeks of usage one call at a time.

**The dates are pinned.** The usage is six whole weeks of a small team's work, Monday 2 February to
Sunday 15 March 2026, and *today*, for every figure below, is `TODAY` = Monday 16 March 2026, 00:00 UTC:
the notebook shows the same numbers on whatever day you run it.

Next: [05 · Inside the agent loop](05_inside_the_agent_loop.ipynb). Reference:
[docs/costs.md](../docs/costs.md) (pricing, records, frames, budgets).""",
    SETUP,
    """md:## The data: six weeks of usage, priced from tokens

Prices are USD per million tokens, in the workspace's price table (`cmdc_nb.pricing`: your own prices
first, then litellm's bundled ones). A cost record keeps a call's tokens, and its cost is computed from
them: tokens × price, an exact `Decimal`.""",
    """import datetime as dt
import pandas as pd
from cmdc_nb import budgets, costs, frames, pricing, sessions
from cmdc_nb.widgets.report import bar_chart, formatted, line_chart, usd

TODAY = dt.datetime(2026, 3, 16, tzinfo=dt.UTC)     # "now" for every figure: Mon 16 March 2026, 00:00
FIRST_DAY = dt.datetime(2026, 2, 2, tzinfo=dt.UTC)  # six whole weeks before it, each Monday to Sunday

prices = {  # USD per million tokens: input, output
    "anthropic/claude-sonnet-4-5": ("3.00", "15.00"),
    "openai/gpt-4o": ("2.50", "10.00"),
    "openai/gpt-4o-mini": ("0.15", "0.60"),
    "gemini/gemini-2.0-flash": ("0.10", "0.40"),
}
for model, (per_in, per_out) in prices.items():
    pricing.set_model_price(model, input_per_million_usd=per_in, output_per_million_usd=per_out)
table = [(p.model, p.input_per_million_usd, p.output_per_million_usd) for p in pricing.list_model_prices()]
formatted(pd.DataFrame(table, columns=["model", "input, per million", "output, per million"]),
          money=["input, per million", "output, per million"])
"""
    + CHECK,
    """md:Before any of it, the team lead set a **soft monthly budget** of \\$140 (February's work came to
about \\$115), warning at 50 %, 80 % and 100 %. A soft budget only warns: each warning is a
`budget_warning` event, published once per threshold and month as the cost that crosses it is recorded.
We keep them as they come (section 7 shows them).""",
    """from cmdc_nb.events import topics

monthly = budgets.create_budget(name="Team monthly", limit_usd="140", period="monthly", user=me,
                                hard_limit=False)  # soft: it warns, and stops nothing
warnings = []  # the budget's warnings, as published


def keep_warnings(event):
    if event.type == "budget_warning":
        warnings.append(event)


ws.bus.subscribe(topics.user_costs(me.id), keep_warnings)
print(f"{monthly.name}: {usd(monthly.limit_usd)} a month, warns at {monthly.warn_at} %")
"""
    + CHECK,
    """md:Four projects (sessions), each calling its models from a notebook cell — named by the notebook's path
and the cell, as `costs.current_notebook_cell()` records it when a call is made from JupyterLab. Calls
grow by a tenth each week, weekends are quiet, and on Tuesday 10 March an evaluation sweep sent 300
documents through the largest model. Only token counts are generated: `record_cost` prices each call.""",
    """import random, uuid

projects = {name: sessions.create_session(me, name=name)
            for name in ("Parser rewrite", "Docs site", "Support triage", "Data pipeline")}
SONNET, GPT4O, MINI, FLASH = prices  # the four models' names
work = [  # project, the cell that calls the model, its models and their shares, calls a working day,
          # tokens in (from, to), tokens out (from, to)
    ("Parser rewrite", "parser/refactor.ipynb:In[7]", {SONNET: 1}, 30, (15_000, 50_000), (800, 3_000)),
    ("Parser rewrite", "parser/review.ipynb:In[4]", {GPT4O: 1}, 10, (8_000, 30_000), (400, 1_500)),
    ("Docs site", "docs/drafts.ipynb:In[3]", {GPT4O: 0.7, MINI: 0.3}, 12, (3_000, 12_000), (500, 2_000)),
    ("Support triage", "support/triage.ipynb:In[5]", {MINI: 1}, 10, (1_000, 4_000), (100, 400)),
    ("Data pipeline", "pipeline/extract.ipynb:In[8]", {FLASH: 1}, 14, (2_000, 8_000), (200, 800)),
]
SWEEP = ("Parser rewrite", "evals/sweep.ipynb:In[14]", SONNET, (20_000, 40_000), (1_500, 3_000))
rng = random.Random(2026)


def calls_on(day, week):
    \"\"\"One day's calls: (project, cell, model, tokens in, tokens out).\"\"\"
    busy = (0.25 if day.weekday() >= 5 else 1.0) * (1 + 0.10 * week)  # quiet weekends; +10 % a week
    calls = []
    for project, cell, models, per_day, tokens_in, tokens_out in work:
        for _ in range(round(per_day * busy * rng.uniform(0.8, 1.2))):
            model = rng.choices(list(models), weights=list(models.values()))[0]
            calls.append((project, cell, model, rng.randint(*tokens_in), rng.randint(*tokens_out)))
    if day.date() == dt.date(2026, 3, 10):  # the evaluation sweep
        project, cell, model, tokens_in, tokens_out = SWEEP
        for _ in range(300):
            calls.append((project, cell, model, rng.randint(*tokens_in), rng.randint(*tokens_out)))
    return calls


for n in range((TODAY - FIRST_DAY).days):
    day = FIRST_DAY + dt.timedelta(days=n)
    calls = calls_on(day, week=n // 7)
    minutes = sorted(rng.randint(8 * 60, 19 * 60) for _ in calls)  # office hours, in order
    for (project, cell, model, tokens_in, tokens_out), minute in zip(calls, minutes):
        costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(),
                          provider=model.split("/")[0], model=model, tokens_in=tokens_in,
                          tokens_out=tokens_out, session=projects[project], notebook_cell=cell,
                          incurred_at=day + dt.timedelta(minutes=minute))  # no cost: it is priced here

spend = frames.costs_frame(user=me, since=FIRST_DAY, until=TODAY)
print(f"{len(spend):,} calls from {spend['day'].min():%a %d %b} to {spend['day'].max():%a %d %b}, "
      f"{spend['priced'].sum():,} of them priced: {usd(spend['cost_usd'].sum())} in all")
"""
    + CHECK,
    """md:Each cost is the call's tokens times the model's prices, exact to the trillionth of a dollar (shown
to the cent below, or to four decimals under a cent):""",
    """call = spend.iloc[0]
price = pricing.get_price(call["model"])
tokens_in, tokens_out = int(call["tokens_in"]), int(call["tokens_out"])
per_in, per_out = price.input_per_million_usd, price.output_per_million_usd
by_hand = (tokens_in * per_in + tokens_out * per_out) / 1_000_000
print(f"{call['model']}: {tokens_in:,} tokens in × {usd(per_in)} / M "
      f"+ {tokens_out:,} out × {usd(per_out)} / M = ${by_hand}")
print(f"recorded: ${call['cost_usd'].normalize()}, the same: {by_hand == call['cost_usd']}")
print(f"shown as {usd(by_hand)}")
"""
    + CHECK,
    """md:## 1. Which model, project and notebook cell cost most?

`frames.by_model`, `frames.by_session` and `frames.top_n` cut the frame; `formatted` writes the money for
reading and `bar_chart` draws a picture (SVG, so it shows on GitHub and nbviewer too).""",
    """by_model = frames.by_model(spend).rename(columns={"rows": "calls"})
by_model["share"] = by_model["cost_usd"].astype(float) / float(spend["cost_usd"].sum())
formatted(by_model, money=["cost_usd"], percent=["share"])
"""
    + CHECK,
    """names = {str(s.id): name for name, s in projects.items()}
by_project = frames.by_session(spend).rename(columns={"rows": "calls"})
by_project.insert(0, "project", by_project.pop("session_id").astype(str).map(names))
bar_chart(by_project, x="project", y="cost_usd", horizontal=True, labels=True,
          title="Cost by project, 2 Feb – 15 Mar 2026")
"""
    + CHECK,
    """top_cells = frames.top_n(spend, "notebook_cell", n=5)
bar_chart(top_cells, x="notebook_cell", y="cost_usd", horizontal=True, labels=True,
          title="The five costliest notebook cells")
"""
    + CHECK,
    """md:Claude Sonnet is most of the bill, through the parser project's agent cell — and one cell of an
evaluation notebook, run once, cost more than the whole docs project.

## 2. Daily cost, stacked by model""",
    """daily = frames.by_day(spend, by="model")
bar_chart(daily, x="day", y="cost_usd", color="model", title="Daily cost by model")
"""
    + CHECK,
    """md:Working days cost about the same, weekends little; Tuesday 10 March stands out — the evaluation
sweep.

## 3. Week over week

`frames.by_week` sums per week (Monday to Sunday) and gives each week's change over the one before.""",
    """weekly = frames.by_week(spend)
display(bar_chart(frames.by_week(spend, by="model"), x="week", y="cost_usd", color="model", labels=True,
                  title="Weekly cost by model (weeks from Monday)", height=340))
formatted(weekly, money=["cost_usd"], change=["change"])
"""
    + CHECK,
    """md:The underlying trend is a steady rise — about a tenth a week as the team leans on the agents — and
the week of the sweep nearly doubled.

## 4. Cost per 1,000 tokens and per successful call

`frames.unit_costs` divides exactly. A cost record is one call that completed: an attempt that failed
leaves none, so the cost per call is per *successful* call.""",
    """unit = frames.unit_costs(spend, by="model")
display(formatted(unit, money=["cost_usd", "usd_per_1k_tokens", "usd_per_call"]))
bar_chart(unit, x="model", y="usd_per_call", horizontal=True, labels=True,
          title="Cost per successful call")
"""
    + CHECK,
    """md:A Claude Sonnet call costs about three times a GPT-4o one and over a hundred times a Gemini Flash one:
per 1,000 tokens the gap is the price table's, per call it also counts how much each job sends.

## 5. What retries cost

A rate-limited request (HTTP 429) is refused before the model does any work, and providers do not bill
it. cmdc_nb retries it (`RetryPolicy`: exponential backoff, the provider's Retry-After honoured) and
records **one** call, with its `retry_count`, and one cost: the attempt that answered. An attempt that
fails *after* the model began answering (a timeout, a dropped stream) is different: the provider may
bill the tokens it processed, but sends no usage for a broken stream, so nothing is recorded for it.

Four requests to an offline model priced like GPT-4o: one answered at once, one after two rate limits,
one after a timeout mid-answer, one rate-limited until the retries ran out.""",
    """from cmdc_nb.errors import ProviderError
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import RetryPolicy, Script, Turn

answer = Turn("Summary.", usage=(12_000, 800))  # 12,000 tokens in, 800 out
limited = Turn(error="rate_limit", retry_after=0.05)
cut_off = Turn("Summary of document three, so", error="timeout", error_after=2)  # times out mid-answer
flaky = Script([answer,                         # document one
                limited, limited, answer,       # two
                cut_off, answer,                # three
                limited, limited, limited, limited], name="gpt-4o-like")  # four
pricing.set_model_price(flaky.model, input_per_million_usd="2.50", output_per_million_usd="10.00")
retried = sessions.create_session(me, name="Retries")
agent = Agent(model=flaky.model, session=retried, retry=RetryPolicy(retries=3, backoff_s=0.05))
for doc in ("one", "two", "three", "four"):
    try:
        await agent.prompt(f"Summarise document {doc}")
    except ProviderError as exc:
        print(f"document {doc}: gave up after {flaky.served} requests in all — {exc.kind}")
retry_calls = frames.calls_frame(session=retried)
shown = ["status", "retry_count", "tokens_in", "tokens_out", "cost_usd", "error_type"]
formatted(retry_calls[shown], money=["cost_usd"])
"""
    + CHECK,
    """billed = frames.costs_frame(session=retried)
answered = int((retry_calls["status"] == "completed").sum())
retries = int(retry_calls["retry_count"].sum())
total, first = billed["cost_usd"].sum(), billed["cost_usd"].iloc[0]  # the first was answered at once
print(f"requests sent: {flaky.served} for {len(retry_calls)} calls, {retries} of them retries")
print(f"cost records: {len(billed)}, one per answered call: {usd(total)}")
print(f"without a retry, {answered} such calls cost {usd(answered * first)}: retries added "
      f"{usd(total - answered * first)}")
print(f"per successful call: {usd(total / answered)}")
"""
    + CHECK,
    """md:So in money a rate-limit retry costs nothing; it costs time (the backoff), and a call that runs out of
retries fails without an answer. To see where retries happen in your own records, `frames.calls_frame`
has `retry_count` and `error_type` per call.

## 6. The month against the budget: burn rate and month-end projection

`budgets.budget_status(budget, at=…)` says where a budget stood at a moment; `budgets.budget_forecast`
adds the burn rate (spent ÷ days elapsed in the period) and the spend it projects for the period's end.""",
    """status = budgets.budget_status(monthly, at=TODAY)
forecast = budgets.budget_forecast(monthly, at=TODAY)
days = (TODAY - forecast.period_start).days
print(f"{monthly.name}, {status.period_key}: {usd(status.spent_usd)} of {usd(status.limit_usd)} spent "
      f"({status.percent} %) in the {days} days to {TODAY:%a %d %b}")
print(f"burn rate: {usd(forecast.burn_rate_usd_per_day)} a day")
print(f"at that rate: {usd(forecast.projected_usd)} by the end of March, "
      f"{forecast.projected_percent} % of the budget")
if forecast.limit_at:
    print(f"the budget runs out on {forecast.limit_at:%a %d %b}")
"""
    + CHECK,
    """march = frames.by_day(spend[spend["day"] >= forecast.period_start.replace(tzinfo=None)])
one_day = dt.timedelta(days=1)
lines = pd.concat([  # spent by each day's end (the next midnight), then the projection from TODAY
    pd.DataFrame({"at": [forecast.period_start, *(march["day"] + one_day)], "series": "spent",
                  "usd": [0.0, *march["cost_usd"].astype(float).cumsum()]}),
    pd.DataFrame({"at": [TODAY, forecast.period_end], "series": "projected at the burn rate",
                  "usd": [float(status.spent_usd), float(forecast.projected_usd)]}),
])
limit = float(monthly.limit_usd)
marks = [  # where this month's warnings were sent
    (dt.datetime.fromisoformat(p["incurred_at"]), p["spent_usd"], f"{p['threshold_percent']} %")
    for p in (e.payload for e in warnings) if p["period"] == status.period_key
]
if forecast.limit_at:
    marks.append((forecast.limit_at, limit, f"runs out {forecast.limit_at:%b %d}"))
marks.append((forecast.period_end, forecast.projected_usd, f"{usd(forecast.projected_usd)} by Mar 31"))
line_chart(lines, x="at", y="usd", color="series", dashed=["projected at the burn rate"],
           rules={f"budget {usd(limit)}": limit, "80 %": 0.8 * limit, "50 %": 0.5 * limit},
           marks=marks, x_range=(forecast.period_start, forecast.period_end),
           title="March: spend against the budget")
"""
    + CHECK,
    """md:Half the budget went by the 10th (the sweep), 80 % by the 13th, and at the month's pace so far the
budget runs out in a few days and March ends well over it. The straight line counts the sweep as if it
happened again in the second half of the month: the second exercise asks what March looks like without it.

## 7. The soft budget's warnings

Each warning was published as the cost that crossed its threshold was recorded — one per threshold
and month — and `ws.bus.subscribe(...)` (as above) hands them to your code as they come. Here they
are, as a team lead would read them:""",
    r"""from IPython.display import Markdown


sent = [e.payload for e in warnings]
seen = pd.DataFrame({
    "month": [p["period"] for p in sent],
    "threshold": [f"{p['threshold_percent']} %" for p in sent],
    "crossed": [f"{dt.datetime.fromisoformat(p['incurred_at']):%a %d %b, %H:%M} UTC" for p in sent],
    "spent then": [p["spent_usd"] for p in sent],
})
display(formatted(seen, money=["spent then"]))


def dollars(amount):
    return usd(amount).replace("$", "\\$")  # in Markdown a bare $ starts LaTeX


Markdown("\n\n".join(
    f"> ⚠️ **{monthly.name}: {p['threshold_percent']} % of the {dollars(monthly.limit_usd)} budget "
    f"spent** by {dt.datetime.fromisoformat(p['incurred_at']):%a %d %b} ({dollars(p['spent_usd'])}). "
    f"At this month's burn rate March ends at {dollars(forecast.projected_usd)}."
    for p in sent if p["period"] == status.period_key
))
"""
    + CHECK,
    """md:February warned at 50 % and 80 % and stayed under the budget; March has warned twice by the 13th.
A warning per threshold and month, not per call: the budget remembers which it has sent.

## 8. A hard budget refuses a call before it is sent

A *hard* budget adds a call's worst case — its prompt counted with a tokenizer plus all of `max_tokens`
of output — to what was spent, and refuses the call if that would cross the limit: nothing reaches
the model.""",
    """from cmdc_nb.errors import BudgetExceededError

pricey = Script(["A long answer."], name="pricey")
pricing.set_model_price(pricey.model, input_per_million_usd="1000", output_per_million_usd="1000")
capped = sessions.create_session(me, name="Capped experiment")
budgets.create_budget(name="experiment cap", limit_usd="0.01", session=capped, hard_limit=True)
agent = Agent(model=pricey.model, session=capped, max_tokens=4000)
try:
    await agent.prompt("Write me a novel")
except BudgetExceededError as exc:
    print("refused before sending:", type(exc).__name__)
print("requests that reached the model:", pricey.served)
"""
    + CHECK,
    """md:## The same, to explore

`CostDashboard` draws these cuts live, with filters for the dates, the user and the project. Here it is set
to March so far, so its cumulative chart is the month against the budget line:""",
    """from cmdc_nb.widgets import CostDashboard

dashboard = CostDashboard(me, by="model")
dashboard.since.value, dashboard.until.value = dt.date(2026, 3, 1), dt.date(2026, 3, 15)
dashboard""",
    """md:## Recap

- Costs are recorded per call from its tokens and the price table, exact; `frames.costs_frame` reads
  them into pandas for a date range you choose.
- `frames.by_model`, `by_session`, `top_n`, `by_day`, `by_week` and `unit_costs` answer *who, what,
  when and how much per unit*; `widgets.report.formatted` and `bar_chart` / `line_chart` show them.
- A rate-limit retry is not billed: one call, one cost record, however many attempts.
- `budgets.budget_forecast` gives the burn rate and the month-end projection; a soft budget warns once
  per threshold and month, a hard one refuses a call before it is sent.

## Exercises

**1.** Which project costs the most *per successful call*? Use `frames.unit_costs` with
`by="session_id"` and the `names` mapping from section 1, and set `costliest_per_call` to the project's
name. The hidden cell after it checks your answer.""",
    """costliest_per_call = None  # your answer: a project's name""",
    """hidden:if costliest_per_call is None:
    print("Set costliest_per_call above, then run this cell.")
else:
    _unit = frames.unit_costs(spend, by="session_id")
    _want = names[str(_unit.iloc[0]["session_id"])]
    assert costliest_per_call == _want, f"not {costliest_per_call!r}: sort by usd_per_call, not cost_usd"
    print(f"Right: {_want}, at {usd(_unit.iloc[0]['usd_per_call'])} a call.")
"""
    + CHECK,
    """md:**2.** The evaluation sweep was a one-off. Project March's month-end spend *without* it — the sweep's
cell is `evals/sweep.ipynb:In[14]` — at the burn rate of the rest, and set `projected_without_sweep`
(in USD). Does March still go over the budget?""",
    """projected_without_sweep = None  # your answer, in USD""",
    """hidden:if projected_without_sweep is None:
    print("Set projected_without_sweep above, then run this cell.")
else:
    _rest = spend["notebook_cell"] != "evals/sweep.ipynb:In[14]"
    _march = spend[(spend["day"] >= "2026-03-01") & _rest]
    _want = _march["cost_usd"].sum() / 15 * 31
    assert abs(float(projected_without_sweep) - float(_want)) < 0.01, f"expected about {usd(_want)}"
    _verdict = "still over" if _want > monthly.limit_usd else "within"
    print(f"Right: {usd(_want)} — {_verdict} the {usd(monthly.limit_usd)} budget.")
"""
    + CHECK,
]
