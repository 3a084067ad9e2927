"""No race leads a file tool out of the sandbox.

A thread swaps, as fast as it can, a folder and a file of the sandbox for symlinks to a folder outside
it that holds files of the same names — the classic check-then-use attack on a path checked by name
and then opened by name. Meanwhile each file tool (read, write, edit, list, glob, grep) is called again
and again on those paths. An escape is any sight of the outside files' contents or names, or any change
to them. The sandbox walks every path through directory descriptors with O_NOFOLLOW
(`cmdc_nb.kernel.beneath`), so there is no window to hit: 0 escapes, whatever the interleaving.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from race_children import swap_forever
from reliability import record, sized

from cmdc_nb.errors import SandboxError
from cmdc_nb.plugins import CODER
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.toolkit import LocalSandbox

ATTEMPTS = sized(2_000, 10_000)
# Calls that must get through for the race to count as exercised. A loaded machine lets the swapper win
# most interleavings (edit_file, the longest, was answered 1.7 % of the time in a full CI run), so the
# test calls on, up to 5 × ATTEMPTS, until this many were answered.
ANSWERED = ATTEMPTS // 20
AGENT_CALLS = sized(150, 300)
SECRET = "OUTSIDE-SECRET"


class Swapper:
    """Swaps `root/d` (a folder) and `root/f.txt` (a file) for symlinks to their outside twins and back,
    from another process, until stopped. Counts the swaps, so a test can show the race really ran."""

    def __init__(self, root: Path, outside: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._swaps = ctx.Value("q", 0)
        self._proc = ctx.Process(target=swap_forever, args=(str(root), str(outside), self._stop, self._swaps))

    @property
    def swaps(self) -> int:
        return int(self._swaps.value)

    def __enter__(self) -> Swapper:
        self._proc.start()
        while self.swaps < 10 and self._proc.is_alive():  # racing before the first call
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(30)


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[dict[str, Any]]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (root / "d" / "inside.txt").write_text("INSIDE marker\n")
    (root / "f.txt").write_text("INSIDE file marker\n")
    (outside / "inside.txt").write_text(f"{SECRET} marker\n")
    (outside / "f.txt").write_text(f"{SECRET} file marker\n")
    (outside / "outside-only.txt").write_text(f"{SECRET}\n")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in outside.iterdir()}
    yield {"root": root, "outside": outside, "box": LocalSandbox(root)}
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in outside.iterdir()}
    assert after == before, "a file outside the sandbox was written or created"


def _seen_outside(result: Any) -> bool:
    text = repr(result)
    return SECRET in text or "outside-only" in text


def _calls(box: LocalSandbox, i: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call per tool, on the swapped paths (`d/...` goes through the swapped folder, `f.txt` is
    itself swapped)."""
    return {
        "read_file": lambda: box.read_file("d/inside.txt" if i % 2 else "f.txt"),
        "write_file": lambda: box.write_file("d/inside.txt" if i % 2 else "f.txt", f"INSIDE marker {i}\n"),
        "edit_file": lambda: box.edit_file("d/inside.txt" if i % 2 else "f.txt", "marker", "marker"),
        "ls": lambda: box.list_dir("d" if i % 2 else "."),
        "glob": lambda: box.glob("**/*", "d" if i % 2 else "."),
        "grep": lambda: box.grep("marker|SECRET", "d" if i % 2 else "."),
    }


@pytest.mark.parametrize("tool", ["read_file", "write_file", "edit_file", "ls", "glob", "grep"])
async def test_no_file_tool_follows_a_swapped_symlink_out(arena: dict[str, Any], tool: str) -> None:
    box: LocalSandbox = arena["box"]
    escapes, refused, answered, untyped = 0, 0, 0, 0
    with Swapper(arena["root"], arena["outside"]) as swapper:
        # ATTEMPTS calls, and more while fewer than ANSWERED got through (see ANSWERED)
        attempts = 0
        while attempts < ATTEMPTS or (answered < ANSWERED and attempts < 5 * ATTEMPTS):
            i, attempts = attempts, attempts + 1
            try:
                result = await _calls(box, i)[tool]()
            except SandboxError:  # "not found" or "not a directory" mid-swap: refused, not escaped
                refused += 1
                continue
            except OSError:  # an untyped error is a defect of its own
                untyped += 1
                continue
            answered += 1
            escapes += _seen_outside(result)
    record(
        "tool_races",
        tool,
        {"attempts": attempts, "escapes": escapes, "untyped_errors": untyped, "swaps": swapper.swaps},
    )
    assert (escapes, untyped) == (0, 0)
    assert swapper.swaps >= 20, "the racing process hardly ran: the test proves nothing"
    assert answered >= ANSWERED, "the tool hardly ever answered: the race was not exercised"


async def test_a_swap_in_the_last_step_is_walked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that becomes a link between the walk and the open is not followed: the open (O_NOFOLLOW)
    fails and the walk runs again, now seeing the link — here one leading outside, so it is refused."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "a.txt").write_text(SECRET)
    (root / "a.txt").write_text("inside")
    box = LocalSandbox(root)
    real_open = os.open

    def swap_then_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if path == "a.txt" and (root / "a.txt").is_file() and not (root / "a.txt").is_symlink():
            (root / "a.txt").unlink()
            (root / "a.txt").symlink_to(outside / "a.txt")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(SandboxError, match="outside the working directory"):
        await box.read_file("a.txt")


async def test_an_agent_with_guards_on_reads_nothing_outside_while_racing(arena: dict[str, Any]) -> None:
    """The red team's scenario: an agent from CODER (SecurityGuard and HumanApproval on) reads the
    swapped paths again and again while the swap runs."""
    # A different `limit` each time (the same call three times over is stopped as a loop), and a read of
    # a file nobody swaps in each turn (five turns of refused calls in a row are stopped too).
    per_turn = 6  # six reads a turn: the agent's max_turns stays out of the way
    turns = [
        Turn(
            tool_calls=[
                *(
                    call("read_file", path="d/inside.txt" if j % 2 else "f.txt", limit=100 + i * per_turn + j)
                    for j in range(per_turn)
                ),
                call("read_file", path="calm.txt", limit=100 + i),
            ]
        )
        for i in range(AGENT_CALLS // per_turn)
    ]
    script = Script([*turns, "done"])
    (arena["root"] / "calm.txt").write_text("calm\n")
    agent = CODER.create(model=script.model, working_dir=str(arena["root"]))
    results: list[str] = []
    agent.events.subscribe(
        lambda env: results.append(env.event.result) if env.type == "tool_execution_end" else None
    )
    with Swapper(arena["root"], arena["outside"]):
        await agent.prompt("read those files")
    await agent.stop()
    record(
        "tool_races",
        "agent_read_file",
        {"attempts": len(results), "escapes": sum(map(_seen_outside, results))},
    )
    assert len(results) == (AGENT_CALLS // per_turn) * (per_turn + 1)
    assert not any(_seen_outside(r) for r in results)
    assert any("INSIDE" in r for r in results), "no call ever read the file: the test proves nothing"


async def test_links_that_stay_inside_still_work(tmp_path: Path) -> None:
    """What the walk allows: relative and absolute links inside the root, followed for every tool."""
    root = tmp_path / "root"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("print('a')\n")
    (root / "abs").symlink_to(root / "src")
    (root / "rel").symlink_to("src")
    (root / "file").symlink_to("src/a.py")
    box = LocalSandbox(root)
    assert await box.read_file("abs/a.py") == "print('a')\n"
    assert await box.read_file("file") == "print('a')\n"
    await box.write_file("rel/b.py", "b\n")
    assert (root / "src" / "b.py").read_text() == "b\n"
    await box.write_file("file", "print('A')\n")  # writes the file the link names; the link stays
    assert (root / "file").is_symlink() and (root / "src" / "a.py").read_text() == "print('A')\n"
    assert {e.name for e in await box.list_dir("abs")} == {"a.py", "b.py"}
    assert [m.file for m in await box.grep("print", "rel")] == ["src/a.py"]  # as resolved
    assert box.resolve("abs/a.py") == root / "src" / "a.py"
