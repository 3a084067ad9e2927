"""The CMDC kernel's last pieces: `<status>`/`<title>` taken out of a streamed reply as events, large
tool-call arguments cut before old turns are summarised (ArgTruncator), and MemoryFlush's
three-argument `extract_fn(messages, ctx, opts)`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel import Agent
from cmdc_nb.kernel.compaction import truncate_tool_args
from cmdc_nb.kernel.stream_tags import MAX_TAG_CHARS, TagExtractor, strip_tags
from cmdc_nb.plugins import MemoryFlush
from cmdc_nb.providers import Script, Turn, call


def events_of(agent: Agent) -> list[Any]:
    got: list[Any] = []
    agent.events.subscribe(lambda env: got.append(env.event))
    return got


def fed_in_pieces(text: str, seed: int) -> tuple[str, list[tuple[str, str]]]:
    """The text fed to one extractor in random pieces, as a stream splits it."""
    rng = random.Random(seed)
    ext, shown, found, i = TagExtractor(), [], [], 0
    while i < len(text):
        n = rng.randint(1, 7)
        part, tags = ext.feed(text[i : i + n])
        shown.append(part)
        found += tags
        i += n
    part, tags = ext.feed("", final=True)
    return "".join(shown) + part, found + tags


REPLIES = [
    "<status>Reading the logs</status>The build failed at step 3.",
    "<title>Release 2.4 checklist</title>Here is the list:\n- tests\n- lint",
    "a < b and c <stat d",  # a '<' that never becomes a tag stays
    "```html\n<title>My page</title>\n```\nThat is the page's title element.",  # code is left alone
    "<status>unclosed and going on " + "x" * (MAX_TAG_CHARS + 10),
    "Before <status>one</status> middle <status>two</status> after<title>T</title>",
    "`inline` then ``` fenced <status>kept</status> ``` and <status>taken</status>.",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_tags_come_out_the_same_however_the_stream_splits_them(reply: str) -> None:
    whole = strip_tags(reply)
    for seed in range(40):
        assert fed_in_pieces(reply, seed) == whole


def test_what_is_taken_and_what_is_left() -> None:
    assert strip_tags(REPLIES[0]) == ("The build failed at step 3.", [("status", "Reading the logs")])
    assert strip_tags(REPLIES[2]) == (REPLIES[2], [])
    assert strip_tags(REPLIES[3]) == (REPLIES[3], [])  # HTML shown in a fence keeps its <title>
    assert strip_tags(REPLIES[4]) == (REPLIES[4], [])  # too long to be a tag: it is text
    text, tags = strip_tags(REPLIES[5])
    assert text == "Before  middle  after" and tags == [("status", "one"), ("status", "two"), ("title", "T")]
    text, tags = strip_tags(REPLIES[6])
    assert "<status>kept</status>" in text and tags == [("status", "taken")]


async def test_a_streamed_reply_raises_status_and_title_events_and_stores_clean_text() -> None:
    reply = "<title>Deploying release 2.4.1 to production, carefully, with every check green</title><status>Checking</status>All green."
    script = Script([Turn(reply, chunk_delay=0.0)])
    agent = Agent(model=script.model, stream_tags=True)
    got = events_of(agent)
    answer = await agent.prompt("deploy")
    assert answer == "All green."
    assert agent.messages[-1]["content"] == "All green."
    shown = "".join(e.delta for e in got if e.type == "message_delta")
    assert shown == "All green."
    titles = [e.title for e in got if e.type == "title_generated"]
    assert (
        titles == [agent.title]
        and len(agent.title or "") == 60
        and agent.title.startswith("Deploying release")
    )
    assert [e.text for e in got if e.type == "status_update"] == ["Checking"]
    assert next(e for e in got if e.type == "response_complete").text == "All green."


async def test_without_stream_tags_the_reply_is_left_as_written() -> None:
    reply = "<status>Checking</status>ok"
    agent = Agent(model=Script([reply]).model)
    got = events_of(agent)
    assert await agent.prompt("x") == reply
    assert not [e for e in got if e.type in ("status_update", "title_generated")] and agent.title is None
    with pytest.raises(InvalidInputError) as err:
        Agent(model=Script(["x"]).model, stream_tags="yes")
    assert err.value.field == "stream_tags"


def test_large_tool_arguments_are_cut_and_stay_valid_json() -> None:
    big = "line\n" * 5000
    messages = [
        {"role": "user", "content": "write it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {
                        "name": "write_file",
                        "arguments": json.dumps({"path": "x.py", "content": big}),
                    },
                },
                {
                    "id": "b",
                    "type": "function",
                    "function": {"name": "execute", "arguments": json.dumps({"command": "ls"})},
                },
                {"id": "c", "type": "function", "function": {"name": "raw", "arguments": "not json " * 500}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "ok"},
    ]
    before = json.dumps(messages)
    out = truncate_tool_args(messages, limit=100)
    assert json.dumps(messages) == before  # the conversation itself is never changed
    assert out[0] is messages[0] and out[2] is messages[2]
    calls = out[1]["tool_calls"]
    args = json.loads(calls[0]["function"]["arguments"])
    assert args["path"] == "x.py" and args["content"].startswith("line\n" * 20)
    assert f"[{len(big) - 100} more characters cut before summarising]" in args["content"]
    assert calls[1] is messages[1]["tool_calls"][1]  # small arguments untouched
    assert (
        calls[2]["function"]["arguments"].startswith("not json")
        and len(calls[2]["function"]["arguments"]) < 200
    )


async def test_compaction_summarises_cut_arguments_and_keeps_them_whole_on_disk(tmp_path: Path) -> None:
    big = "x" * 50_000
    script = Script([Turn(tool_calls=[call("save", text=big)]), "saved", "A summary.", "ok"])

    def save(text: str) -> str:
        """Save a text."""
        return "saved"

    agent = Agent(model=script.model, tools=[save], working_dir=str(tmp_path), compact_arg_chars=500)
    await agent.prompt("save a big text")
    await agent.prompt("and now?")
    await agent.compact(keep_last=1)
    summary_request = script.requests[-1]
    sent = summary_request[-1]["content"]
    assert big not in sent and "more characters cut before summarising" in sent and len(sent) < 5_000
    [kept] = list((tmp_path / ".cmdc" / "conversation_history").glob("*.json"))
    assert big in kept.read_text()  # the evicted turns are kept whole


async def test_memory_flush_takes_the_seeds_three_argument_extractor(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def extract(messages: list[dict[str, Any]], ctx: Any, opts: dict[str, Any]) -> list[str]:
        seen.update(user=ctx.user_data.get("user"), opts=opts, n=len(messages))
        return [f"{ctx.user_data['user']} likes tea"]

    def older(messages: list[dict[str, Any]], opts: dict[str, Any]) -> list[str]:
        seen["older_opts"] = opts
        return ["from the older form"]

    for fn in (extract, older):
        agent = Agent(
            model=Script(["ok", "ok"]).model,
            plugins=[MemoryFlush(extract_fn=fn, max_facts_per_flush=3)],
            working_dir=str(tmp_path),
            user_data={"user": "Ada"},
        )
        await agent.prompt("hello")
        await agent.prompt("again")
        await agent.compact(keep_last=1, summary="s")
    assert seen["user"] == "Ada" and seen["n"] >= 3
    assert (
        seen["opts"] == seen["older_opts"] == {"file": "MEMORY.md", "max_facts_per_flush": 3, "dedupe": True}
    )
    assert (tmp_path / "MEMORY.md").read_text() == "- Ada likes tea\n- from the older form\n"
