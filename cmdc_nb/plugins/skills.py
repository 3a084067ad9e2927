"""Skills: folders with a SKILL.md (YAML frontmatter + instructions), offered to the agent by name.

Discovery looks in the user's folder (`~/.cmdc/skills`) and then the project's (`<working_dir>/.cmdc/skills`);
a later folder wins when two skills share a name. The system prompt lists each skill's name and
description only; the agent reads a skill's full instructions with the `load_skill` tool when it needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import InvalidInputError, NotFoundError
from cmdc_nb.kernel.plugins import HookEvent, Plugin
from cmdc_nb.kernel.tools import Tool, ToolContext, ToolError

__all__ = ["Skill", "Skills", "discover_skills", "load_skill", "parse_skill", "skills_prompt"]


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    path: Path
    source: str = "custom"
    allowed_tools: tuple[str, ...] = ()
    license: str | None = None
    compatibility: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    body: str | None = None  # loaded on demand


def parse_skill(path: Path, *, source: str = "custom", with_body: bool = False) -> Skill:
    """Read one SKILL.md. Frontmatter must name the skill and describe it."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise InvalidInputError(
            f"{path}: a SKILL.md starts with YAML frontmatter between --- lines", field="skill"
        )
    _, _, rest = text.partition("---")
    head, sep, body = rest.partition("\n---")
    if not sep:
        raise InvalidInputError(f"{path}: the frontmatter is not closed with ---", field="skill")
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: frontmatter is not valid YAML ({exc})", field="skill") from None
    if not isinstance(meta, dict) or not meta.get("name") or not meta.get("description"):
        raise InvalidInputError(f"{path}: frontmatter needs a name and a description", field="skill")
    tools = meta.get("allowed_tools") or meta.get("allowed-tools") or ()
    return Skill(
        name=str(meta["name"]),
        description=str(meta["description"]).strip(),
        path=path,
        source=source,
        allowed_tools=tuple(tools.split() if isinstance(tools, str) else map(str, tools)),
        license=meta.get("license"),
        compatibility=meta.get("compatibility"),
        metadata=dict(meta.get("metadata") or {}),
        body=body.lstrip("\n") if with_body else None,
    )


def discover_skills(dirs: Iterable[str | Path | tuple[str | Path, str]]) -> list[Skill]:
    """Every `*/SKILL.md` under each folder (a `(folder, source)` pair tags its skills); later folders
    win on a name clash. Malformed skills are skipped."""
    found: dict[str, Skill] = {}
    for entry in dirs:
        folder, source = entry if isinstance(entry, tuple) else (entry, "custom")
        base = Path(folder).expanduser()
        if not base.is_dir():
            continue
        for skill_md in sorted(base.glob("*/SKILL.md")):
            try:
                skill = parse_skill(skill_md, source=source)
            except (InvalidInputError, OSError, UnicodeDecodeError):
                continue
            found[skill.name] = skill
    return sorted(found.values(), key=lambda s: s.name)


def load_skill(skill: Skill) -> Skill:
    """The skill with its instructions (the body of SKILL.md)."""
    return replace(skill, body=parse_skill(skill.path, source=skill.source, with_body=True).body)


def skills_prompt(skills: Sequence[Skill]) -> str:
    lines = [f"- {s.name}: {s.description}" for s in skills]
    return "Skills you can use (read one with load_skill before following it):\n" + "\n".join(lines)


class Skills(Plugin):
    """Offers discovered skills in the system prompt and attaches `load_skill`."""

    name = "skills"
    priority = 80

    @checked
    def __init__(self, dirs: Sequence[str | Path | tuple[str | Path, str]] | None = None) -> None:
        super().__init__()
        self.dirs = dirs
        self.skills: list[Skill] = []

    def on_session_start(self, event: HookEvent, ctx: ToolContext) -> None:
        default: list[str | Path | tuple[str | Path, str]] = [
            ("~/.cmdc/skills", "user"),
            (Path(ctx.working_dir) / ".cmdc" / "skills", "project"),
        ]
        dirs = self.dirs if self.dirs is not None else default
        self.skills = discover_skills(dirs)
        agent = ctx.agent
        if agent is None or not self.skills:
            return
        agent.system_context["skills"] = skills_prompt(self.skills)
        if "load_skill" not in agent.tools:
            agent.tools["load_skill"] = self._tool()

    def get(self, name: str) -> Skill:
        for s in self.skills:
            if s.name == name:
                return s
        raise NotFoundError("skill", name)

    def _tool(self) -> Tool:
        plugin = self

        def load_skill(name: str) -> str:
            """Read a skill's full instructions.

            Args:
                name: the skill's name, as listed in the system prompt
            """
            try:
                return load_skill_body(plugin.get(name))
            except NotFoundError:
                raise ToolError(
                    f"no skill named {name!r}; there are: {', '.join(s.name for s in plugin.skills)}"
                ) from None

        return Tool.from_function(load_skill)


def load_skill_body(skill: Skill) -> str:
    return load_skill(skill).body or ""
