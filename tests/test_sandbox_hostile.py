"""The sandbox against what a red team threw at it after the race fixes: every failure a typed
`SandboxError` (never a raw OSError), no call that runs without end, no lost concurrent change, no
set-user-ID bit carried onto new content, names it cannot address never shown, and loader variables
that would make the shell read the working tree dropped."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from cmdc_nb.errors import SandboxError
from cmdc_nb.kernel import sandbox as sandbox_module
from cmdc_nb.kernel.beneath import MAX_READ_BYTES
from cmdc_nb.toolkit import LocalSandbox


@pytest.fixture
def box(tmp_path: Path) -> LocalSandbox:
    root = tmp_path / "root"
    (root / "folder").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    return LocalSandbox(root)


async def test_what_cannot_be_read_is_a_typed_error(box: LocalSandbox, tmp_path: Path) -> None:
    root = box.root
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "s.sock"))
        with pytest.raises(SandboxError, match=r"s\.sock"):
            await box.read_file("s.sock")
    with pytest.raises(SandboxError, match="is a directory"):
        await box.read_file("folder")
    with pytest.raises(SandboxError, match="is a directory"):
        await box.edit_file("folder", "a", "b")
    long = "n" * 256  # longer than any file system's name
    for call in (
        box.read_file(long),
        box.write_file(long, "x"),
        box.list_dir(long),
        box.grep("x", long),
        box.glob("*", long),
    ):
        with pytest.raises(SandboxError, match="too long"):
            await call
    assert await box.file_exists(long) is False
    with pytest.raises(SandboxError, match="too long"):
        box.resolve(long)


async def test_a_vanished_root_is_a_typed_error(tmp_path: Path) -> None:
    root = tmp_path / "gone"
    root.mkdir()
    box = LocalSandbox(root)
    root.rmdir()
    with pytest.raises(SandboxError, match="No such file"):
        await box.read_file("a.txt")
    with pytest.raises(SandboxError):
        await box.write_file("a.txt", "x")
    assert await box.file_exists("a.txt") is False


async def test_a_huge_file_is_refused_whole_and_skipped_by_grep(box: LocalSandbox) -> None:
    with (box.root / "huge.log").open("wb") as f:
        f.truncate(MAX_READ_BYTES + 1)  # sparse: no disk used, but reading it whole would fill memory
    (box.root / "small.log").write_text("needle\n")
    with pytest.raises(SandboxError, match="not read whole"):
        await box.read_file("huge.log")
    assert [m.file for m in await box.grep("needle|\\x00")] == ["small.log"]


async def test_a_pattern_that_backtracks_without_end_is_stopped(
    box: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "GREP_SECONDS", 0.5)
    (box.root / "evil.txt").write_text("a" * 40 + "!\n")  # (a|aa)+$ would take years on this line
    with pytest.raises(SandboxError, match=r"took over 0\.5 s"):
        await box.grep(r"(a|aa)+$")
    assert [m.line for m in await box.grep(r"a+!")] == [1]  # an ordinary pattern still answers


async def test_an_edit_keeps_a_change_made_while_it_was_editing(
    box: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = box.root / "a.txt"
    real_read = box._read
    interfered = []

    def read_then_someone_appends(path: str) -> tuple[bytes, os.stat_result]:
        out = real_read(path)
        if not interfered:  # another writer gets in between this edit's read and its write
            interfered.append(True)
            with target.open("a") as f:
                f.write("appended by someone else\n")
        return out

    monkeypatch.setattr(box, "_read", read_then_someone_appends)
    await box.edit_file("a.txt", "hello", "HELLO")
    assert target.read_text() == "HELLO\nappended by someone else\n"


async def test_new_content_never_keeps_set_user_or_group_id(box: LocalSandbox) -> None:
    tool = box.root / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o6755)
    await box.write_file("tool", "#!/bin/sh\necho new\n")
    mode = stat.S_IMODE(tool.stat().st_mode)
    assert mode == 0o755  # the permissions kept, the ID bits not


async def test_the_longest_legal_name_is_written(box: LocalSandbox) -> None:
    name = "é" * 127 + "x"  # 255 bytes in UTF-8: the longest name a file system takes
    await box.write_file(name, "ok")
    assert (box.root / name).read_text() == "ok"
    assert [e.name for e in await box.list_dir(".") if e.name.startswith("é")] == [name]


async def test_a_name_no_tool_could_address_is_not_shown(box: LocalSandbox) -> None:
    os.close(os.open(os.path.join(os.fsencode(box.root), b"\xff\xfe.txt"), os.O_CREAT | os.O_WRONLY, 0o644))
    names = {e.name for e in await box.list_dir(".")}
    assert names == {"folder", "a.txt"}
    assert [m.path for m in await box.glob("*.txt")] == ["a.txt"]


@pytest.mark.parametrize(
    "value",
    ["/usr/lib:", ":/usr/lib", "/usr/lib::/lib", "/usr/lib;lib", "lib", "{root}/lib", "/usr/lib {root}/x.so"],
)
async def test_loader_variables_that_name_the_tree_are_dropped(box: LocalSandbox, value: str) -> None:
    # A model-written libc.so.6 in the tree: a loader that looked there would fail every command.
    (box.root / "libc.so.6").write_text("not a library\n")
    (box.root / "lib").mkdir()
    (box.root / "lib" / "libc.so.6").write_text("not a library\n")
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": value.format(root=box.root),
        "LD_PRELOAD": value.format(root=box.root),
    }
    shell = LocalSandbox(box.root, env=env)
    result = await shell.execute("echo hi")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "hi\n", "")


async def test_loader_variables_outside_the_tree_are_kept(box: LocalSandbox) -> None:
    env = {**os.environ, "LD_LIBRARY_PATH": "/usr/lib"}
    result = await LocalSandbox(box.root, env=env).execute("echo $LD_LIBRARY_PATH")
    assert result.stdout == "/usr/lib\n"
