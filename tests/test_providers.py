"""The provider layer: tools' schemas, scripted models through litellm, the one retry layer, typed
errors, and record/replay cassettes that reproduce a run exactly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from cmdc_nb import agents, pricing, sessions
from cmdc_nb.errors import (
    ContextOverflowError,
    InvalidInputError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
)
from cmdc_nb.kernel import Agent, ToolContext, ToolError, ToolResult, tool
from cmdc_nb.providers import (
    Cassette,
    ProviderRequest,
    RetryPolicy,
    Script,
    StreamPart,
    Turn,
    call,
    stream_completion,
)
from cmdc_nb.providers._litellm import classify
from cmdc_nb.store.models import User
from cmdc_nb.workspace import Workspace

# --- tools ------------------------------------------------------------------------------------------


def test_a_tool_schema_comes_from_the_signature_and_the_docstring() -> None:
    @tool
    def search(
        query: str, limit: int = 5, kinds: list[Literal["py", "md"]] | None = None, *, ctx: ToolContext
    ) -> str:
        """Search the project.

        Args:
            query: what to look for
            limit: at most this many
                results (wrapped line)
            kinds: file kinds
        """
        return query

    assert search.name == "search" and search.description == "Search the project."
    props = search.parameters["properties"]
    assert props["query"] == {"description": "what to look for", "type": "string"}
    assert (
        props["limit"]["default"] == 5
        and props["limit"]["description"] == "at most this many results (wrapped line)"
    )
    assert "ctx" not in props and search.context_param == "ctx"
    assert search.parameters["required"] == ["query"]
    assert search.schema()["function"]["name"] == "search"

    @tool(name="sphinx_style", approval_class="high")
    def other(path: str) -> str:
        """Read a file.

        :param path: where it is
        """
        return path

    assert other.parameters["properties"]["path"]["description"] == "where it is"
    assert other.requires_approval and other.policy() == {"approval_class": "high", "side_effects": []}


def test_arguments_are_validated_and_coerced() -> None:
    @tool
    def add(a: int, b: int = 1) -> int:
        "Add."
        return a + b

    assert add.validate({"a": "2"}) == {"a": 2, "b": 1}
    with pytest.raises(ToolError, match=r"invalid arguments for add: a: Field required; c: Extra inputs"):
        add.validate({"c": 1})


def test_bad_tool_definitions_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="name"):
        tool(name="has space")(lambda: None)
    with pytest.raises(InvalidInputError, match=r"\*args"):

        @tool
        def f(*args: int) -> None:
            "No."

    def fine() -> None:
        "Fine."

    with pytest.raises(InvalidInputError, match="approval_class"):
        tool(approval_class="extreme")(fine)


async def test_sync_tools_run_off_the_loop_thread_and_results_are_wrapped() -> None:
    @tool
    def where() -> dict[str, Any]:
        "Which thread."
        return {"thread": threading.current_thread().name}

    ctx = ToolContext(agent_id="a", session_id=None, working_dir=".", user_data={})
    result = await where.invoke({}, ctx)
    assert json.loads(result.content)["thread"] != threading.current_thread().name
    assert ToolResult.of(None).content == "" and ToolResult.of([1, "x"]).content == '[1, "x"]'


# --- scripted models and the retry layer ----------------------------------------------------------------


async def test_a_scripted_turn_streams_text_thinking_and_tool_calls_through_litellm() -> None:
    script = Script(
        [Turn("Hello there.", thinking="Let me think.", tool_calls=[call("add", a=1, b=2)], usage=(10, 5))]
    )
    parts: list[StreamPart] = []
    done = await stream_completion(
        ProviderRequest(script.model, [{"role": "user", "content": "hi"}]), on_part=parts.append
    )
    assert [p.kind for p in parts] == ["thinking", "text", "text", "tool_call", "tool_call"]
    assert (done.text, done.thinking, done.finish_reason) == ("Hello there.", "Let me think.", "tool_calls")
    assert [(c.id, c.name, dict(c.arguments)) for c in done.tool_calls] == [
        ("call_1_add", "add", {"a": 1, "b": 2})
    ]
    assert (done.usage.input, done.usage.output) == (10, 5)


async def test_retries_honour_retry_after_and_stop_after_the_policy() -> None:
    script = Script([Turn(error="rate_limit", retry_after=0.02), Turn(error="server_error"), "finally"])
    seen: list[tuple[int, float, str]] = []
    done = await stream_completion(
        ProviderRequest(script.model, [{"role": "user", "content": "hi"}]),
        on_part=lambda p: None,
        retry=RetryPolicy(retries=2, backoff_s=0.001),
        on_retry=lambda a, d, e: seen.append((a, d, e.kind)),
    )
    assert done.text == "finally" and done.attempts == 3
    assert seen == [(1, 0.02, "rate_limit"), (2, 0.002, "server_error")]
    again = Script([Turn(error="rate_limit", retry_after=0.01)], repeat_last=True)
    with pytest.raises(RateLimitedError) as err:
        await stream_completion(
            ProviderRequest(again.model, []), on_part=lambda p: None, retry=RetryPolicy(retries=1)
        )
    assert err.value.retry_after == 0.01 and again.served == 2


@pytest.mark.parametrize(
    ("kind", "cls", "retryable"),
    [
        ("timeout", ProviderTimeoutError, True),
        ("context_overflow", ContextOverflowError, False),
        ("authentication", ProviderError, False),
        ("bad_request", ProviderError, False),
        ("unavailable", ProviderError, True),
    ],
)
async def test_provider_errors_are_typed(kind: str, cls: type[ProviderError], retryable: bool) -> None:
    script = Script([Turn(error=kind)], repeat_last=True)
    with pytest.raises(cls) as err:
        await stream_completion(
            ProviderRequest(script.model, []), on_part=lambda p: None, retry=RetryPolicy(retries=0)
        )
    assert (err.value.kind, err.value.retryable, err.value.model) == (kind, retryable, script.model)
    assert "litellm." not in str(err.value)


def test_classify_reads_status_codes_and_headers() -> None:
    class Weird(Exception):
        status_code = 503
        headers: ClassVar[dict[str, str]] = {"retry-after-ms": "1500"}

    err = classify(Weird("busy"), "openai/x")
    assert (err.kind, err.retryable, err.retry_after) == ("unavailable", True, 1.5)
    assert classify(TimeoutError(), "m").kind == "timeout"
    assert classify(ConnectionResetError(), "m").kind == "connection"


async def test_a_failure_mid_stream_restarts_the_message_cleanly() -> None:
    script = Script([Turn("partial words here", error="server_error", error_after=2), "whole answer"])
    agent = Agent(model=script.model, retry=RetryPolicy(retries=1, backoff_s=0.001))
    got: list[Any] = []
    agent.events.subscribe(got.append)
    assert await agent.prompt("hi") == "whole answer"
    kinds = [e.type for e in got if e.type in ("message_start", "message_delta", "retry")]
    assert kinds == [
        "message_start",
        "message_delta",
        "message_delta",
        "retry",
        "message_start",
        "message_delta",
        "message_delta",
    ]


async def test_malformed_tool_arguments_come_back_as_an_error_result() -> None:
    from cmdc_nb.providers.scripted import ScriptedCall

    @tool
    def add(a: int, b: int) -> int:
        "Add."
        return a + b

    script = Script([Turn(tool_calls=[ScriptedCall("add", raw_arguments='{"a": 1,')]), "sorry"])
    agent = Agent(model=script.model, tools=[add])
    assert await agent.prompt("go") == "sorry"
    assert agent.messages[2]["content"].startswith("add: arguments are not valid JSON")


def test_import_cmdc_nb_kernel_does_not_import_litellm() -> None:
    code = "import sys, cmdc_nb.kernel, cmdc_nb.providers; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- record / replay ------------------------------------------------------------------------------------


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return {"pi": "3.14159"}.get(key, "unknown")


def _transcript(agent: Agent) -> list[dict[str, Any]]:
    return [dict(m) for m in agent.messages]


async def _run_with(
    ws: Workspace, user: User, model: str, cassette: Cassette
) -> tuple[Agent, list[str], Any]:
    s = sessions.create_session(user, name=f"tape {cassette.mode}", ws=ws)
    agent = Agent(
        model=model,
        tools=[lookup],
        session=s,
        ws=ws,
        cassette=cassette,
        retry=RetryPolicy(retries=2, backoff_s=0.001),
    )
    got: list[Any] = []
    agent.events.subscribe(got.append)
    await agent.prompt("What is pi?")
    calls = sorted(agents.list_agent_calls(s, ws=ws).entries, key=lambda c: c.started_at)
    return agent, [e.type for e in got], calls


async def test_a_replayed_cassette_reproduces_transcript_usage_and_cost_exactly(
    ws: Workspace, user: User, tmp_path: Path
) -> None:
    script = Script(
        [
            Turn(error="rate_limit", retry_after=0.001),
            Turn(
                "Looking it up.",
                thinking="pi is a key",
                tool_calls=[call("lookup", key="pi")],
                usage=(1234, 56),
            ),
            Turn("Pi is 3.14159.", usage=(1400, 9)),
        ],
        name="tape-model",
    )
    pricing.set_model_price(script.model, input_per_million_usd="2.5", output_per_million_usd="10", ws=ws)
    tape_path = tmp_path / "tapes" / "pi.json"
    recorded, rec_events, rec_calls = await _run_with(
        ws, user, script.model, Cassette(tape_path, mode="record")
    )
    assert script.served == 3
    doc = json.loads(tape_path.read_text())
    assert doc["format"] == "cmdc_nb.cassette/1" and [bool(e["error"]) for e in doc["entries"]] == [
        True,
        False,
        False,
    ]
    assert doc["entries"][1]["cost_usd"] == "0.003645"  # 1234 x 2.5 + 56 x 10, per million

    # No key, no script: replay serves the recorded answers (the script would have nothing left).
    replayed, rep_events, rep_calls = await _run_with(
        ws, user, script.model, Cassette(tape_path, mode="replay")
    )
    assert script.served == 3
    assert _transcript(replayed) == _transcript(recorded)
    assert rep_events == rec_events
    assert [(c.status, c.tokens_in, c.tokens_out, c.cost_usd, c.retry_count) for c in rep_calls] == [
        (c.status, c.tokens_in, c.tokens_out, c.cost_usd, c.retry_count) for c in rec_calls
    ]
    assert [c.cost_usd for c in rep_calls] == [Decimal("0.003645"), Decimal("0.00359")]
    assert replayed.usage == recorded.usage and replayed.cost_usd == recorded.cost_usd == Decimal("0.007235")


async def test_replay_refuses_a_different_request_unless_not_strict(tmp_path: Path) -> None:
    script = Script(["recorded answer"])
    tape = tmp_path / "t.json"
    assert (
        await Agent(model=script.model, cassette=Cassette(tape, mode="record")).prompt("question one")
        == "recorded answer"
    )
    with pytest.raises(ProviderError, match="differs from the one recorded"):
        await Agent(model=script.model, cassette=Cassette(tape, mode="replay")).prompt("another question")
    loose = Agent(model=script.model, cassette=Cassette(tape, mode="replay", strict=False))
    assert await loose.prompt("another question") == "recorded answer"
    with pytest.raises(ProviderError, match="no more recorded calls"):
        await loose.prompt("and more")


async def test_auto_mode_records_offline_models_once_then_replays(tmp_path: Path) -> None:
    script = Script(["first"])
    tape = tmp_path / "auto.json"
    assert not Cassette(tape).replays(script.model)
    assert await Agent(model=script.model, cassette=Cassette(tape)).prompt("q") == "first"
    assert Cassette(tape).replays(script.model)
    assert await Agent(model=script.model, cassette=Cassette(tape)).prompt("q") == "first"
    assert script.served == 1
    # A real provider with no key in the environment replays.
    assert Cassette(tape).replays("openai/gpt-4o-mini") is (
        not bool(__import__("os").environ.get("OPENAI_API_KEY"))
    )


def test_a_malformed_cassette_is_a_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(InvalidInputError, match="cassette"):
        Cassette(bad, mode="replay").entries()
    with pytest.raises(InvalidInputError, match="auto, record, replay"):
        Cassette(bad, mode="sometimes")  # type: ignore[arg-type]


async def test_waiting_turns_do_not_share_a_script_cursor_badly() -> None:
    # Two agents on one script take turns in request order: the script is a queue, not per agent.
    script = Script(["a", "b"])
    one, two = Agent(model=script.model), Agent(model=script.model)
    assert sorted(await asyncio.gather(one.prompt("x"), two.prompt("y"))) == ["a", "b"]
