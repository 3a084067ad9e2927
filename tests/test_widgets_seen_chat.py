"""The chat as a user sees it, in real JupyterLab and headless Chromium (tests/support/seeing.py).

One notebook holds a conversation taller than the widget; a user sends, approves a tool call, stops a
edits its arguments in a form, stops a long reply, picks a model with no key and meets a refused
request, all by clicking in the page. After each, the newest item must be
inside the visible part of the log, and in Light and Dark at 760 and 1280 px (High Contrast at 1280) every text must read
(≥ 4.5:1), nothing may overflow its box, and the page may log no error.
A second notebook, with an agent that stores to a session, clicks "Always allow" on a waiting call: the
same call again runs without asking, its card says why, and the database holds the remembered rule.
Screenshots: ci-artifacts/screenshots/chat-<state>-<light|dark>-<width>.png."""

from __future__ import annotations

from typing import Any

import pytest
from browser import WAIT_MS
from seeing import LOOKS, look_name

pytestmark = pytest.mark.xdist_group("browser")

CHAT = ".chat-under-test-box"
NEWEST = ".cmdc-log > *"  # the last child of the log is the newest item, whatever its kind

NOTEBOOK = '''
import os, tempfile
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
os.environ.pop("OPENAI_API_KEY", None)  # the missing-key moment is part of the story
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ChatWidget

@tool(requires_approval=True)
def deploy(target: str, version: str) -> str:
    """Deploy a build."""
    return f"deployed {version} to {target}"

history = []
for i in range(40):
    history += [{"role": "user", "content": f"Question {i}: what changed in module {i}?"},
                {"role": "assistant", "content": f"Answer {i}: module {i} now **validates** its input and logs it."}]
script = Script([
    Turn("I will deploy the **current build** to `prod` once you approve.",
         tool_calls=[call("deploy", target="prod", version="2.4.1")], chunk_delay=0.01),
    Turn("Deployed. All green.\\n\\n| check | result |\\n|:--|--:|\\n| tests | 412 |\\n| lint | 0 |\\n\\n"
         "```python\\nprint(release.version)\\n```", chunk_delay=0.01),
    Turn("Here is everything. " + "The release has many parts, and each one is described here. " * 200,
         chunk_delay=0.05),
])
agent = Agent(model=script.model, tools=[deploy], name="Release bot", messages=history)
chat = ChatWidget(agent, models=["openai/gpt-4o-mini"], page_size=30, height="360px")
chat.add_class("chat-under-test-box")
chat
'''


def send(lab: Any, text: str) -> None:
    lab.page.locator(f"{CHAT} textarea").fill(text)
    lab.page.locator(f"{CHAT} .cmdc-chat-footer button:has-text('Send')").click()


def newest_in_view(lab: Any, item: str = NEWEST) -> bool | None:
    # give the follower a frame or two to scroll after the widget drew the item
    lab.page.wait_for_timeout(300)
    return lab.in_view(CHAT, item)


def looks_right_everywhere(lab: Any, state: str, item: str = NEWEST) -> dict[str, Any]:
    """In every look (theme × width): the newest item (or `item`) in view, every text readable, nothing
    overflowing."""
    seen: dict[str, Any] = {}
    for theme, width in LOOKS:
        lab.view(theme, width)
        lab.page.locator(CHAT).scroll_into_view_if_needed()
        key = look_name(theme, width)
        header_h = lab.page.evaluate(
            f"() => document.querySelector('{CHAT} .cmdc-chat-header').getBoundingClientRect().height"
        )
        seen[key] = {
            "in_view": newest_in_view(lab, item),
            "low_contrast": lab.low_contrast(CHAT),
            "overflow": lab.overflow(CHAT),
            "header_lines": round(header_h / 34),  # one row of the header is ~30-34 px tall
        }
        lab.shot(f"chat-{state}-{key}", CHAT)
    return seen


def assert_all_right(seen: dict[str, Any]) -> None:
    for key, got in seen.items():
        assert got["in_view"] is True, (key, got)
        assert got["low_contrast"] == [], (key, got["low_contrast"])
        assert got["overflow"] == [], (key, got["overflow"])
        assert got["header_lines"] <= 2, (key, got)


def test_the_chat_follows_the_conversation_and_reads_in_both_themes(lab: Any) -> None:
    lab.open("chat_seen", [NOTEBOOK], done=f"{CHAT} .cmdc-log")
    page = lab.page
    errors_before = len(lab.console_errors)

    # a long history opens at its newest message, with the way to older ones readable in full
    page.locator(f"{CHAT} .cmdc-chat-footer").scroll_into_view_if_needed()
    assert newest_in_view(lab) is True
    # (each message ends with its Copy button, shown on hover)
    assert (
        page.locator(f"{CHAT} .cmdc-log")
        .inner_text()
        .rstrip()
        .removesuffix("Copy")
        .rstrip()
        .endswith("logs it.")
    )
    earlier = page.locator(f"{CHAT} button:has-text('Show earlier messages (50)')")
    assert earlier.evaluate("b => b.scrollWidth <= b.clientWidth") is True

    # an approval card: in view, buttons inside it, arguments open, the status says we wait for you
    send(lab, "Ship the current build to prod")
    page.wait_for_selector(f"{CHAT} .cmdc-tool.waiting button:has-text('Approve')", timeout=WAIT_MS)
    assert newest_in_view(lab) is True
    card = page.locator(f"{CHAT} .cmdc-tool.waiting")
    assert card.locator("details[open] pre").inner_text().count('"2.4.1"') == 1
    assert "waiting for your approval" in page.locator(f"{CHAT} .cmdc-status").inner_text()
    assert_all_right(looks_right_everywhere(lab, "approval"))

    # the arguments as a form from the tool's schema: a user changes the version before approving
    card.locator("button:has-text('Edit arguments')").click()
    fields = card.locator(".cmdc-argform .cmdc-argfield")
    fields.first.wait_for(timeout=WAIT_MS)
    assert fields.count() == 2
    version = card.locator(".cmdc-argfield:has-text('version') input")
    assert version.input_value() == "2.4.1"
    version.fill("2.4.2")
    version.press("Tab")  # ipywidgets' Text syncs its value on change
    # a form taller than the log: what must stay in view is the button that approves the edits
    assert_all_right(looks_right_everywhere(lab, "editing", ".cmdc-tool.waiting .mod-success"))

    # a click on Approve with edits changes the screen and what the kernel holds
    card.locator("button:has-text('Approve with edits')").click()
    page.wait_for_selector(f"{CHAT} .cmdc-msg:has-text('All green')", timeout=WAIT_MS)
    assert page.locator(f"{CHAT} .cmdc-tool.ok .cmdc-badge").inner_text() == "done"
    assert "(edited)" in page.locator(f"{CHAT} .cmdc-tool.ok").inner_text()
    assert page.locator(f"{CHAT} button:has-text('Approve')").count() == 0
    assert (
        lab.kernel("print([m['content'] for m in agent.messages if m['role'] == 'tool'][-1])")
        == "deployed 2.4.2 to prod"
    )

    # the reply's table is ruled and its numbers right-aligned; its code has one Copy button that copies
    # (the streaming bubble is redrawn once more when the reply ends, so the check waits for the
    # final drawing instead of reading a cell the redraw may have just detached)
    try:
        page.wait_for_function(
            """sel => [...document.querySelectorAll(sel)].some(m => {
                const cells = m.textContent.includes("All green") ? m.querySelectorAll("td") : [];
                return cells.length > 1 && getComputedStyle(cells[0]).borderTopWidth === "1px"
                    && getComputedStyle(cells[1]).textAlign === "right";
            })""",
            arg=f"{CHAT} .cmdc-msg",
            timeout=60_000,
        )
    except Exception as exc:  # say what was drawn instead
        drawn = page.evaluate(
            """sel => [...document.querySelectorAll(sel)].filter(m => m.textContent.includes("All green"))
                .map(m => [m.isConnected, m.outerHTML.slice(0, 3000),
                           [...m.querySelectorAll("td")].map(c => getComputedStyle(c).textAlign)])""",
            f"{CHAT} .cmdc-msg",
        )
        raise AssertionError(f"the reply's table was not drawn ruled and aligned: {drawn!r}") from exc
    reply = page.locator(f"{CHAT} .cmdc-msg:has-text('All green')")
    copy = reply.locator(".cmdc-code > button.cmdc-copy")
    copy.wait_for(timeout=WAIT_MS)
    assert copy.count() == 1 and copy.inner_text() == "Copy"
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy.click()
    page.wait_for_function(
        f"() => document.querySelector('{CHAT} .cmdc-code > .cmdc-copy').textContent === 'Copied'",
        timeout=WAIT_MS,
    )
    assert page.evaluate("() => navigator.clipboard.readText()").strip() == "print(release.version)"
    assert newest_in_view(lab) is True

    # a long reply: the elapsed time shows while it writes; Stop shows at once and ends the cursor
    send(lab, "Tell me everything about the release")
    page.wait_for_selector(f"{CHAT} .cmdc-msg:has-text('Here is everything')", timeout=WAIT_MS)
    page.wait_for_function(
        f"() => /writing… [1-9]\\d* s/.test(document.querySelector('{CHAT} .cmdc-status').textContent)",
        timeout=WAIT_MS,
    )
    assert newest_in_view(lab) is True
    page.locator(f"{CHAT} .cmdc-chat-footer button:has-text('Stop')").click()
    page.wait_for_selector(f"{CHAT} .cmdc-stopped", timeout=WAIT_MS)
    assert newest_in_view(lab) is True
    assert "▍" not in page.locator(f"{CHAT} .cmdc-log").inner_text()
    for name in ("Stop", "Steer"):
        assert page.locator(f"{CHAT} .cmdc-chat-footer button:has-text('{name}')").is_disabled()
    assert_all_right(looks_right_everywhere(lab, "stopped"))

    # a model with no key: picking it says so at once, and the agent keeps a model that can answer
    picker = page.locator(f"{CHAT} select")
    picker.select_option(label="openai/gpt-4o-mini · no key")
    page.wait_for_function(
        f"() => /no key for openai: set OPENAI_API_KEY, or pick an offline model/"
        f".test(document.querySelector('{CHAT} .cmdc-status').textContent)",
        timeout=WAIT_MS,
    )
    offline = lab.kernel("print(script.model)")
    assert lab.kernel("print(agent.model)") == offline
    assert picker.evaluate("s => s.options[s.selectedIndex].text") == offline

    # a reply the provider refuses: one sentence with the remedy, once, the details behind a disclosure
    lab.kernel("script.turns.append(Turn(error='bad_request'))")
    send(lab, "And now something the provider refuses")
    page.wait_for_selector(f"{CHAT} .cmdc-error", timeout=WAIT_MS)
    page.wait_for_function(
        f"() => /failed/.test(document.querySelector('{CHAT} .cmdc-status').textContent)", timeout=WAIT_MS
    )
    assert newest_in_view(lab) is True
    errors = page.locator(f"{CHAT} .cmdc-error")
    assert errors.count() == 1
    assert (
        errors.locator("p").inner_text()
        == "⚠ scripted refused the request: see the details, or pick another model"
    )
    assert errors.locator("details:not([open])").count() == 1
    seen = looks_right_everywhere(lab, "error")
    assert_all_right(seen)
    # the footer's buttons keep their labels beside the status line, even at 760 px
    for name in ("Send", "Steer", "Stop", "Export"):
        button = page.locator(f"{CHAT} .cmdc-chat-footer button:has-text('{name}')")
        assert button.evaluate("b => b.scrollWidth <= b.clientWidth") is True, name

    # scrolled up to read, the user is not yanked down: a "new messages ↓" button appears instead
    lab.kernel("script.turns.append(Turn('One more thing.'))")
    page.evaluate(f"() => {{ document.querySelector('{CHAT} .cmdc-scroll').scrollTop = 0; }}")
    page.wait_for_timeout(300)
    lab.kernel("agent.prompt('anything else?')")
    page.wait_for_selector(f"{CHAT} .cmdc-msg:has-text('One more thing')", state="attached", timeout=WAIT_MS)
    assert newest_in_view(lab) is False
    more = page.locator(f"{CHAT} .cmdc-follow-more")
    assert more.is_visible() and more.inner_text() == "new messages ↓"
    more.click()
    assert newest_in_view(lab) is True and not more.is_visible()

    assert lab.console_errors[errors_before:] == []


STORED = '''
import os, tempfile
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp()  # a database of its own, whatever the other notebooks made
import cmdc_nb
from cmdc_nb import accounts, approvals, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ChatWidget

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")

@tool(requires_approval=True)
def publish(channel: str, text: str) -> str:
    """Publish a post."""
    return f"published to {channel}"

script = Script([
    Turn("Publishing.", tool_calls=[call("publish", channel="blog", text="Release 2.4 is out")]),
    Turn("And once more.", tool_calls=[call("publish", channel="blog", text="Release 2.4 is out")]),
    "Published twice.",
])
agent = Agent(model=script.model, tools=[publish], name="Announcer",
              session=sessions.create_session(me, name="Release notes"))
chat = ChatWidget(agent, height="360px")
chat.add_class("chat-under-test-box")
chat
'''


def test_always_allow_is_remembered_on_screen_and_in_the_database(lab: Any) -> None:
    lab.open("chat_always", [STORED], done=f"{CHAT} .cmdc-log")
    page = lab.page
    errors_before = len(lab.console_errors)
    send(lab, "Announce the release")
    always = page.locator(f"{CHAT} .cmdc-tool.waiting button:has-text('Always allow')")
    always.wait_for(timeout=WAIT_MS)
    assert "with exactly these arguments in this session" in (always.get_attribute("title") or "")
    # four buttons in a waiting card: all readable, none overflowing, in every look
    assert_all_right(looks_right_everywhere(lab, "always-allow"))

    always.click()
    page.wait_for_selector(f"{CHAT} .cmdc-msg:has-text('Published twice')", timeout=WAIT_MS)
    cards = page.locator(f"{CHAT} .cmdc-tool")
    assert cards.count() == 2 and page.locator(f"{CHAT} button:has-text('Approve')").count() == 0
    first, second = cards.nth(0).inner_text(), cards.nth(1).inner_text()
    assert "approved by ada@example.com" in first
    assert "remembered: from now on publish with exactly these arguments in this session" in first
    assert "approved by a remembered “Always allow” (rule ‘Always allow publish’" in second
    assert page.locator(f"{CHAT} .cmdc-tool.ok .cmdc-badge").all_inner_texts() == ["done", "done"]
    # … and what the database holds: one sticky rule for exactly that call, and the second call's audit
    assert (
        lab.kernel(
            "print([(r.name, r.is_sticky, r.conditions) for r in approvals.list_approval_rules(me).entries])"
        )
        == "[('Always allow publish', True, {'input': {'channel': 'blog', 'text': 'Release 2.4 is out'}})]"
    )
    assert (
        lab.kernel(
            "from cmdc_nb import frames; print(list(frames.approvals_frame(user=me)[['how', 'decided_by']]"
            ".itertuples(index=False, name=None)))"
        )
        == "[('person', 'ada@example.com'), ('remembered', 'Always allow publish')]"
    )
    assert newest_in_view(lab) is True
    lab.shot(f"chat-always-allowed-{look_name(*LOOKS[-1])}", CHAT)
    assert lab.console_errors[errors_before:] == []
