"""Streaming to the chat widget: a turn that streams 10,000 tokens, with a ChatWidget watching it and
without one. Reports how many widget updates were sent (the widget coalesces to ≈25 a second) and how
long the turn took each way (medians of 5, alternating), into bench/RESULTS.md (`chat-stream` markers).

Run: `.venv/bin/python bench/bench_chat_stream.py [tokens]`. The model is scripted and streams one word
per chunk with a 0.1 ms pause (a real yield to the loop between chunks, as a network stream has).
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section

from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn
from cmdc_nb.widgets import ChatWidget

RUNS = 5
HERE = Path(__file__).resolve().parent


async def one(tokens: int, widget: bool) -> tuple[float, int, int]:
    text = " ".join(f"w{i}" for i in range(tokens))
    script = Script([Turn(text, chunk_delay=0.0001)])
    agent = Agent(model=script.model)
    counted = [0]
    agent.events.subscribe(lambda env: env.type == "message_delta" and counted.__setitem__(0, counted[0] + 1))
    chat = ChatWidget(agent) if widget else None
    t = time.perf_counter()
    await agent.prompt("stream")
    took = time.perf_counter() - t
    return took, (chat.updates_sent if chat else 0), counted[0]


async def main(tokens: int) -> str:
    await one(100, True)  # warm up litellm and the renderer
    plain, watched, updates, deltas = [], [], [], 0
    for _ in range(RUNS):
        took, _, deltas = await one(tokens, False)
        plain.append(took)
        took, sent, _ = await one(tokens, True)
        watched.append(took)
        updates.append(sent)
    p, wt = statistics.median(plain), statistics.median(watched)
    table = (
        f"### Streaming to the chat widget: one turn of {tokens:,} streamed tokens (median of {RUNS})\n\n"
        "| | turn (s) | widget updates sent | deltas streamed |\n|---|---:|---:|---:|\n"
        f"| no widget | {p:.2f} | — | {deltas:,} |\n"
        f"| ChatWidget watching | {wt:.2f} | {statistics.median(updates):.0f} | {deltas:,} |\n\n"
        f"The widget adds {wt / p:.2f}× to the turn and sends {statistics.median(updates) / wt:.1f} updates a second "
        f"(target ≤ 25) instead of one per delta. Machine: {platform.system().lower()}, Python {platform.python_version()}."
    )
    write_section("chat-stream", table)
    print(table)
    return table


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
