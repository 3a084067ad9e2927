"""The offline models served without litellm: the same conversation through litellm
(`CMDC_NB_OFFLINE_VIA_LITELLM=1`) and in-process emits the same events and stores the same rows; a
scripted round, an offline embedding and a replay never import litellm; litellm is preloaded in a
daemon thread when the kernel is imported (not where CMDC_NB_OFFLINE is set), without tripping the
import locks; the model client's status is truthful; litellm's success logging still reaches a
registered callback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import agents, pricing, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import (
    Cassette,
    ProviderRequest,
    RetryPolicy,
    Script,
    Turn,
    _litellm,
    _offline,
    call,
    stream_completion,
)
from cmdc_nb.providers.scripted import ScriptedCall
from cmdc_nb.store.models import CostRecord
from cmdc_nb.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
# what differs between two identical runs: ids, clocks, durations
_VOLATILE = re.compile(r"(^id$|_id$|_at$|^ts$|_s$|_ms$|duration|latency|elapsed|^day$|^slug$|^name$)")


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return {"pi": "3.14159"}.get(key, "unknown")


def _canon(value: Any, ids: dict[str, str]) -> Any:
    """`value` with its ids numbered in order of appearance and its clocks dropped: two runs that did
    the same thing compare equal, and a different structure (which id goes where) does not."""
    if isinstance(value, dict):
        return {k: _canon(v, ids) for k, v in value.items() if not _VOLATILE.search(str(k))}
    if isinstance(value, list | tuple):
        return [_canon(v, ids) for v in value]
    if (isinstance(value, str | bytes) and _UUID.fullmatch(str(value))) or type(value).__name__ == "UUID":
        return ids.setdefault(str(value).replace("-", ""), f"<id {len(ids)}>")
    if hasattr(value, "isoformat"):
        return "<time>"
    if hasattr(value, "value") and type(value).__module__.startswith("cmdc_nb"):
        return value.value  # an enum
    return value


def _rows(objs: Any, ids: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for obj in objs:
        mapper = sa.inspect(obj).mapper
        out.append(_canon({c.key: getattr(obj, c.key) for c in mapper.column_attrs}, ids))
    return out


def _stored(ws: Workspace, session: Any) -> dict[str, Any]:
    ids: dict[str, str] = {}
    calls = sorted(agents.list_agent_calls(session, ws=ws, limit=100).entries, key=lambda c: c.started_at)
    uses = [u for c in calls for u in agents.list_tool_uses(c, ws=ws).entries]
    messages = sessions.list_messages(session, ws=ws, limit=100).entries
    with ws.read() as db:
        costs = db.scalars(
            sa.select(CostRecord).where(CostRecord.session_id == session.id).order_by(CostRecord.incurred_at)
        ).all()
        seen = {
            "calls": _rows(calls, ids),
            "tool_uses": _rows(uses, ids),
            "messages": _rows(messages, ids),
            "costs": _rows(costs, ids),
        }
    return seen


def _conversation(name: str) -> Script:
    return Script(
        [
            Turn("partial words", error="server_error", error_after=1),
            Turn("Let me look.", thinking="pi is a key", tool_calls=[call("lookup", key="pi")]),
            Turn(tool_calls=[ScriptedCall("lookup", raw_arguments='{"key": ')], usage=(40, 3)),
            Turn("  Pi is  3.14159.\n", finish_reason="end_turn"),
        ],
        name=name,
    )


async def _run(ws: Workspace, user: Any, *, via_litellm: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    if via_litellm:
        monkeypatch.setenv(_offline.VIA_LITELLM, "1")
    else:
        monkeypatch.delenv(_offline.VIA_LITELLM, raising=False)
    script = _conversation("both-ways")  # a new script of the same name: the same model string
    session = sessions.create_session(user, name="both ways", ws=ws)
    agent = Agent(
        model=script.model,
        tools=[lookup],
        session=session,
        ws=ws,
        retry=RetryPolicy(retries=2, backoff_s=0.001),
    )
    events: list[dict[str, Any]] = []
    agent.events.subscribe(lambda env: events.append({"type": env.type, **env.event.to_dict()}))
    first = await agent.prompt("What is pi?")
    second = await agent.prompt("And e?")  # past the script's end: its 'no more turns' sentence
    ids: dict[str, str] = {}
    return {
        "replies": [first, second],
        "events": _canon(events, ids),
        "messages": _canon([dict(m) for m in agent.messages], ids),
        "requests": script.requests,
        "usage": agent.usage,
        "cost": agent.cost_usd,
        "stored": _stored(ws, session),
    }


async def test_a_scripted_conversation_is_the_same_through_litellm_and_in_process(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    pricing.set_model_price(
        "scripted/both-ways", input_per_million_usd="2.5", output_per_million_usd="10", ws=ws
    )
    users = [cmdc_nb.accounts.create_user(f"{who}@example.com", ws=ws) for who in ("lit", "direct")]
    through = await _run(ws, users[0], via_litellm=True, monkeypatch=monkeypatch)
    direct = await _run(ws, users[1], via_litellm=False, monkeypatch=monkeypatch)
    assert direct["replies"][0].endswith("  Pi is  3.14159.\n")
    assert "retry" in [e["type"] for e in direct["events"]]  # the mid-stream failure was retried
    assert direct["cost"] > Decimal(0) and direct["usage"].input > 0
    for key in ("replies", "events", "messages", "requests", "usage", "cost"):
        assert direct[key] == through[key], key
    for table, rows in through["stored"].items():
        assert rows, table  # something of each kind was stored, and compared
        assert direct["stored"][table] == rows, table


async def test_a_replayed_cassette_is_the_same_through_litellm_and_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tape = tmp_path / "tape.json"
    script = _conversation("taped")
    recorded = Agent(model=script.model, tools=[lookup], cassette=Cassette(tape, mode="record"))
    await recorded.prompt("What is pi?")
    seen = []
    for via in ("1", ""):
        monkeypatch.setenv(_offline.VIA_LITELLM, via)
        agent = Agent(
            model="openai/gpt-4o-mini",
            tools=[lookup],
            cassette=Cassette(tape, mode="replay", strict=False),
            retry=RetryPolicy(retries=2, backoff_s=0.001),
        )
        events: list[dict[str, Any]] = []
        agent.events.subscribe(lambda env, out=events: out.append({"type": env.type, **env.event.to_dict()}))
        reply = await agent.prompt("What is pi?")
        seen.append((reply, _canon(events, {}), agent.usage, agent.cost_usd, list(agent.messages)))
    assert seen[0] == seen[1]
    assert seen[1][0].endswith("  Pi is  3.14159.\n") and seen[1][2] == recorded.usage


async def test_offline_errors_and_embeddings_are_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    from cmdc_nb.errors import ProviderError
    from cmdc_nb.providers import embed_texts, scripted

    async def failures() -> list[tuple[str, str, str, int | None, float | None]]:
        turns = [
            Turn("a b c", error=k, error_after=n, retry_after=2.5)
            for k in scripted.ERROR_KINDS
            for n in (0, 1)
        ]
        script = Script(turns, name="failing")
        out = []
        for _ in turns:
            with pytest.raises(ProviderError) as err:
                await stream_completion(
                    ProviderRequest(script.model, [{"role": "user", "content": "x"}]),
                    on_part=lambda p: None,
                    retry=RetryPolicy(retries=0),
                )
            e = err.value
            out.append((type(e).__name__, e.kind, str(e), e.status_code, e.retry_after))
        with pytest.raises(ProviderError) as missing:
            await stream_completion(ProviderRequest("scripted/nobody-wrote-this", []), on_part=lambda p: None)
        out.append((type(missing.value).__name__, missing.value.kind, str(missing.value), 404, None))
        return out

    def embedded() -> Any:
        scripted.embedding_failures["embed-8"] = ["rate_limit"]
        with pytest.raises(ProviderError) as err:
            embed_texts("scripted/embed-8", ["a"], retry=RetryPolicy(retries=0))
        done = embed_texts("scripted/embed-8", ["hello", "wide world"])
        return str(err.value), err.value.retry_after, done

    monkeypatch.setenv(_offline.VIA_LITELLM, "1")
    through = (await failures(), embedded())
    monkeypatch.delenv(_offline.VIA_LITELLM)
    direct = (await failures(), embedded())
    assert direct == through
    assert len(direct[0]) == 2 * len(scripted.ERROR_KINDS) + 1 and direct[1][2].tokens == 5


def _python(code: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMDC_NB_") and not k.endswith("_API_KEY")}
    env["CMDC_NB_HOME"] = os.environ["CMDC_NB_HOME"]
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def test_a_scripted_round_a_replay_and_an_embedding_never_import_litellm(tmp_path: Path) -> None:
    code = f"""
        import sys
        from cmdc_nb.kernel import Agent, tool
        from cmdc_nb.providers import Cassette, Script, Turn, call, embed_texts
        from cmdc_nb.providers._litellm import loaded

        @tool
        def add(a: int, b: int) -> int:
            "Add."
            return a + b

        script = Script([Turn(tool_calls=[call("add", a=2, b=3)]), "5"], name="no-litellm")
        assert Agent(model=script.model, tools=[add]).run("2 + 3?") == "5"
        tape = Cassette({str(tmp_path / "t.json")!r}, mode="record")
        Agent(model=Script(["taped"]).model, cassette=tape).run("q")
        replay = Agent(model="openai/gpt-4o-mini", cassette=Cassette(tape.path))  # no key: replays
        assert replay.run("q") == "taped"
        assert len(embed_texts("scripted/embed-8", ["a text"]).vectors[0]) == 8
        print(loaded(script.model), loaded("openai/gpt-4o-mini"), "litellm" in sys.modules)
    """
    done = _python(code, _env(CMDC_NB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    # offline models never say they load the client; a real provider would have to
    assert done.stdout.split() == ["True", "False", "False"]


def test_an_agent_without_a_session_prices_its_calls_without_loading_the_store() -> None:
    """A notebook's first scripted agent (no session) prices from the model catalogue: neither
    litellm nor SQLAlchemy and the ORM are loaded for it."""
    code = """
        import sys
        from cmdc_nb.kernel import Agent
        from cmdc_nb.providers import Script, Turn

        agent = Agent(model=Script([Turn("hi", usage=(10, 2))]).model)
        assert agent.run("q") == "hi" and agent.cost_usd == 0
        print(*(name in sys.modules for name in ("litellm", "sqlalchemy", "cmdc_nb.store.models")))
    """
    done = _python(code, _env(CMDC_NB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]


def test_importing_the_kernel_preloads_litellm_in_a_daemon_thread_only_where_it_may_be_needed() -> None:
    code = """
        import sys, threading
        import cmdc_nb.kernel
        from cmdc_nb.providers import _litellm
        thread = _litellm._preloader
        print(thread is not None and thread.daemon and thread.name, "litellm" in sys.modules)
    """
    offline = _python(code, _env(CMDC_NB_OFFLINE="1"))
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert offline.stdout.split() == ["False", "False"]
    forced = _python(
        code.replace('"litellm" in sys.modules', "_litellm._ready.wait(600)"),
        _env(CMDC_NB_OFFLINE="1", CMDC_NB_PRELOAD="1"),
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert forced.stdout.split() == ["cmdc_nb-model-client", "True"]


def test_the_preload_and_the_main_thread_import_litellm_at_once_without_a_deadlock() -> None:
    """The main thread imports what the preload imports (litellm, its providers, its HTTP stack) while
    it runs, then calls a real provider (a loopback OpenAI stand-in): one litellm, the reply, no
    import error. Run a few times: the preload is at a different point each time."""
    code = """
        import sys, threading
        sys.path.insert(0, "tests/support")
        from fake_openai import FakeOpenAI
        import cmdc_nb.kernel
        from cmdc_nb.providers import _litellm
        assert _litellm._preloader is not None and _litellm._preloader.is_alive()
        import litellm, openai, httpx, aiohttp, tiktoken  # the same modules, on the main thread
        from litellm.llms.custom_llm import CustomLLM
        from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
        with FakeOpenAI(reply="real reply") as server:
            import os
            os.environ.update(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=server.base_url)
            agent = cmdc_nb.kernel.Agent(model="openai/gpt-4o-mini")
            reply = agent.run("hi")
        assert _litellm.loaded() and sys.modules["litellm"] is _litellm.litellm()
        print(reply, len(server.requests))
    """
    for _ in range(2):
        done = _python(code, _env())
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == ["real", "reply", "1"]
        assert "deadlock" not in done.stderr


def test_after_the_preload_the_first_real_call_with_a_tool_loads_no_module() -> None:
    """The warm-up takes the way a real call takes (litellm's OpenAI route, the openai client and its
    resources, the stream wrapper, the tokenizer tables, litellm's handling of tools), answered in
    memory: once the preload is done, the first real call loads nothing that a scripted round with the
    same tool (the kernel's own first tool call, its sandbox) has not."""
    code = """
        import os, sys
        sys.path.insert(0, "tests/support")
        from fake_openai import FakeOpenAI
        from cmdc_nb.kernel import Agent, tool
        from cmdc_nb.providers import Script, Turn, _litellm, call

        @tool
        def lookup(key: str) -> str:
            \"\"\"Look a key up.\"\"\"
            return "3.14159"

        _litellm._preloader.join()
        offline = Script([Turn("", tool_calls=[call("lookup", key="pi")]), Turn("ok")]).model
        assert Agent(model=offline, tools=[lookup]).run("look pi up") == "ok"
        with FakeOpenAI(reply="pi is 3.14159") as server:
            os.environ.update(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=server.base_url)
            agent = Agent(model="openai/gpt-4o-mini", tools=[lookup])
            before = set(sys.modules)
            reply = agent.run("look pi up")
        print(len(server.requests), sorted(set(sys.modules) - before), reply)
    """
    done = _python(code, _env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["2", "[]", "pi", "is", "3.14159"]


def test_a_call_waiting_for_the_preload_takes_over_at_the_next_warm_up_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call that arrives while the preload warms litellm up waits for the step under way only, then
    does its own first-call work (one thread at a time); a server's `warm()` takes every step."""
    module = object()
    monkeypatch.setattr(_litellm, "_module", module)  # imported: `litellm()` returns it
    monkeypatch.setattr(_litellm, "_ready", threading.Event())
    monkeypatch.setattr(_litellm, "_wanted", threading.Event())
    taken: list[str] = []

    def steps(lm: Any) -> list[tuple[str, Any]]:
        assert lm is module
        return [
            ("first", lambda: (taken.append("first"), _litellm._wanted.set())),  # a call comes meanwhile
            ("second", lambda: taken.append("second")),
        ]

    monkeypatch.setattr(_litellm, "_warm_steps", steps)
    assert _litellm._load_warm() is module
    assert taken == ["first"] and _litellm.loaded()
    assert _litellm.for_call() is module and taken == ["first"]  # loaded: nothing more to wait for
    monkeypatch.setattr(_litellm, "_ready", threading.Event())
    taken.clear()
    _litellm.warm()
    assert taken == ["first", "second"] and _litellm.loaded()


def test_the_model_client_status_says_loading_only_for_calls_that_load_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_litellm, "_ready", threading.Event())  # as in a process that has not loaded it
    monkeypatch.delenv(_offline.VIA_LITELLM, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    tape = tmp_path / "t.json"
    tape.write_text(json.dumps({"format": "cmdc_nb.cassette/1", "entries": []}))
    assert _litellm.loaded("scripted/anything") and _litellm.loaded("openai/gpt-4o", Cassette(tape))
    assert not _litellm.loaded("openai/gpt-4o") and not _litellm.loaded()
    monkeypatch.setenv(_offline.VIA_LITELLM, "1")
    assert not _litellm.loaded("scripted/anything")
    _litellm._ready.set()
    assert _litellm.loaded("openai/gpt-4o") and _litellm.loaded()


@pytest.mark.parametrize(
    "provider", ["openai", "anthropic", "gemini", "mistral", "deepseek", "groq", "xai", "openrouter"]
)
def test_a_cassette_decides_to_replay_as_litellm_would_without_loading_it(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cmdc_nb.providers.choice import KEY_VARIABLES

    lm = _litellm.litellm()
    tape = Cassette(tmp_path / "t.json")
    variables = KEY_VARIABLES[provider]
    for v in {v for vs in KEY_VARIABLES.values() for v in vs}:
        monkeypatch.delenv(v, raising=False)
    for setting in [None, *((v, value) for v in variables for value in ("", "k"))]:
        for v in variables:
            monkeypatch.delenv(v, raising=False)
        if setting is not None:
            monkeypatch.setenv(*setting)
        model = f"{provider}/some-model"
        said = bool(lm.validate_environment(model=model).get("keys_in_environment"))
        assert tape.replays(model) is (not said), setting


async def test_litellm_success_logging_runs_only_for_a_registered_callback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _litellm.warm()  # its own mock call is not one of ours
    lm = _litellm.litellm()
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.litellm_core_utils.litellm_logging import Logging

    dispatched: list[str] = []
    real = Logging.dispatch_success_handlers

    async def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        dispatched.append(self.model)
        await real(self, *args, **kwargs)

    monkeypatch.setattr(Logging, "dispatch_success_handlers", counting)
    monkeypatch.setenv(_offline.VIA_LITELLM, "1")  # a scripted model through litellm, like a real provider
    for attr in (
        "callbacks",
        "success_callback",
        "_async_success_callback",
        "failure_callback",
        "_async_failure_callback",
    ):
        monkeypatch.setattr(lm, attr, [])
    script = Script(["one", "two"], name="logged")
    request = ProviderRequest(script.model, [{"role": "user", "content": "hi"}])
    await stream_completion(request, on_part=lambda p: None)
    assert dispatched == []  # nobody listens: litellm's success handler did not run

    class Listener(CustomLogger):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.seen = threading.Event()
            self.responses: list[Any] = []

        async def async_log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self.responses.append(response_obj)
            self.seen.set()

    listener = Listener()
    monkeypatch.setattr(lm, "callbacks", [listener])
    done = await stream_completion(request, on_part=lambda p: None)
    for _ in range(200):  # litellm dispatches it as a task after the stream ends
        if listener.seen.is_set():
            break
        await asyncio.sleep(0.01)
    assert done.text == "two" and len(dispatched) == 1
    assert listener.responses and listener.responses[0].choices[0].message.content == "two"


def test_a_conversation_sent_again_is_not_converted_again_yet_every_edit_is_seen() -> None:
    from cmdc_nb.providers._offline import provider_messages

    def expected(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """litellm's rule, written out: None-valued keys dropped, a missing role the assistant's."""
        out = []
        for m in messages:
            msg = {k: v for k, v in m.items() if v is not None}
            msg.setdefault("role", "assistant")
            if "tool_calls" in msg:
                msg["tool_calls"] = [dict(c) for c in msg["tool_calls"]]
            out.append(msg)
        return out

    conv: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for i in range(3):
        conv.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})  # fmt: skip
        conv.append({"role": "tool", "tool_call_id": f"c{i}", "content": str(i)})
    first = provider_messages(conv)
    conv.append({"content": "no role, and None", "name": None})
    second = provider_messages(conv)
    assert first == expected(conv[:-1]) and second == expected(conv)
    assert all(a is b for a, b in zip(first, second, strict=False))  # remembered, not converted again

    # edited in place (as a plugin may), at every depth the conversion copies: converted afresh
    conv[0]["content"] = "changed"
    conv[1]["tool_calls"][0]["id"] = "renamed"
    conv[3]["tool_calls"].append(
        {"id": "more", "type": "function", "function": {"name": "g", "arguments": "{}"}}
    )
    conv[2]["content"] = None
    del conv[4]["role"]
    third = provider_messages(conv)
    assert third == expected(conv)
    assert third[5] is second[5]  # the one left alone is still remembered

    # what was handed out and then changed does not change the next answer
    third[0]["content"] = "tampered"
    third[1]["tool_calls"][0]["id"] = "tampered"
    third[1]["tool_calls"].append("tampered")
    assert provider_messages(conv) == expected(conv)


def test_connect_and_a_first_reply_import_the_orm_pydantic_and_cryptography_only_when_used(
    tmp_path: Path,
) -> None:
    """What a fresh process pays before its first reply (`bench/notes/startup.md`): `connect()` brings
    SQLAlchemy's Core but not its ORM (≈70 ms), the kernel brings no pydantic until a tool is made
    (≈20 ms), and nothing imports cryptography until a secret is sealed (≈10 ms). Each comes with its
    first use, and that use works. (A new database's migrations need more: made beforehand.)"""
    made = _python(f"import cmdc_nb; cmdc_nb.connect('sqlite:///{tmp_path}/first.db').close()", _env())
    assert made.returncode == 0, made.stderr[-3000:]
    code = f"""
        import sys
        import cmdc_nb
        from cmdc_nb.kernel import Agent, tool
        from cmdc_nb.providers import Script

        def loaded():
            return [name in sys.modules for name in ("sqlalchemy.orm", "pydantic", "cryptography")]

        ws = cmdc_nb.connect("sqlite:///{tmp_path}/first.db")
        assert Agent(model=Script(["Hello."]).model).run("Hi") == "Hello."
        print(*loaded())

        @tool
        def double(n: int) -> int:
            "Double n."
            return 2 * n

        print(*loaded())
        user = cmdc_nb.accounts.create_user("first@example.com", ws=ws)
        print(*loaded())
        cred = cmdc_nb.accounts.create_api_credential(user, name="first", provider="openai", api_key="sk-first", ws=ws)
        print(*loaded(), cmdc_nb.accounts.get_api_credential(cred.id, ws=ws).provider)
    """
    done = _python(code, _env(CMDC_NB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "False False False",  # connected, and a first reply
        "False True False",  # a tool: its arguments' model
        "True True False",  # a user: the ORM
        "True True True openai",  # a sealed key
    ]
