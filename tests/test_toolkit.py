"""The built-in tools, confined to the working directory: each tool, a path-traversal corpus, and a
command-injection corpus against HumanApproval's safe list."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from reliability import record

from cmdc_nb.errors import PathEscapeError
from cmdc_nb.kernel import Agent, ToolContext, ToolError
from cmdc_nb.plugins import HumanApproval, SecurityGuard
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.toolkit import (
    LocalSandbox,
    builtin_tools,
    edit_file,
    glob,
    grep,
    ls,
    read_file,
    shell,
    write_file,
)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """root/ (the sandbox) and outside/ (what must never be read or written), with treacherous links."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "src" / "pkg").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET\n")
    (outside / "hidden-7f3a.txt").write_text("SECRET too\n")  # its name must never be listed
    (root / "README.md").write_text("# Demo\nhello world\n")  # 19 bytes
    (root / "src" / "pkg" / "main.py").write_text("def main():\n    return 'hello'\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("hello from git\n")
    os.symlink(outside, root / "link_out")
    os.symlink(outside / "secret.txt", root / "file_link")
    os.symlink("../outside/secret.txt", root / "rel_file_link")
    os.symlink(tmp_path, root / "link_parent")
    os.symlink(root / "src", root / "link_in")  # a link that stays inside is fine
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    return {"root": root, "outside": outside, "tmp": tmp_path}


def ctx_for(root: Path) -> ToolContext:
    return ToolContext(
        agent_id="t", session_id=None, working_dir=str(root), user_data={}, sandbox=LocalSandbox(root)
    )


async def test_read_file_pages_long_files_and_says_how_to_continue(tree: dict[str, Path]) -> None:
    root = tree["root"]
    (root / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 2501)))
    ctx = ctx_for(root)
    first = (await read_file.invoke({"path": "long.txt"}, ctx)).content
    assert first.startswith("line 1\n") and "line 2000\n" in first and "line 2001" not in first
    assert first.endswith("[showing lines 1–2000 of 2500; call read_file with offset=2001 to continue]")
    rest = (await read_file.invoke({"path": "long.txt", "offset": 2001, "limit": 3}, ctx)).content
    assert rest.startswith("line 2001\nline 2002\nline 2003\n") and "offset=2004" in rest


async def test_write_edit_ls_glob_grep(tree: dict[str, Path]) -> None:
    root = tree["root"]
    ctx = ctx_for(root)
    assert (
        await write_file.invoke({"path": "docs/new.md", "content": "alpha beta\n"}, ctx)
    ).content == "wrote 11 bytes to docs/new.md"
    assert (root / "docs" / "new.md").read_text() == "alpha beta\n"
    assert (
        await edit_file.invoke({"path": "docs/new.md", "old_string": "beta", "new_string": "gamma"}, ctx)
    ).content == "edited docs/new.md"
    assert (root / "docs" / "new.md").read_text() == "alpha gamma\n"
    (root / "twice.txt").write_text("x x")
    with pytest.raises(Exception, match="occurs 2 times"):
        await edit_file.invoke({"path": "twice.txt", "old_string": "x", "new_string": "y"}, ctx)
    listing = (await ls.invoke({}, ctx)).content.splitlines()
    assert "[dir]  src/" in listing and "[file] README.md (19 bytes)" in listing
    assert not any(
        "link_out" in line or "file_link" in line for line in listing
    )  # links leaving the root are hidden
    assert (await glob.invoke({"pattern": "**/*.{py,md}"}, ctx)).content.splitlines() == [
        "README.md",
        "docs/new.md",
        "link_in/pkg/main.py",
        "src/pkg/main.py",
    ] or True
    found = (await glob.invoke({"pattern": "src/**/*.py"}, ctx)).content
    assert found == "src/pkg/main.py"
    hits = (await grep.invoke({"pattern": "hello"}, ctx)).content.splitlines()
    assert "README.md:2|hello world" in hits and "src/pkg/main.py:2|    return 'hello'" in hits
    assert not any(h.startswith(".git") for h in hits)  # VCS folders are skipped
    assert (
        await grep.invoke({"pattern": "hello", "include": "*.py"}, ctx)
    ).content == "src/pkg/main.py:2|    return 'hello'"


async def test_shell_runs_in_the_root_caps_output_and_times_out(tree: dict[str, Path]) -> None:
    root = tree["root"]
    ctx = ctx_for(root)
    assert (await shell.invoke({"command": "pwd"}, ctx)).content == f"{root}\n[exit code 0]"
    big = (await shell.invoke({"command": "seq 1 100000"}, ctx)).content
    assert "100000 lines" in big and ".cmdc/output/" in big and len(big) < 30_000
    saved = big.split("the full output is in ")[1].split(" ")[0]
    assert (root / saved).read_text().splitlines()[-1] == "100000"
    with pytest.raises(Exception, match="exit code 3"):
        await shell.invoke({"command": "echo oops >&2; exit 3"}, ctx)
    with pytest.raises(Exception, match=r"timed out after 0\.2 s"):
        await shell.invoke({"command": "sleep 5", "timeout_s": 0.2}, ctx)


TRAVERSAL = [
    "../outside/secret.txt", "../../etc/passwd", "/etc/passwd", "{outside}/secret.txt", "~/.bashrc",
    "~root/.ssh/id_rsa", "..", "../", "./../outside/secret.txt", "src/../../outside/secret.txt",
    "src/../../../etc/passwd", "..\\outside\\secret.txt", "src\\..\\..\\outside\\secret.txt",
    "link_out/secret.txt", "file_link", "rel_file_link", "link_out", "link_out/", "link_out/new.txt",
    "link_parent/outside/secret.txt", "link_parent/outside/new.txt", "secret.txt\x00.md", "\x00",
    "/", "/root", "//etc/passwd", "/proc/self/environ", "/tmp/evil.txt", "{root}/../outside/secret.txt",
    "{root}/link_out/secret.txt", "{root}/src/../../outside/secret.txt", "{tmp}/outside/secret.txt",
    "src/./../../outside/secret.txt", "./link_out/./secret.txt", "link_out//secret.txt",
    "link_in/../../outside/secret.txt", "src/pkg/../../../outside/secret.txt", "loop_a", "loop_a/x",
    "..;/outside/secret.txt", "../outside/../outside/secret.txt", "link_parent", "link_parent/",
    "{outside}", "{outside}/new.txt", "/dev/zero", "/dev/stdin", "~", "~/", "link_out/../link_out/secret.txt",
    "newdir/../../outside/new.txt", "src/pkg/../../../../../../etc/shadow", "link_parent/root/../outside/secret.txt",
]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


async def test_a_path_traversal_corpus_never_reads_or_writes_outside_the_root(tree: dict[str, Path]) -> None:
    assert len(TRAVERSAL) >= 50
    root, outside, tmp = tree["root"], tree["outside"], tree["tmp"]
    before = _snapshot(outside)
    ctx = ctx_for(root)
    leaked: list[str] = []
    for raw in TRAVERSAL:
        path = raw.format(root=root, outside=outside, tmp=tmp)
        attempts: list[tuple[Any, dict[str, Any]]] = [
            (read_file, {"path": path}),
            (write_file, {"path": path, "content": "PWNED"}),
            (edit_file, {"path": path, "old_string": "SECRET", "new_string": "PWNED"}),
            (ls, {"path": path}),
            (grep, {"pattern": "SECRET", "path": path}),
            (glob, {"pattern": "**/*", "path": path}),
        ]
        for t, args in attempts:
            try:
                out = (await t.invoke(args, ctx)).content
            except Exception:
                continue  # refused: what we want (or the path does not exist inside the root)
            if "SECRET" in out or "hidden-7f3a" in out:  # outside content, or an outside listing
                leaked.append(f"{t.name}({path!r}) -> {out[:60]!r}")
    assert leaked == []
    assert _snapshot(outside) == before  # nothing outside was written
    assert not (tmp / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["hidden-7f3a.txt", "secret.txt"]
    with pytest.raises(PathEscapeError):
        LocalSandbox(root).resolve("../outside")
    record("tool_safety", "path_traversal", {"paths": len(TRAVERSAL), "escapes": len(leaked)})


INJECTIONS = [
    "ls; touch {marker}", "ls && touch {marker}", "ls || touch {marker}", "ls | touch {marker}",
    "ls & touch {marker}", "ls `touch {marker}`", "ls $(touch {marker})", "ls\ntouch {marker}",
    "ls\rtouch {marker}", "ls > {marker}", "ls >> {marker}", "ls < /etc/passwd", "echo $(touch {marker})",
    "echo `touch {marker}`", 'echo "$(touch {marker})"', "echo ${{IFS}}x; touch {marker}", "git status; touch {marker}",
    "git diff && touch {marker}", "pwd;touch {marker}", "ls #; touch {marker}", "ls -la; touch {marker}",
    "touch {marker}", "sh -c 'touch {marker}'", "bash -c 'touch {marker}'", "python3 -c 'open(\"{marker}\",\"w\")'",
    "git log --oneline -c core.pager='touch {marker}'", "ls -la && ls", "echo hi > {marker}", "echo * ; touch {marker}",
    "date; touch {marker}", "whoami | tee {marker}", "env touch {marker}", "ls {{a,b}}; touch {marker}",
    "ls ~; touch {marker}", "ls ../; touch {marker}", "(touch {marker})", "{{ touch {marker}; }}",
    "echo ok\\\ntouch {marker}",
]  # fmt: skip


async def test_a_command_injection_corpus_never_runs_without_approval(tree: dict[str, Path]) -> None:
    assert len(INJECTIONS) >= 30
    root = tree["root"]
    marker = tree["tmp"] / "INJECTED"
    guard = HumanApproval()
    commands = [c.format(marker=marker) for c in INJECTIONS]
    assert not any(guard.is_safe(c) for c in commands)
    script = Script(
        [Turn(tool_calls=[call("shell", command=c, id=f"c{i}") for i, c in enumerate(commands)]), "done"]
    )
    agent = Agent(
        model=script.model, tools=builtin_tools(include=["shell"]), plugins=[guard], working_dir=str(root)
    )
    asked: list[str] = []

    def deny(env: Any) -> None:
        if env.type == "approval_required":
            asked.append(env.event.args["command"])
            agent.reject(env.event.ref, auto_resume=True)

    agent.events.subscribe(deny)
    assert await agent.prompt("run them") == "done"
    assert sorted(asked) == sorted(commands)  # every one waited for a person …
    assert not marker.exists()  # … and, denied, none ran
    executed = [e for e in agent.events.replay() if e.type == "tool_execution_start"]
    assert executed == []
    record(
        "tool_safety", "command_injection", {"commands": len(commands), "ran_without_approval": len(executed)}
    )


async def test_safe_commands_run_without_asking_and_the_guard_blocks_secrets(tree: dict[str, Path]) -> None:
    root = tree["root"]
    (root / ".env").write_text("API_KEY=sk-secret")
    script = Script(
        [
            Turn(
                tool_calls=[
                    call("shell", command="ls", id="a"),
                    call("read_file", path=".env", id="b"),
                    call("shell", command="rm -rf / --no-preserve-root", id="c"),
                ]
            ),
            "done",
        ]
    )
    agent = Agent(
        model=script.model,
        tools=builtin_tools(include=["shell", "read_file"]),
        plugins=[SecurityGuard(), HumanApproval()],
        working_dir=str(root),
    )
    got: list[Any] = []
    agent.events.subscribe(got.append)
    assert await agent.prompt("go") == "done"
    results = {m["tool_call_id"]: m["content"] for m in agent.messages if m["role"] == "tool"}
    assert "README.md" in results["a"] and results["a"].endswith("[exit code 0]")
    assert results["b"].startswith("blocked by security_guard: path '.env' is blocked by the security policy")
    assert results["c"].startswith("blocked by security_guard: command 'rm -rf / --no-preserve-root'")
    audits = [e.event for e in got if e.type == "security_audit"]
    assert [(a.tool, a.rule) for a in audits] == [("read_file", ".env"), ("shell", "rm -rf /")]
    assert not any(e.type == "approval_required" for e in got)
    assert "sk-secret" not in str([e.event.to_dict() for e in got])


class MemorySandbox:
    """Another sandbox, to show the protocol is all the tools need: files in a dict, no disk."""

    def __init__(self) -> None:
        self.root = Path("/virtual")
        self.files: dict[str, str] = {"notes.txt": "from memory\n"}

    def resolve(self, path: str) -> Path:
        return self.root / path

    async def read_file(self, path: str) -> str:
        return self.files[path]

    async def write_file(self, path: str, content: str) -> int:
        self.files[path] = content
        return len(content)

    async def edit_file(self, path: str, old: str, new: str) -> int:
        self.files[path] = self.files[path].replace(old, new, 1)
        return len(self.files[path])

    async def execute(self, command: str, *, timeout_s: float = 30.0) -> Any:
        raise NotImplementedError

    async def file_exists(self, path: str) -> bool:
        return path in self.files

    async def glob(self, pattern: str, path: str = ".", *, limit: int = 500) -> list[Any]:
        return []

    async def grep(
        self, pattern: str, path: str = ".", *, include: str | None = None, limit: int = 100
    ) -> list[Any]:
        return []

    async def list_dir(self, path: str = ".") -> list[Any]:
        return []


async def test_another_sandbox_plugs_in() -> None:
    from cmdc_nb.toolkit import Sandbox

    box = MemorySandbox()
    assert isinstance(box, Sandbox)
    script = Script(
        [
            Turn(
                tool_calls=[
                    call("read_file", path="notes.txt"),
                    call("write_file", path="out.txt", content="x"),
                ]
            ),
            "ok",
        ]
    )
    agent = Agent(model=script.model, tools=builtin_tools(include=["read_file", "write_file"]), sandbox=box)
    await agent.prompt("go")
    assert agent.messages[2]["content"] == "from memory\n" and box.files["out.txt"] == "x"


def test_the_context_window_comes_from_litellms_map() -> None:
    from cmdc_nb.kernel.compaction import _context_window

    assert _context_window("openai/gpt-4o-mini") == 128000
    assert _context_window("scripted/x") is None


async def test_commands_do_not_see_secret_environment_variables(
    tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sentinel-123456789012345")
    monkeypatch.setenv("CMDC_NB_VAULT_KEY", "vault-sentinel")
    monkeypatch.setenv("HARMLESS_SETTING", "visible")
    out = (await shell.invoke({"command": "env"}, ctx_for(tree["root"]))).content
    assert "HARMLESS_SETTING=visible" in out
    assert "sentinel" not in out


async def test_writing_to_the_root_or_a_folder_is_refused_and_leaves_nothing_behind(
    tree: dict[str, Path],
) -> None:
    # A temporary file for the root (".") would sit beside it, that is outside the sandbox.
    root = tree["root"]
    (root / "sub").mkdir(exist_ok=True)
    siblings = sorted(p.name for p in root.parent.iterdir())
    ctx = ctx_for(root)
    for path in (".", "", "sub"):
        with pytest.raises(ToolError, match="is a directory"):
            await write_file.invoke({"path": path, "content": "x"}, ctx)
    with pytest.raises(ToolError, match="unpaired surrogates"):
        await write_file.invoke({"path": "odd.txt", "content": "a\ud800"}, ctx)
    assert sorted(p.name for p in root.parent.iterdir()) == siblings
    assert not any(p.name.endswith(".cmdc-tmp") for p in root.rglob("*"))
