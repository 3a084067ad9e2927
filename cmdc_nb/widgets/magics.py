"""IPython magics: `%load_ext cmdc_nb`, then

- `%%chat [agent]` — send the cell to the agent (a variable's name; default: the newest agent in the
  notebook, said in one line when there are several) and show its ChatWidget — once: an agent has one
  chat, and a later `%%chat` cell says where it is ("sent to a — the chat is in cell [3]"),
  unless no view of it is left (its output was cleared, or that cell is the one running again);
- `%cmdc status` — every agent of the notebook: state, model, turns, messages, tokens, cost, as a table
  kept current while the agents run (printed once where there is no front end to draw it);
- `%cmdc cost` — tokens and cost per agent, and the workspace's spend today and this month;
- `%cmdc approvals` — the ApprovalQueue of the agent's user (or the only user);
- `%cmdc use <agent>` — the agent `%%chat` talks to.
"""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel.agent import Agent

__all__ = ["CmdcMagics", "load_ipython_extension"]


@magics_class
class CmdcMagics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.current: Agent | None = None
        self._widgets: dict[str, Any] = {}
        # agent id → (number, id) of the cell that shows its chat
        self._shown: dict[str, tuple[int, str | None]] = {}
        # agent id → whether a front end has drawn its chat since it was last displayed
        self._viewed: dict[str, bool] = {}
        self._status: Any = None  # the live `%cmdc status` table, made on first use
        # The number in the running cell's prompt. IPython counts a cell before running it, so while
        # cell [3] runs `execution_count` is already 4; it says which cell runs in pre_run_cell.
        self._running: int | None = None
        events = getattr(shell, "events", None)
        if events is not None:
            events.register("pre_run_cell", self._cell_starts)
            events.register("post_run_cell", self._cell_ends)

    def _cell_starts(self, info: Any) -> None:
        counted = getattr(info, "store_history", False) and not getattr(info, "silent", False)
        self._running = getattr(self.shell, "execution_count", 1) - 1 if counted else None

    def _cell_ends(self, _result: Any = None) -> None:
        self._running = None

    @property
    def user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _agents(self) -> list[Agent]:
        found = {id(v): v for v in self.user_ns.values() if isinstance(v, Agent) and v.alive}
        return sorted(found.values(), key=lambda a: a.created_at)

    def agent(self, name: str = "") -> Agent:
        name = name.strip()
        if name:
            value = self.user_ns.get(name)
            if not isinstance(value, Agent):
                raise InvalidInputError(f"{name!r} is not an agent in this notebook")
            return value
        agents = self._agents()
        current = self.current
        if current is not None and any(a is current for a in agents):  # `%cmdc use`, still in the notebook
            return current
        if not agents:
            raise InvalidInputError(
                "no agent yet: create one (cmdc_nb.kernel.Agent(...)) or name it: %%chat my_agent"
            )
        return agents[-1]

    def name_of(self, agent: Agent) -> str:
        """The agent as the notebook calls it: its variable's name (with its own name when that differs:
        "a (first)"), else its own name, else its id."""
        own = agent.options.name
        for key, value in self.user_ns.items():
            if value is agent and not key.startswith("_"):
                return f"{key} ({own})" if own and own != key else key
        return own or agent.id[:8]

    def widget(self, agent: Agent) -> Any:
        from cmdc_nb.widgets.chat import ChatWidget

        if agent.id not in self._widgets:
            chat = ChatWidget(agent)
            chat._view_count = 0  # the front end counts the views it shows (None would not count)
            key = agent.id

            def drawn(change: Any) -> None:
                if (change["new"] or 0) > 0:
                    self._viewed[key] = True

            chat.observe(drawn, names="_view_count")
            self._widgets[agent.id] = chat
        return self._widgets[agent.id]

    @cell_magic
    def chat(self, line: str, cell: str) -> Any:
        """Send the cell to an agent and show its chat, once per agent (see the module docstring): the
        chat is one live view that goes on, as jupyter-ai keeps one chat panel that its %%ai cells add
        to, not a copy per cell."""
        agent = self.agent(line)
        if not line.strip() and agent is not self.current and len(self._agents()) > 1:
            print(f"%%chat → {self.name_of(agent)}, the newest agent (name another: %%chat <agent>)")
        chat = self.widget(agent)
        if cell.strip():
            chat.send(cell.strip())
        count = self._running if self._running is not None else getattr(self.shell, "execution_count", 0)
        here = (count, self._cell_id())
        shown = self._shown.get(agent.id)
        open_now = (chat._view_count or 0) > 0
        # displayed, and the front end has not drawn it yet (Run All runs the next cell first)
        coming = shown is not None and not self._viewed.get(agent.id, False)
        # shown still: a view is open or coming, and not in this cell (re-running it replaces its output)
        if shown is not None and (open_now or coming) and (shown[1] is None or shown[1] != here[1]):
            print(f"sent to {self.name_of(agent)} — the chat is in cell [{shown[0]}]")
            return None
        self._shown[agent.id] = here
        self._viewed[agent.id] = False  # until the front end draws this display
        return chat

    def _cell_id(self) -> str | None:
        """The running cell's id, which JupyterLab sends with each execution (None elsewhere)."""
        kernel = getattr(self.shell, "kernel", None)
        try:
            parent = kernel.get_parent("shell") if kernel is not None else {}
        except Exception:  # an older kernel without get_parent: cells are told apart by view count only
            return None
        cell_id = (parent.get("metadata") or {}).get("cellId")
        return str(cell_id) if cell_id else None

    @line_magic
    def cmdc(self, line: str) -> Any:
        """%cmdc status | cost | approvals | use <agent>"""
        words = line.split()
        what = words[0] if words else "status"
        if what == "use":
            self.current = self.agent(words[1] if len(words) > 1 else "")
            return None
        if what == "status":
            return self._status_view()
        if what == "cost":
            from cmdc_nb.services import costs

            for a in self._agents():
                print(
                    f"{a.options.name or a.id[:8]:<20} {a.usage.input:>8} in {a.usage.output:>8} out  {a.cost_usd}"
                )
            user = self._user()
            if user is not None:
                ws = self._ws()
                print(
                    f"today {costs.get_daily_cost(user, ws=ws)}  this month {costs.get_monthly_cost(user, ws=ws)}"
                )
            return None
        if what == "approvals":
            from cmdc_nb.widgets.approvals import ApprovalQueue

            user = self._user()
            if user is None:
                raise InvalidInputError(
                    "no user: approvals belong to a user (an agent that stores to a session has one)"
                )
            return ApprovalQueue(user, ws=self._ws())
        raise InvalidInputError(f"unknown %cmdc command {what!r}: status, cost, approvals, use <agent>")

    def _status_view(self) -> Any:
        """The live table in a kernel with a front end (one, however often it is asked for: every view
        of it stays current); the text of it elsewhere (a terminal, a script)."""
        from cmdc_nb.widgets._status import StatusTable, status_text

        shell = self.shell
        if shell is None or getattr(shell, "kernel", None) is None:
            print(status_text(self._agents(), self.name_of))
            return None
        if self._status is None:
            self._status = StatusTable(self._agents, self.name_of)
            # agents made in later cells join the table when their cell ends
            shell.events.register("post_run_cell", self._status_after_cell)
        else:
            self._status.refresh()
        return self._status

    def _status_after_cell(self, _result: Any = None) -> None:
        if self._status is not None:
            self._status.refresh()

    def _ws(self) -> Any:
        for a in reversed(self._agents()):
            if a.recorder.enabled:
                return a.recorder.ws
        return None

    def _user(self) -> Any:
        for a in reversed(self._agents()):
            if a.recorder.user_id is not None:
                return a.recorder.user_id
        from cmdc_nb.services import accounts

        users = accounts.list_users(limit=2).entries
        return users[0] if len(users) == 1 else None


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(CmdcMagics)
