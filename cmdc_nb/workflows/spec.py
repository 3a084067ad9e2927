"""Workflow specs: steps, their dependencies and configs, validated before anything is stored.

A spec is a mapping (or its JSON / YAML text, or a file) or built in Python with `step()`:

```yaml
name: Review a PR
input_schema: {type: object, required: [pr_url], properties: {pr_url: {type: string}}}
steps:
  - {id: fetch, type: python, config: {function: "mymod:fetch_pr", args: {url: "{{ input.pr_url }}"}}}
  - {id: review, type: agent_call, depends_on: [fetch], config: {model: scripted/r, prompt: "{{ steps.fetch.output }}"}}
  - {id: post, type: approval, depends_on: [review], config: {title: Post the review?}}
```

Validation reports every problem at once, each naming its step: duplicate ids, unknown dependencies,
cycles (with the cycle's path), a template reading a step it does not depend on, a condition branch
that does not hang off its condition, a missing config key, a function that cannot be found again by
another process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import InvalidInputError, WorkflowSpecError
from cmdc_nb.store.enums import StepType
from cmdc_nb.workflows.functions import function_ref
from cmdc_nb.workflows.templates import step_references

__all__ = [
    "Retry",
    "StepSpec",
    "WorkflowSpec",
    "load_spec",
    "parse_spec",
    "step",
]

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")
Join = Literal["all", "any"]

# Config keys each step type needs (others are optional; see docs/workflows.md).
_REQUIRED: dict[StepType, tuple[str, ...]] = {
    StepType.AGENT_CALL: ("prompt",),
    StepType.TOOL: ("tool",),
    StepType.PYTHON: ("function",),
    StepType.RAG_QUERY: ("index", "query"),
    StepType.SHELL: ("command",),
    StepType.APPROVAL: (),
    StepType.TRANSFORM: ("value",),
    StepType.CONDITION: ("if",),
    StepType.EXTERNAL: (),  # `instructions`, `output_schema`: optional (see `external`)
}
# Types whose execution changes the world outside the run: their idempotency key is recorded with their
# outcome. One cut off by a crash runs again under that key; only a completed one never runs again.
SIDE_EFFECTING = frozenset({StepType.AGENT_CALL, StepType.TOOL, StepType.PYTHON, StepType.SHELL})
_STEP_KEYS = frozenset(
    {
        "id",
        "name",
        "type",
        "config",
        "depends_on",
        "approval_required",
        "timeout",
        "retries",
        "join",
        "transactional",
    }
)
_SPEC_KEYS = frozenset(
    {
        "name",
        "slug",
        "description",
        "steps",
        "input_schema",
        "output_schema",
        "output",
        "failure_policy",
        "default_config",
        "tags",
        "category",
        "triggers",
        "is_template",
    }
)


@dataclass(frozen=True)
class Retry:
    """How often a failing step is tried (`attempts` in all) and how long to wait in between:
    `backoff` seconds, times `factor` after each failure, at most `max_backoff`."""

    attempts: int = 1
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 60.0

    def delay(self, failed_attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * self.factor ** max(0, failed_attempt - 1)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "backoff": self.backoff,
            "factor": self.factor,
            "max_backoff": self.max_backoff,
        }


@dataclass(frozen=True)
class StepSpec:
    id: str
    type: StepType
    name: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    approval_required: bool = False
    timeout: float | None = None
    retry: Retry = field(default_factory=Retry)
    join: Join = "all"  # "any": run once one dependency completed and none is still to come
    transactional: bool = False  # python steps: the function's writes commit with the step's outcome

    @property
    def side_effecting(self) -> bool:
        return self.type in SIDE_EFFECTING

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name or self.id,
            "type": self.type.value,
            "config": dict(self.config),
            "depends_on": list(self.depends_on),
        }
        if self.approval_required:
            out["approval_required"] = True
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.retry != Retry():
            out["retries"] = self.retry.as_dict()
        if self.join != "all":
            out["join"] = self.join
        if self.transactional:
            out["transactional"] = True
        return out


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    steps: tuple[StepSpec, ...]
    slug: str | None = None
    description: str | None = None
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    output: Any = None  # a template for the run's output; default: the outputs of the final steps
    failure_policy: Literal["fail_fast", "continue"] = "fail_fast"
    default_config: Mapping[str, Any] | None = None
    tags: tuple[str, ...] = ()
    category: str | None = None
    triggers: tuple[Mapping[str, Any], ...] = ()
    is_template: bool = False

    def step(self, step_id: str) -> StepSpec:
        return self._by_id[step_id]

    @cached_property
    def _by_id(self) -> dict[str, StepSpec]:
        return {s.id: s for s in self.steps}

    @cached_property
    def _ancestors(self) -> dict[str, frozenset[str]]:
        # In topological order, each step's ancestors are its dependencies' plus themselves: set
        # unions, where a graph search per step cost a run of 1,000 steps ≈0.2 s to start.
        out: dict[str, frozenset[str]] = {}
        for sid in self.order():
            deps = self.step(sid).depends_on
            out[sid] = frozenset().union(*(out[d] for d in deps), deps)
        return out

    @cached_property
    def _dependants(self) -> dict[str, tuple[str, ...]]:
        """Each step's direct dependants, in the order written (the engine's hot path reads it)."""
        out: dict[str, list[str]] = {}
        for s in self.steps:
            for d in s.depends_on:
                out.setdefault(d, []).append(s.id)
        return {k: tuple(x) for k, x in out.items()}

    def ancestors(self, step_id: str) -> frozenset[str]:
        """The steps `step_id` depends on, directly or through others: all its templates may read."""
        return self._ancestors[step_id]

    def graph(self) -> nx.DiGraph:
        """The DAG: an edge from each dependency to its dependant."""
        g: nx.DiGraph = nx.DiGraph()
        for s in self.steps:
            g.add_node(s.id)
            for d in s.depends_on:
                g.add_edge(d, s.id)
        return g

    def order(self) -> list[str]:
        """Step ids in a stable topological order (ties broken by the order written)."""
        pos = {s.id: i for i, s in enumerate(self.steps)}
        return list(nx.lexicographical_topological_sort(self.graph(), key=lambda n: pos[n]))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "steps": [s.as_dict() for s in self.steps]}
        for key in ("slug", "description", "input_schema", "output_schema", "output", "default_config"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["failure_policy"] = self.failure_policy
        if self.tags:
            out["tags"] = list(self.tags)
        if self.category:
            out["category"] = self.category
        if self.triggers:
            out["triggers"] = [dict(t) for t in self.triggers]
        return out


# -- building ----------------------------------------------------------------------------------------
@checked
def step(
    id: str,
    type: StepType | str = StepType.PYTHON,
    *,
    name: str | None = None,
    depends_on: Sequence[str] | str = (),
    approval_required: bool = False,
    timeout: float | None = None,
    retries: int | Mapping[str, Any] | Retry | None = None,
    join: Join = "all",
    transactional: bool = False,
    fn: Callable[..., Any] | str | None = None,
    **config: Any,
) -> dict[str, Any]:
    """One step as a spec mapping; config keys go as keyword arguments.

    >>> step("fetch", "python", fn=fetch_pr, args={"url": "{{ input.pr_url }}"})     # doctest: +SKIP
    >>> step("review", "agent_call", depends_on="fetch", model="scripted/r", prompt="…")  # doctest: +SKIP
    """
    if fn is not None:
        config["function"] = function_ref(fn, f"step {id!r}")
    out: dict[str, Any] = {
        "id": id,
        "type": type.value if isinstance(type, StepType) else type,
        "config": config,
        "depends_on": [depends_on] if isinstance(depends_on, str) else list(depends_on),
    }
    if name is not None:
        out["name"] = name
    if approval_required:
        out["approval_required"] = True
    if timeout is not None:
        out["timeout"] = timeout
    if retries is not None:
        out["retries"] = retries.as_dict() if isinstance(retries, Retry) else retries
    if join != "all":
        out["join"] = join
    if transactional:
        out["transactional"] = True
    return out


@checked
def load_spec(source: str | Path | Mapping[str, Any] | WorkflowSpec) -> WorkflowSpec:
    """Parse and validate a spec from a mapping, JSON or YAML text, or a `.json` / `.yaml` file."""
    if isinstance(source, WorkflowSpec):
        return source
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".json", ".yaml", ".yml"))
    ):
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"no such file: {path}", field="spec")
        source = path.read_text(encoding="utf-8")
    if isinstance(source, str):
        source = _parse_text(source)
    if not isinstance(source, Mapping):
        raise WorkflowSpecError([f"a spec must be a mapping, got {type(source).__name__}"])
    return parse_spec(source)


def _parse_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WorkflowSpecError([f"neither JSON nor YAML: {exc}"]) from None


@checked
def parse_spec(raw: Mapping[str, Any]) -> WorkflowSpec:
    """A validated WorkflowSpec from its mapping form; raises WorkflowSpecError listing every problem."""
    problems: list[str] = []
    unknown = sorted(set(raw) - _SPEC_KEYS)
    if unknown:
        problems.append(
            f"unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(_SPEC_KEYS))}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("the workflow needs a name")
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, Sequence) or isinstance(raw_steps, str) or not raw_steps:
        problems.append("steps must be a non-empty list")
        raw_steps = []
    steps: list[StepSpec] = []
    for i, s in enumerate(raw_steps):
        parsed = _parse_step(s, i, problems)
        if parsed is not None:
            steps.append(parsed)
    policy = raw.get("failure_policy", "fail_fast")
    if policy not in ("fail_fast", "continue"):
        problems.append(f"failure_policy must be 'fail_fast' or 'continue', got {policy!r}")
    schema = raw.get("input_schema")
    if schema is not None:
        problems.extend(_schema_problems(schema, "input_schema"))
    out_schema = raw.get("output_schema")
    if out_schema is not None:
        problems.extend(_schema_problems(out_schema, "output_schema"))
    tags = raw.get("tags") or ()
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        problems.append("tags must be a list of strings")
        tags = ()
    problems.extend(_graph_problems(steps))
    if raw.get("output") is not None:
        refs, errs = step_references(raw["output"])
        problems.extend(f"output: {e}" for e in errs)
        ids = {s.id for s in steps}
        problems.extend(f"output reads unknown step {r!r}" for r in sorted(refs - ids))
    if problems:
        raise WorkflowSpecError(problems)
    return WorkflowSpec(
        name=str(name).strip(),
        steps=tuple(steps),
        slug=raw.get("slug"),
        description=raw.get("description"),
        input_schema=schema,
        output_schema=out_schema,
        output=raw.get("output"),
        failure_policy=policy,
        default_config=raw.get("default_config"),
        tags=tuple(tags),
        category=raw.get("category"),
        triggers=tuple(raw.get("triggers") or ()),
        is_template=bool(raw.get("is_template", False)),
    )


def _remote_refs(schema: Any) -> list[str]:
    """`$ref`s that point outside the schema: jsonschema would fetch them (a URL the server then
    requests, offline or not, with no timeout), so a spec may only refer within itself ("#/…")."""
    found: list[str] = []
    stack = [schema]
    while stack:
        x = stack.pop()
        if isinstance(x, Mapping):
            ref = x.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                found.append(ref)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return found


def _schema_problems(schema: Any, where: str) -> list[str]:
    import jsonschema

    if not isinstance(schema, Mapping):
        return [f"{where} must be a JSON Schema mapping"]
    remote = _remote_refs(schema)
    if remote:
        return [f'{where} may only refer within itself ($ref "#/…"), not to {remote[0][:80]!r}']
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"{where} is not a valid JSON Schema: {exc.message}"]
    return []


def _external_problems(config: Mapping[str, Any], where: str) -> list[str]:
    """An external step's `output_schema` must be a JSON Schema (checked again at `complete_step`),
    and its `instructions` text: a person reads them."""
    problems: list[str] = []
    if "output_schema" in config:
        problems.extend(_schema_problems(config["output_schema"], f"{where}: config.output_schema"))
    if "instructions" in config and not isinstance(config["instructions"], str):
        problems.append(f"{where}: config.instructions must be text")
    return problems


def _number(value: Any, minimum: float, where: str, problems: list[str], *, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        problems.append(
            f"{where} must be {'an integer' if integer else 'a number'} ≥ {minimum}, got {value!r}"
        )
        return None
    return value


def _parse_retry(value: Any, where: str, problems: list[str]) -> Retry:
    if value is None:
        return Retry()
    if isinstance(value, int) and not isinstance(value, bool):
        # `retries: 2` means two more tries after the first.
        n = _number(value, 0, where, problems, integer=True)
        return Retry(attempts=(n or 0) + 1)
    if not isinstance(value, Mapping):
        problems.append(
            f"{where} must be a number of retries or a mapping (attempts, backoff, factor, max_backoff)"
        )
        return Retry()
    extra = sorted(set(value) - {"attempts", "backoff", "factor", "max_backoff"})
    if extra:
        problems.append(f"{where}: unknown key(s) {', '.join(map(repr, extra))}")
    attempts = _number(value.get("attempts", 1), 1, f"{where}.attempts", problems, integer=True)
    backoff = _number(value.get("backoff", 1.0), 0, f"{where}.backoff", problems)
    factor = _number(value.get("factor", 2.0), 1, f"{where}.factor", problems)
    max_backoff = _number(value.get("max_backoff", 60.0), 0, f"{where}.max_backoff", problems)
    if None in (attempts, backoff, factor, max_backoff):
        return Retry()
    return Retry(int(attempts), float(backoff), float(factor), float(max_backoff))


def _parse_step(raw: Any, i: int, problems: list[str]) -> StepSpec | None:
    if not isinstance(raw, Mapping):
        problems.append(f"steps[{i}] must be a mapping, got {type(raw).__name__}")
        return None
    sid = raw.get("id")
    if not isinstance(sid, str) or not _ID.match(sid):
        problems.append(
            f"steps[{i}]: id {sid!r} must start with a letter or _ and hold only letters, digits, _ and - (≤ 100)"
        )
        return None
    where = f"step {sid!r}"
    unknown = sorted(set(raw) - _STEP_KEYS)
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(_STEP_KEYS))}"
        )
    try:
        stype = StepType(raw.get("type", "python"))
    except ValueError:
        valid = ", ".join(t.value for t in _REQUIRED)
        problems.append(f"{where}: type {raw.get('type')!r} is not one of: {valid}")
        return None
    if stype not in _REQUIRED:
        problems.append(
            f"{where}: type {stype.value!r} is not supported (express parallel branches as steps with the same dependencies)"
        )
        return None
    config = raw.get("config") or {}
    if not isinstance(config, Mapping):
        problems.append(f"{where}: config must be a mapping")
        config = {}
    for key in _REQUIRED[stype]:
        if key not in config:
            problems.append(f"{where}: a {stype.value} step needs config.{key}")
    if stype is StepType.PYTHON and "function" in config:
        fn = config["function"]
        if callable(fn):
            try:
                config = {**config, "function": function_ref(fn, where)}
            except WorkflowSpecError as exc:
                problems.extend(exc.problems)
        elif not isinstance(fn, str):
            problems.append(f"{where}: config.function must be a function or its name")
    if stype is StepType.EXTERNAL:
        problems.extend(_external_problems(config, where))
    deps = raw.get("depends_on") or []
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list | tuple) or not all(isinstance(d, str) for d in deps):
        problems.append(f"{where}: depends_on must be a list of step ids")
        deps = []
    timeout = raw.get("timeout")
    if timeout is not None:
        timeout = _number(timeout, 0.001, f"{where}: timeout", problems)
    join = raw.get("join", "all")
    if join not in ("all", "any"):
        problems.append(f"{where}: join must be 'all' or 'any', got {join!r}")
        join = "all"
    transactional = bool(raw.get("transactional", False))
    if transactional and stype is not StepType.PYTHON:
        problems.append(f"{where}: only python steps can be transactional")
    name = raw.get("name") or sid
    if not isinstance(name, str):
        problems.append(f"{where}: name must be text")
        name = sid
    return StepSpec(
        id=sid,
        type=stype,
        name=name,
        config=dict(config),
        depends_on=tuple(dict.fromkeys(deps)),
        approval_required=bool(raw.get("approval_required", False)),
        timeout=timeout,
        retry=_parse_retry(raw.get("retries"), f"{where}: retries", problems),
        join=join,
        transactional=transactional,
    )


def _graph_problems(steps: Sequence[StepSpec]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(steps):
        if s.id in seen:
            problems.append(f"duplicate step id {s.id!r} (steps[{seen[s.id]}] and steps[{i}])")
        else:
            seen[s.id] = i
    ids = set(seen)
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(ids)
    for s in steps:
        for d in s.depends_on:
            if d not in ids:
                problems.append(f"step {s.id!r} depends on unknown step {d!r}")
            else:
                g.add_edge(d, s.id)
    cycles_seen: set[frozenset[str]] = set()
    for cycle in nx.simple_cycles(g):
        key = frozenset(cycle)
        if key in cycles_seen:
            continue
        cycles_seen.add(key)
        # simple_cycles lists nodes along the edges (dependency → dependant); show it as written,
        # starting from the step written first.
        order = {s.id: i for i, s in reversed(list(enumerate(steps)))}  # first occurrence wins
        start = min(range(len(cycle)), key=lambda k: order[cycle[k]])
        path = cycle[start:] + cycle[:start]
        problems.append("dependency cycle: " + " → ".join([*path, path[0]]))
        if len(cycles_seen) >= 5:
            break
    # The template and branch checks go on past a cycle, so that one run reports every problem. Ancestry is
    # reachability, which a cycle does not confuse; a step on a cycle counts as depending on itself.
    ancestors: dict[str, set[str]] = {}
    if not cycles_seen:  # in topological order, set unions (a graph search per step: ≈0.1 s at 1,000)
        for n in nx.topological_sort(g):
            preds = list(g.predecessors(n))
            ancestors[n] = set().union(*(ancestors[d] for d in preds), preds)
    else:
        ancestors = {n: nx.ancestors(g, n) for n in g}
        for component in nx.strongly_connected_components(g):
            for n in component:
                if len(component) > 1 or g.has_edge(n, n):
                    ancestors[n].add(n)
    for s in steps:
        refs, errs = step_references(s.config)
        problems.extend(f"step {s.id!r}: {e}" for e in errs)
        for r in sorted(refs):
            if r not in ids:
                problems.append(f"step {s.id!r} reads steps.{r}, which does not exist")
            elif r not in ancestors.get(s.id, set()):
                problems.append(
                    f"step {s.id!r} reads steps.{r} but does not depend on {r!r} (directly or indirectly)"
                )
        if s.type is StepType.CONDITION:
            for branch in ("then", "else"):
                targets = s.config.get(branch) or []
                if isinstance(targets, str):
                    targets = [targets]
                for t in targets:
                    if t not in ids:
                        problems.append(f"step {s.id!r}: {branch} names unknown step {t!r}")
                    elif s.id not in next(x for x in steps if x.id == t).depends_on:
                        problems.append(f"step {s.id!r}: {branch} step {t!r} must depend on {s.id!r}")
    return problems
