"""ChatWidget's behaviour from Python: events in → widget state; buttons → agent calls."""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any

import pytest

from cmdc_nb.errors import AbortedError
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ChatWidget


@tool(requires_approval=True)
def deploy(target: str) -> str:
    """Deploy."""
    return f"deployed to {target}"


def html_of(chat: ChatWidget) -> str:
    out: list[str] = []

    def walk(widget: Any) -> None:
        if hasattr(widget, "children"):
            for c in widget.children:
                walk(c)
        elif hasattr(widget, "value") and isinstance(widget.value, str):
            out.append(widget.value)

    walk(chat.messages_box)
    return "\n".join(out)


def buttons(chat: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(widget: Any) -> None:
        for c in getattr(widget, "children", ()):
            if c.__class__.__name__ == "Button":
                found[c.description] = c
            walk(c)

    walk(getattr(chat, "messages_box", chat))
    return found


def form_fields(card: Any) -> list[Any]:
    """The input widgets of the arguments form open in a tool card, in the tool's parameter order."""
    found: list[Any] = []

    def walk(widget: Any) -> None:
        for c in getattr(widget, "children", ()):
            if "cmdc-argfield" in getattr(c, "_dom_classes", ()):
                found.append(c.children[1])
            walk(c)

    walk(card)
    return found


async def wait_for(
    predicate: Any, timeout: float = 60.0
) -> None:  # liveness only: a first litellm import can take seconds
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_streamed_reply_is_coalesced_and_rendered_safely() -> None:
    words = " ".join(f"word{i}" for i in range(300))
    reply = f"**Bold** and `code`\n\n```python\nprint('hi')\n```\n\n<script>alert(1)</script> {words}"
    script = Script([Turn(reply, chunk_delay=0.002)])
    agent = Agent(model=script.model)
    chat = ChatWidget(agent)
    started = time.perf_counter()
    await chat.send("Say a lot")
    took = time.perf_counter() - started
    shown = html_of(chat)
    assert "<strong>Bold</strong>" in shown and "word299" in shown
    assert "<script>" not in shown and "&lt;script&gt;" in shown  # escaped, never run
    assert '<span class="nb">print</span>' in shown  # highlighted code
    deltas = sum(1 for e in agent.events.replay() if e.type == "message_delta")
    assert deltas > 300
    assert chat.updates_sent <= took / 0.04 + 3  # about 25 updates a second, not one per delta
    assert "scripted/" in shown and "tokens" in shown  # per-message model, tokens, cost


async def test_approve_from_the_card_while_the_agent_runs() -> None:
    script = Script([Turn("Deploying.", tool_calls=[call("deploy", target="prod")]), "Deployed."])
    agent = Agent(model=script.model, tools=[deploy])
    chat = ChatWidget(agent)
    handle = chat.send("ship it")
    await wait_for(lambda: "Approve" in buttons(chat))
    card = chat.messages_box.children[-1]
    # the card that waits holds its buttons, shows its arguments open, and the status says why we wait
    assert "cmdc-tool" in card._dom_classes and "waiting" in card._dom_classes
    assert "Approve" in buttons(card) and "Deny" in buttons(card)
    assert "<details open><summary>arguments</summary>" in card.children[0].value
    assert "waiting for your approval" in card.children[0].value
    assert "waiting for your approval" in chat.status_html.value and chat.stop_button.disabled is False
    buttons(chat)["Approve"].click()  # what the browser's click does
    assert await handle == "Deploying.\n\nDeployed."
    shown = html_of(chat)
    assert "deployed to prod" in shown and "Approve" not in buttons(chat)
    assert chat.steer_button.disabled and "ready" in chat.status_html.value


async def test_edit_arguments_then_approve_and_deny() -> None:
    script = Script(
        [
            Turn(tool_calls=[call("deploy", target="prod")]),
            "ok",
            Turn(tool_calls=[call("deploy", target="prod")]),
            "fine",
        ]
    )
    agent = Agent(model=script.model, tools=[deploy])
    chat = ChatWidget(agent)
    handle = chat.send("ship")
    await wait_for(lambda: "Approve" in buttons(chat))
    buttons(chat)["Edit arguments"].click()
    [target] = form_fields(chat.messages_box.children[-1])
    target.value = "staging"
    buttons(chat)["Approve with edits"].click()
    await handle
    assert agent.messages[2]["content"] == "deployed to staging"
    handle = chat.send("again")
    await wait_for(lambda: "Deny" in buttons(chat))
    buttons(chat)["Deny"].click()
    assert await handle == "fine"
    assert agent.messages[-2]["content"] == "denied by the user: denied from the chat"
    denied = chat.messages_box.children[-2]  # the second call's card, before the reply "fine"
    assert "denied" in denied._dom_classes and "error" not in denied._dom_classes
    assert '<span class="cmdc-badge denied">denied</span>' in denied.children[0].value


@tool(requires_approval=True)
def scale(service: str, replicas: int, drain: bool = False) -> str:
    """Scale a service.

    Args:
        service: the service's name
        replicas: how many copies to run
    """
    return f"{service} scaled to {replicas}{' after draining' if drain else ''}"


async def test_the_edit_form_follows_the_tool_schema_and_the_edit_is_what_runs_and_is_stored(
    ws: Any, session: Any
) -> None:
    from cmdc_nb import agents

    script = Script([Turn(tool_calls=[call("scale", service="api", replicas=2)]), "Scaled."])
    agent = Agent(model=script.model, tools=[scale], session=session, ws=ws)
    chat = ChatWidget(agent)
    handle = chat.send("scale the api")
    await wait_for(lambda: "Approve" in buttons(chat))
    card = chat.messages_box.children[-1]
    buttons(card)["Edit arguments"].click()
    service, replicas, drain = form_fields(card)
    assert (type(service).__name__, service.value) == ("Text", "api")
    assert (type(replicas).__name__, replicas.value) == ("IntText", 2)
    assert (type(drain).__name__, drain.value) == ("Checkbox", False)
    replicas.value, drain.value = 5, True
    buttons(card)["Approve with edits"].click()
    assert await asyncio.wait_for(handle, 60) == "Scaled."
    assert agent.messages[2]["content"] == "api scaled to 5 after draining"  # the tool ran the edit
    assert "<summary>arguments (edited)</summary>" in card.children[0].value  # the card shows what ran
    assert "&quot;replicas&quot;: 5" in card.children[0].value
    calls = agents.list_agent_calls(session, ws=ws).entries
    [stored] = [t for c in calls for t in agents.list_tool_uses(c, ws=ws).entries]
    assert stored.input == {"service": "api", "replicas": 5, "drain": True}  # … and the database keeps it
    assert stored.meta["original_input"] == {"service": "api", "replicas": 2}


async def test_invalid_edits_are_refused_and_the_tool_does_not_run(ws: Any, session: Any) -> None:
    script = Script([Turn(tool_calls=[call("scale", service="api", replicas=2)]), "Not scaled."])
    agent = Agent(model=script.model, tools=[scale], session=session, ws=ws)
    chat = ChatWidget(agent)
    handle = chat.send("scale the api")
    await wait_for(lambda: "Approve" in buttons(chat))
    card = chat.messages_box.children[-1]
    buttons(card)["Edit arguments"].click()
    form = card.children[1].children[1].children[0]  # the card's controls: buttons, then the form
    form.children[1].children[1].value = True  # the "JSON" toggle: edit the call as one JSON object
    raw = form.children[3]
    raw.value = '{"service": "api", "replicas": "many"}'
    buttons(card)["Approve with edits"].click()
    assert "replicas must be a whole number, not &quot;many&quot;" in form.children[4].value
    assert "Not approved: replicas must be a whole number" in card.children[1].children[2].value
    raw.value = '{"replicas": 3}'
    buttons(card)["Approve with edits"].click()
    assert "service is required" in form.children[4].value
    await asyncio.sleep(0.1)
    assert agent.status()["pending_approvals"][0]["args"] == {
        "service": "api",
        "replicas": 2,
    }  # still waiting
    assert "ok" not in card._dom_classes and "running" not in card._dom_classes
    buttons(card)["Deny"].click()
    assert await asyncio.wait_for(handle, 60) == "Not scaled."
    assert agent.messages[2]["content"] == "denied by the user: denied from the chat"


async def test_stop_steer_and_the_model_picker() -> None:
    other = Script(["from the other model"])
    script = Script([Turn("slow " * 200, chunk_delay=0.01)])
    agent = Agent(model=script.model)
    chat = ChatWidget(agent, models=[other.model])
    handle = chat.send("talk")
    await wait_for(lambda: chat.updates_sent > 0)
    assert "writing" in chat.status_html.value
    chat.stop_button.click()
    # shown at once, before the run has wound down: no cursor, nothing left to stop or steer
    assert "▍" not in html_of(chat) and "slow" in html_of(chat)
    assert chat.stop_button.disabled and chat.steer_button.disabled
    with pytest.raises(AbortedError):
        await handle
    assert "■ stopped by you" in html_of(chat) and "stopped" in chat.status_html.value
    chat.model_picker.value = other.model  # as picked in the browser
    assert agent.model == other.model
    assert await chat.send("again") == "from the other model"
    chat.input.value = "be brief"
    chat.steer_button.click()  # idle: steering starts a run
    assert chat.input.value == ""


async def test_switching_to_models_the_picker_does_not_list_keeps_the_switch() -> None:
    # Regression: adding a model to the picker's options made the Dropdown fall back to its first
    # option, which was observed as a pick and switched the agent back to the original model.
    first, second, third = Script(["one"]), Script(["two"]), Script(["three"])
    agent = Agent(model=first.model)
    chat = ChatWidget(agent)
    assert await chat.send("a") == "one"
    agent.switch_model(second.model)
    assert (agent.model, chat.model_picker.value) == (second.model, second.model)
    agent.switch_model(third.model)
    await asyncio.sleep(0)
    assert (agent.model, chat.model_picker.value) == (third.model, third.model)
    assert await agent.prompt("b") == "three"
    chat.switch_model(first.model)
    assert (agent.model, chat.model_picker.value) == (first.model, first.model)
    assert list(chat.model_picker._options_labels)[-2:] == [second.model, third.model]


async def test_history_is_paged_and_the_transcript_exports() -> None:
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(1000)
    ]
    agent = Agent(model="scripted/none", messages=history)
    chat = ChatWidget(agent, page_size=50)
    assert (
        len(chat.messages_box.children) == 50
        and "message 999" in html_of(chat)
        and "message 949" not in html_of(chat)
    )
    assert chat.earlier.description == "Show earlier messages (950)"
    assert chat.load_earlier() == 50 and len(chat.messages_box.children) == 100
    md = chat.export_markdown()
    assert md.count("**user:**") == 500 and "message 0" in md
    assert repr(chat).startswith("<ChatWidget")


async def test_fork_a_stored_conversation_from_a_message(ws: Any, user: Any) -> None:
    from cmdc_nb import sessions

    s = sessions.create_session(user, name="Ideas", ws=ws)
    script = Script(["First answer.", "Second answer."])
    agent = Agent(model=script.model, session=s, ws=ws)
    chat = ChatWidget(agent)
    await chat.send("first question")
    await chat.send("second question")
    forks = [b for b in buttons(chat).values() if b.description == "fork"]
    assert len(buttons(chat)) >= 1 and forks
    forked = chat.fork_at("second question", name="Try again")
    assert forked.name == "Try again" and forked.message_count == 3  # up to and including that message
    assert "forked into session Try again" in html_of(chat)
    assert [m.content for m in sessions.list_messages(forked, ws=ws).entries][-1] == "second question"


async def test_the_chat_shows_who_else_is_on_the_session(ws: Any, user: Any) -> None:
    from cmdc_nb import accounts, presence, sessions

    s = sessions.create_session(user, name="Pairing", ws=ws)
    chat = ChatWidget(Agent(model="scripted/x", session=s, ws=ws))
    assert chat.refresh_presence() == ["Ada"]
    bob = accounts.create_user("bob@example.com", name="Bob", ws=ws)
    presence.join_resource(bob, "session", s.id, client_id="bob-1", ws=ws)
    await asyncio.sleep(0.05)
    assert "● Bob" in chat.people.value and "● Ada" in chat.people.value
    chat.close()
    assert [str(p.user_id) for p in presence.list_resource_presence("session", s.id, ws=ws).entries] == [
        str(bob.id)
    ]


def test_the_streaming_bubble_renders_finished_blocks_once_and_a_long_tail_as_text() -> None:
    from cmdc_nb.widgets import chat as chat_module

    script = Script(["ok"], name="live-bubble")
    chat = ChatWidget(Agent(model=script.model))
    chat._text = "A **bold** start.\n\n```python\nx = 1\n\ny = 2\n```\n\nstill *writing*"
    html = chat._live_html()
    # the finished blocks are Markdown (the blank line inside the fence does not split it) …
    assert (
        "<strong>bold</strong>" in html and html.count("<pre>") == 1 and '<span class="mi">2</span>' in html
    )
    assert chat._text[: chat._head_len].endswith("```\n\n")
    head = chat._head_html
    # … and are not rendered again when more arrives
    chat._text += " more"
    assert chat._live_html().startswith(head) and "<em>writing</em>" in chat._live_html()
    # a long block being written is shown as escaped text until it is finished
    chat._text += " <b>" + "word " * chat_module.LIVE_MARKDOWN_CHARS
    live = chat._live_html()
    assert live.startswith(head) and "&lt;b&gt;" in live and "<em>" not in live[len(head) :]


async def test_a_steer_shows_in_the_transcript_where_it_was_given() -> None:
    script = Script([Turn("first " * 60, chunk_delay=0.01), "Brief, as you asked."])
    agent = Agent(model=script.model)
    chat = ChatWidget(agent)
    handle = chat.send("talk")
    await wait_for(lambda: chat.updates_sent > 0)
    chat.input.value = "be brief"
    chat.steer_button.click()
    assert "↪ be brief" in html_of(chat) and "applies at the next step" in html_of(chat)
    await handle
    await wait_for(lambda: "Brief, as you asked." in html_of(chat))
    assert "steer · applied" in html_of(chat)


async def test_a_missing_key_is_one_sentence_with_the_remedy_and_details_behind_a_disclosure() -> None:
    script = Script([Turn(error="authentication")])
    agent = Agent(model=script.model)
    chat = ChatWidget(agent)
    with pytest.raises(Exception, match="authentication"):
        await chat.send("hello")
    await wait_for(lambda: "ready" in chat.status_html.value or "failed" in chat.status_html.value)
    shown = html_of(chat)
    assert shown.count('class="cmdc-msg cmdc-error"') == 1  # said once, not thrice
    assert "⚠ no key for scripted: set SCRIPTED_API_KEY, or pick an offline model" in shown
    assert "<details><summary>details</summary><pre>" in shown
    # the status line stays short, so it never squeezes the buttons beside it
    assert "failed: see the message above" in chat.status_html.value and len(chat.status_html.value) < 80


@pytest.mark.parametrize(
    ("kind", "reason", "model", "sentence"),
    [
        (
            "server_error",
            "InternalServerError: OpenAIException - Missing credentials. Please pass an `api_key`",
            "openai/gpt-4o-mini",
            "no key for openai: set OPENAI_API_KEY, or pick an offline model",
        ),
        (
            "rate_limit",
            "429",
            "anthropic/claude",
            "anthropic is limiting requests: wait a minute and send again, or pick another model",
        ),
        ("weird", "?", "x/y", "the model failed (weird): see the details, or pick another model"),
    ],
)
def test_failures_are_explained_in_one_sentence(kind: str, reason: str, model: str, sentence: str) -> None:
    from cmdc_nb.widgets.chat import explain_failure

    assert explain_failure(kind, reason, model) == sentence


async def test_a_failing_button_is_logged_and_shown(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    chat = ChatWidget(Agent(model="scripted/x", working_dir=str(folder)))
    folder.rmdir()  # Export now has nowhere to write
    with caplog.at_level("ERROR", logger="cmdc_nb.widgets.chat"):
        chat.export_button.click()
    assert [r.getMessage() for r in caplog.records] == ["chat: exporting failed"]
    assert caplog.records[0].exc_info is not None
    assert "⚠ exporting failed: [Errno 2] No such file or directory" in html_of(chat)


async def test_a_user_who_sends_is_brought_to_the_newest_message() -> None:
    chat = ChatWidget(Agent(model=Script(["hi"]).model))
    before = chat.follow.pins
    chat.input.value = "hello"
    chat.send_button.click()
    assert chat.follow.pins == before + 1


async def test_an_offline_script_that_has_said_everything_says_so_as_a_reply(ws: Any, session: Any) -> None:
    from cmdc_nb import agents, sessions

    script = Script(["The only answer."], name="one-turn")
    agent = Agent(model=script.model, session=session, ws=ws)
    chat = ChatWidget(agent)
    assert await chat.send("first") == "The only answer."
    ended = "(the offline script 'one-turn' has no more turns: give it more turns, or pick another model)"
    # the next message is answered, not failed: a reply bubble, no error, no tokens, nothing to pay
    assert await chat.send("second") == ended
    shown = html_of(chat)
    assert (
        f'<div class="cmdc-msg cmdc-assistant tex2jax_ignore mathjax_ignore" data-md="{html.escape(ended)}"><p>{html.escape(ended, quote=False)}</p>'
        in shown
    )
    assert "cmdc-error" not in shown and "Exception" not in shown
    assert "scripted/one-turn · 0/0 tokens · $0" in shown
    assert "ready" in chat.status_html.value
    # stored as every other reply is: the message, a completed call, no tokens
    stored = [(m.role.value, m.content) for m in sessions.list_messages(session, ws=ws).entries]
    assert stored[-2:] == [("user", "second"), ("assistant", ended)]
    calls = sorted(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    assert [c.status.value for c in calls] == ["completed", "completed"]
    assert (calls[-1].tokens_in, calls[-1].tokens_out, calls[-1].cost_usd) == (0, 0, 0)


async def test_the_model_picker_marks_models_without_a_key_and_refuses_them_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cmdc_nb.errors import ProviderError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-never-shown-4242")
    script = Script(["still here", "and here"])
    agent = Agent(model=script.model)
    chat = ChatWidget(agent, models=["openai/gpt-4o", "anthropic/claude-haiku-4-5"])
    # what the dropdown shows: the model without a key says so; offline models never need one
    assert chat.model_picker._options_labels == (
        script.model,
        "openai/gpt-4o · no key",
        "anthropic/claude-haiku-4-5",
    )
    assert "ready" in chat.status_html.value
    chat.model_picker.value = "openai/gpt-4o"  # as picked in the browser
    # refused at once: the agent keeps a model that can answer, the picker shows it, the status says why
    assert (agent.model, chat.model_picker.value) == (script.model, script.model)
    remedy = "no key for openai: set OPENAI_API_KEY, or pick an offline model"
    assert remedy in chat.status_html.value and html_of(chat) == ""
    assert await chat.send("hello") == "still here"
    with pytest.raises(ProviderError, match="set OPENAI_API_KEY") as refused:
        chat.switch_model("openai/gpt-4o")  # the method does what the picker does
    assert refused.value.kind == "authentication" and agent.model == script.model
    chat.model_picker.value = "anthropic/claude-haiku-4-5"  # a provider with a key switches
    assert agent.model == "anthropic/claude-haiku-4-5"
    shown = " ".join([*chat.model_picker._options_labels, chat.status_html.value, html_of(chat)])
    assert "sk-ant" not in shown and "4242" not in shown  # the key's name may show, never its value
    monkeypatch.setenv("OPENAI_API_KEY", "sk-set-later")
    chat.switch_model("openai/gpt-4o")
    assert agent.model == "openai/gpt-4o" and "openai/gpt-4o" in chat.model_picker._options_labels


def test_a_chat_opened_on_a_model_without_a_key_says_so_before_the_first_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    chat = ChatWidget(Agent(model="gemini/gemini-2.5-flash"))
    assert chat.model_picker._options_labels == ("gemini/gemini-2.5-flash · no key",)
    assert "no key for gemini: set GEMINI_API_KEY, or pick an offline model" in chat.status_html.value
    # a key handed to the agent itself counts
    keyed = ChatWidget(Agent(model="gemini/gemini-2.5-flash", provider_opts={"api_key": "k-not-shown"}))
    assert keyed.model_picker._options_labels == ("gemini/gemini-2.5-flash",)
    assert "ready" in keyed.status_html.value


async def test_tables_and_code_in_a_reply_are_ruled_coloured_by_the_theme_and_copyable() -> None:
    import re

    from cmdc_nb.widgets._render import CSS

    reply = "| name | size |\n|---|--:|\n| api | 3 |\n\n```python\nprint('hi')  # say it\n```"
    chat = ChatWidget(Agent(model=Script([reply]).model))
    await chat.send("show me")
    shown = html_of(chat)
    # the table keeps its columns' alignment (the one style a reply may carry) …
    assert (
        '<th style="text-align:right">size</th>' in shown and '<td style="text-align:right">3</td>' in shown
    )
    # … and the code its token classes, never colours of its own: the stylesheet colours them
    assert '<span class="nb">print</span>' in shown and '<span class="c1"># say it</span>' in shown
    assert "color" not in shown
    # ruled cells and a shaded header, from the theme's variables
    assert ".cmdc-msg th, .cmdc-msg td { border: 1px solid var(--jp-border-color2" in CSS
    assert ".cmdc-msg th { background: var(--jp-layout-color2" in CSS
    # each token class takes JupyterLab's editor colour, so Light and Dark colour code as a cell does
    rules = {
        cls: rule
        for rule in CSS.splitlines()
        if rule.startswith(".cmdc-msg pre .")
        for cls in re.findall(r"pre \.(\w+)", rule)
    }
    for cls, colour in [
        ("k", "keyword"),
        ("nb", "builtin"),
        ("c1", "comment"),
        ("s1", "string"),
        ("mi", "number"),
    ]:
        assert f"color: var(--jp-mirror-editor-{colour}-color," in rules[cls]
    assert all(
        re.search(r"color: var\(--jp-mirror-editor-[\w-]+-color, [#\w]+\);", r)
        for r in rules.values()
        if "color" in r
    )
    # the chat's own script gives every code block of a reply a Copy button
    script = chat.follow._esm if isinstance(chat.follow._esm, str) else chat.follow._esm.read_text()
    assert 'log.querySelectorAll(".cmdc-msg pre")' in script and "navigator.clipboard.writeText" in script
    assert (
        'button.className = "cmdc-copy"' in script and ".cmdc-msg .cmdc-copy { align-self: flex-end;" in CSS
    )


def card_texts(chat: ChatWidget) -> list[str]:
    """Each tool card's own text (head, who decided, edits, arguments), oldest first."""
    cards: list[Any] = []

    def walk(widget: Any) -> None:
        for c in getattr(widget, "children", ()):
            if "cmdc-tool" in getattr(c, "_dom_classes", ()):
                cards.append(c)
            else:
                walk(c)

    walk(chat.messages_box)
    return [c.children[0].value for c in cards]


async def test_a_call_a_rule_denies_shows_denied_by_that_rule_in_the_card_and_the_snapshot(
    ws: Any, user: Any, session: Any
) -> None:
    from cmdc_nb import approvals

    approvals.create_approval_rule(
        user,
        name="prod is frozen",
        tool_names=["deploy"],
        conditions={"target": "prod"},
        action="deny",
        action_note="no deploys this week",
        ws=ws,
    )
    script = Script([Turn(tool_calls=[call("deploy", target="prod")]), "Not deployed."])
    agent = Agent(model=script.model, tools=[deploy], session=session, ws=ws)
    chat = ChatWidget(agent)
    assert await asyncio.wait_for(chat.send("ship"), 60) == "Not deployed."
    [card] = [c for c in chat.messages_box.children if "cmdc-tool" in getattr(c, "_dom_classes", ())]
    assert "denied" in card._dom_classes and "error" not in card._dom_classes
    [text] = card_texts(chat)
    assert '<span class="cmdc-badge denied">denied</span>' in text and "queued" not in text
    said = "denied by rule ‘prod is frozen’: no deploys this week"
    assert said in text
    assert said in chat._snapshot_html()  # a reader without a kernel sees the same
    assert "Approve" not in buttons(chat)


async def test_a_card_shows_the_arguments_that_ran_with_the_edit_spelled_out() -> None:
    script = Script([Turn(tool_calls=[call("deploy", target="mastodon")]), "Posted."])
    agent = Agent(model=script.model, tools=[deploy])
    chat = ChatWidget(agent)
    handle = chat.send("post it")
    await wait_for(lambda: "Approve" in buttons(chat))
    assert "Always allow" not in buttons(chat)  # nothing stored: there is no rule to remember it in
    # edited from code, not in the card: the card still shows what ran
    agent.approve(
        agent.status()["pending_approvals"][0]["ref"], args={"target": "blog"}, by="ada@example.com"
    )
    assert await handle == "Posted."
    [text] = card_texts(chat)
    assert "edited: target mastodon → blog" in text
    assert "approved by ada@example.com" in text
    assert "&quot;target&quot;: &quot;blog&quot;" in text and "mastodon&quot;" not in text
    assert "<summary>arguments (edited)</summary>" in text


async def test_the_chat_decides_as_the_session_owner_or_as_the_user_it_is_given(
    ws: Any, user: Any, session: Any
) -> None:
    from cmdc_nb import accounts, frames

    script = Script(
        [
            Turn(tool_calls=[call("deploy", target="prod")]),
            "one",
            Turn(tool_calls=[call("deploy", target="qa")]),
            "two",
        ]
    )
    agent = Agent(model=script.model, tools=[deploy], session=session, ws=ws)
    chat = ChatWidget(agent)
    handle = chat.send("ship")
    await wait_for(lambda: "Approve" in buttons(chat))
    buttons(chat)["Approve"].click()
    assert await asyncio.wait_for(handle, 60) == "one"
    bob = accounts.create_user("bob@example.com", name="Bob", ws=ws)
    as_bob = ChatWidget(agent, user=bob)
    handle = as_bob.send("and qa")
    await wait_for(lambda: "Deny" in buttons(as_bob))
    buttons(as_bob)["Deny"].click()
    assert await asyncio.wait_for(handle, 60) == "two"
    audit = frames.approvals_frame(session=session, ws=ws)
    assert list(zip(audit["how"], audit["decided_by"], audit["status"], strict=True)) == [
        ("person", "ada@example.com", "approved"),
        ("person", "bob@example.com", "denied"),
    ]
    assert "approved by ada@example.com" in card_texts(chat)[0]
    assert "denied by bob@example.com: denied from the chat" in card_texts(as_bob)[-1]


async def test_always_allow_approves_the_same_call_again_without_asking_and_only_that_call(
    ws: Any, user: Any, session: Any
) -> None:
    from cmdc_nb import approvals

    script = Script(
        [
            Turn(tool_calls=[call("deploy", target="prod")]),
            Turn(tool_calls=[call("deploy", target="prod")]),
            Turn(tool_calls=[call("deploy", target="staging")]),
            "done",
        ]
    )
    agent = Agent(model=script.model, tools=[deploy], session=session, ws=ws)
    chat = ChatWidget(agent)
    asked: list[Any] = []
    agent.events.subscribe(lambda e: e.type == "approval_required" and asked.append(e.event.args))
    handle = chat.send("ship it twice, then to staging")
    await wait_for(lambda: "Always allow" in buttons(chat))
    always = buttons(chat)["Always allow"]
    assert "deploy with exactly these arguments in this session" in always.tooltip
    always.click()
    await wait_for(lambda: len(asked) == 2)  # the first call asked; the second did not; the third asks
    assert asked == [{"target": "prod"}, {"target": "staging"}]
    first, second, third = card_texts(chat)
    assert "remembered: from now on deploy with exactly these arguments in this session" in first
    assert "approved by a remembered “Always allow” (rule ‘Always allow deploy’" in second
    assert "deployed to prod" in second and "waiting for your approval" in third
    [rule] = approvals.list_approval_rules(user, ws=ws).entries
    assert (rule.is_sticky, rule.conditions, [str(s) for s in rule.applies_to_sessions]) == (
        True,
        {"input": {"target": "prod"}},
        [str(session.id)],
    )
    buttons(chat)["Deny"].click()
    assert await asyncio.wait_for(handle, 60) == "done"
    assert [m["content"] for m in agent.messages if m["role"] == "tool"] == [
        "deployed to prod",
        "deployed to prod",
        "denied by the user: denied from the chat",
    ]


async def test_always_allow_is_refused_for_an_agent_that_stores_nothing() -> None:
    from cmdc_nb.errors import InvalidInputError

    script = Script([Turn(tool_calls=[call("deploy", target="prod")]), "ok"])
    agent = Agent(model=script.model, tools=[deploy])
    chat = ChatWidget(agent)
    handle = chat.send("ship")
    await wait_for(lambda: "Approve" in buttons(chat))
    ref = agent.status()["pending_approvals"][0]["ref"]
    with pytest.raises(InvalidInputError, match="stores to a session") as info:
        chat.approve(ref, remember=True)
    assert info.value.field == "remember" and agent.status()["pending_approvals"]  # still waiting
    chat.approve(ref)
    assert await handle == "ok"


async def test_the_status_line_says_the_model_client_is_loading_on_the_first_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cmdc_nb.kernel import events as ev
    from cmdc_nb.widgets import chat as chat_module

    agent = Agent(model=Script(["hi"]).model)
    chat = ChatWidget(agent)
    loaded = False
    monkeypatch.setattr(chat_module, "model_client_loaded", lambda *call: loaded)
    monkeypatch.setattr("cmdc_nb.widgets._chat_events.model_client_loaded", lambda *call: loaded)
    chat._on_request(ev.RequestStart("scripted/x", 1, 1))  # a process's first call: litellm not loaded
    assert "loading the model client (first call only)" in chat.status_html.value
    chat._tick()  # while it loads, the line stays (and counts the seconds)
    assert "loading the model client" in chat.status_html.value
    loaded = True
    chat._tick()  # loaded: the wait is the model's now
    assert "waiting for scripted/x" in chat.status_html.value
    chat._on_request(ev.RequestStart("scripted/x", 3, 2))  # later calls: no load to speak of
    assert "waiting for scripted/x" in chat.status_html.value


async def test_the_models_status_and_title_tags_show_in_the_chat_not_in_the_reply() -> None:
    reply = "<title>Release 2.4 rollout</title><status>Reading the changelog</status>" + "word " * 200
    agent = Agent(model=Script([Turn(reply, chunk_delay=0.005)]).model, stream_tags=True)
    chat = ChatWidget(agent)
    seen: set[str] = set()
    handle = chat.send("roll out 2.4")
    while not handle.done():
        seen.add(chat.status_html.value)
        await asyncio.sleep(0.01)
    await handle
    assert any("Reading the changelog" in s for s in seen)  # the status line said it while it wrote
    assert "Release 2.4 rollout" in chat.title_html.value
    shown = html_of(chat)
    assert "word word" in shown and "<status>" not in shown and "Reading the changelog" not in shown
    named = ChatWidget(Agent(model=Script(["<title>Other</title>ok"]).model, stream_tags=True), title="Mine")
    await named.send("x")
    assert "Mine" in named.title_html.value and "Other" not in named.title_html.value  # a given title stays
