"""Offline models, a labelled dataset and tasks for the eval tests, and a child-process entry point.

Three scripted "students" add two numbers: `evq-good` always right, `evq-fair` right on 7 cases in 10,
`evq-weak` on 4 in 10 — decided by the numbers, so every run scores the same. `evq-judge` grades like a
careful judge: it reads the reference answer and the answer from the request and compares the numbers.
Imported by the tests (which registers the models and the task) and run as a script in a child process:
`python tests/support/eval_children.py execute <db-url> <home> <run-id>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from typing import Any

import cmdc_nb
from cmdc_nb import evals
from cmdc_nb.providers import Script, Turn

DELAY = float(os.environ.get("EVQ_DELAY", "0"))
MODELS = ["scripted/evq-good", "scripted/evq-fair", "scripted/evq-weak"]
QUALITY = {"evq-good": 10, "evq-fair": 7, "evq-weak": 4}
PRICES = {
    "scripted/evq-good": ("3.00", "15.00"),
    "scripted/evq-fair": ("0.50", "1.50"),
    "scripted/evq-weak": ("0.10", "0.40"),
}


def right(a: int, b: int, quality: int) -> bool:
    return (a * 7 + b * 3) % 10 < quality


def student(name: str) -> Script:
    quality = QUALITY[name]

    def respond(messages: list[dict[str, Any]]) -> Turn:
        a, b = map(int, re.findall(r"-?\d+", str(messages[-1]["content"]))[:2])
        answer = a + b if right(a, b, quality) else a + b + 1
        return Turn(f"{a} + {b} = {answer}. The answer is {answer}.", delay=DELAY)

    return Script(respond, name=name)


def judge_respond(messages: list[dict[str, Any]]) -> Turn:
    text = str(messages[-1]["content"])
    ref = re.search(r"Reference answer: (-?\d+)", text)
    ans = re.search(r"<answer>\n(.*)\n</answer>", text, re.DOTALL)
    got = re.findall(r"-?\d+", ans.group(1)) if ans else []
    ok = bool(ref and got and got[-1] == ref.group(1))
    return Turn(
        json.dumps({"score": 1 if ok else 0, "reason": "the number matches" if ok else "wrong number"})
    )


SCRIPTS = [student(n) for n in QUALITY]
JUDGE = Script(judge_respond, name="evq-judge")
CASES = [
    {"id": f"q{i:02d}", "inputs": {"a": i, "b": (i * 5) % 13}, "expected": str(i + (i * 5) % 13)}
    for i in range(50)
]
TASK = evals.agent_task("What is {a} + {b}?", name="evq-add", max_tokens=64)


def expected_right(model: str, first: int = len(CASES)) -> int:
    """How many of the first `first` cases `model` answers right."""
    q = QUALITY[model.removeprefix("scripted/")]
    return sum(right(c["inputs"]["a"], c["inputs"]["b"], q) for c in CASES[:first])


def price_models(ws: Any) -> None:
    from cmdc_nb import pricing

    for model, (i, o) in PRICES.items():
        pricing.set_model_price(model, input_per_million_usd=i, output_per_million_usd=o, ws=ws)
    pricing.set_model_price(
        "scripted/evq-judge", input_per_million_usd="1.00", output_per_million_usd="2.00", ws=ws
    )


def _execute(url: str, home: str, run_id: str) -> None:
    from cmdc_nb.workflows import engine

    ws = cmdc_nb.connect(url, home=home)
    print("STARTED", flush=True)
    asyncio.run(engine.execute_workflow_run(run_id, max_concurrency=4, ws=ws))
    print("DONE", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "execute":
        _execute(*sys.argv[2:5])
