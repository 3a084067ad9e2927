"""Agent options, validated up front: a bad value raises InvalidInputError naming the option and, where
there is a fixed set, listing the valid choices."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel.plugins import Plugin
from cmdc_nb.kernel.tools import Tool, as_tool
from cmdc_nb.providers import Cassette, RetryPolicy

__all__ = ["PROMPT_MODES", "AgentOptions", "SubAgent", "normalize_model"]

PROMPT_MODES = ("full", "task", "minimal", "none")
_EXAMPLES = (
    "openai/gpt-4o-mini",
    "anthropic/claude-sonnet-4-5",
    "gemini/gemini-2.5-flash",
    "ollama/llama3.2",
    "scripted/<script name>",
)


@lru_cache(maxsize=1)
def known_providers() -> frozenset[str]:
    """Providers named in litellm's bundled cost map (read as JSON, no import) plus the offline ones."""
    from cmdc_nb.providers.catalog import litellm_providers

    names = set(litellm_providers())
    return frozenset(
        names
        | {
            "scripted",
            "replay",
            "openai",
            "anthropic",
            "ollama",
            "azure",
            "bedrock",
            "vertex_ai",
            "gemini",
            "mistral",
            "groq",
            "deepseek",
            "openrouter",
            "together_ai",
            "huggingface",
            "custom_openai",
            "hosted_vllm",
            "lm_studio",
        }
    )


def normalize_model(model: Any, field_name: str = "model") -> str:
    """A litellm model string `provider/model`. The seed's `provider:model` is accepted too."""
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError(
            f"expected a model string such as {', '.join(_EXAMPLES)}; got {type(model).__name__}",
            field=field_name,
        )
    model = model.strip()
    if "/" not in model and ":" in model:
        model = model.replace(":", "/", 1)
    provider, sep, name = model.partition("/")
    if not sep or not name:
        raise InvalidInputError(
            f"{model!r} names no provider; write provider/model, e.g. {', '.join(_EXAMPLES)}",
            field=field_name,
        )
    if provider not in known_providers():
        shown = ", ".join(sorted(p for p in known_providers() if "_" not in p)[:25])
        raise InvalidInputError(
            f"unknown provider {provider!r}; known ones include: {shown}, … (e.g. {', '.join(_EXAMPLES)})",
            field=field_name,
        )
    return str(model)


@dataclass(frozen=True)
class SubAgent:
    """A sub-agent the `task` tool may run. A field left None is inherited from the parent."""

    name: str
    description: str = ""
    system_prompt: str | None = None
    model: str | None = None
    tools: Sequence[Tool] | None = None
    plugins: Sequence[Plugin] | None = None
    user_data: Mapping[str, Any] | None = None
    prompt_mode: str = "task"
    timeout_s: float = 120.0


def _int(value: Any, name: str, minimum: int, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"must be an integer of at least {minimum}, got {value!r}", field=name)
    return value


def _num(value: Any, name: str, lo: float, hi: float | None = None, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < lo
        or (hi is not None and value > hi)
    ):
        bounds = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise InvalidInputError(f"must be a number {bounds}, got {value!r}", field=name)
    return float(value)


@dataclass(frozen=True)
class AgentOptions:
    """Everything an agent is made of. `AgentOptions.build(**kw)` validates; unknown keys are refused."""

    model: str
    tools: tuple[Tool, ...] = ()
    system_prompt: str | None = None
    plugins: tuple[Plugin, ...] = ()
    subagents: tuple[SubAgent, ...] = ()
    max_turns: int = 100
    max_tokens: int | None = None
    temperature: float | None = None
    working_dir: str = "."
    user_data: Mapping[str, Any] = field(default_factory=dict)
    prompt_mode: str = "full"
    max_steering_queue: int = 3
    interrupt_immune_tools: frozenset[str] = frozenset()
    event_buffer_size: int = 500
    tool_retries: int = 0
    tool_retry_delay_s: float = 0.5
    tool_timeout_s: float | None = 120.0
    messages: tuple[Mapping[str, Any], ...] = ()
    session: Any = None  # a Session row or its id: every turn is stored there
    fallback_models: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    provider_opts: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold an api_key
    request_timeout_s: float | None = None
    cassette: Cassette | None = None
    max_identical_tool_calls: int = 3
    max_consecutive_tool_failures: int = 5
    agent_id: str | None = None
    name: str | None = None  # how the approval queue names this agent (stored with each of its calls)
    ws: Any = None  # the workspace the session lives in (default: the default workspace)
    sandbox: Any = None  # a cmdc_nb.toolkit.Sandbox; default: a LocalSandbox on working_dir
    record_messages: bool = True  # sub-agents store their calls and costs, not their messages
    compact_at_tokens: int | None = None  # compact before a request once the context is this big
    compact_at_fraction: float | None = None  # … or this fraction of the model's context window
    compact_keep_last: int = 6
    # a tool call's argument longer than this is cut before old turns go to the summary (ArgTruncator)
    compact_arg_chars: int = 2000
    # <status>/<title> tags in a streamed reply become status_update / title_generated events
    stream_tags: bool = False
    # (run id, step row id) of the workflow step this agent works for: its calls are stored as that
    # step's, so tokens and cost roll into the step, the run and the workflow.
    workflow_step: tuple[Any, Any] | None = None

    @classmethod
    def build(cls, **raw: Any) -> AgentOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}", field=unknown[0]
            )
        if "model" not in raw:
            raise InvalidInputError(f"an agent needs a model, e.g. {', '.join(_EXAMPLES)}", field="model")
        kw = dict(raw)
        for check in (_check_parts, _check_limits, _check_context, _check_provider):
            check(kw)
        if kw.get("agent_id") is not None:
            kw["agent_id"] = str(kw["agent_id"])
        return cls(**kw)

    def with_(self, **changes: Any) -> AgentOptions:
        return replace(self, **changes)

    def new_id(self) -> str:
        if self.agent_id:
            return self.agent_id
        if self.session is not None:
            return str(getattr(self.session, "id", self.session))
        return str(uuid.uuid4())


def _sequence(value: Any, field: str) -> tuple[Any, ...]:
    """A list of things, never a string split into its characters (`tools="shell"`)."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInputError(f"must be a list, not {type(value).__name__}", field=field)
    return tuple(value)


def _check_parts(kw: dict[str, Any]) -> None:
    """The model, tools, plugins, sub-agents and system prompt."""
    kw["model"] = normalize_model(kw["model"])
    kw["tools"] = tuple(as_tool(t) for t in _sequence(kw.get("tools"), "tools"))
    names = [t.name for t in kw["tools"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInputError(f"two tools are named {dupes[0]!r}", field="tools")
    if kw.get("system_prompt") is not None and not isinstance(kw["system_prompt"], str):
        raise InvalidInputError("must be text", field="system_prompt")
    kw["plugins"] = _sequence(kw.get("plugins"), "plugins")
    for p in kw["plugins"]:
        if not isinstance(p, Plugin) and not callable(getattr(p, "handle", None)):
            raise InvalidInputError(
                f"{p!r} is not a plugin (subclass cmdc_nb.kernel.Plugin)", field="plugins"
            )
    kw["subagents"] = _sequence(kw.get("subagents"), "subagents")
    for s in kw["subagents"]:
        if not isinstance(s, SubAgent):
            raise InvalidInputError(f"{s!r} is not a SubAgent", field="subagents")
    immune = _sequence(kw.get("interrupt_immune_tools"), "interrupt_immune_tools")
    if not all(isinstance(n, str) for n in immune):
        raise InvalidInputError("must be a list of tool names", field="interrupt_immune_tools")
    kw["interrupt_immune_tools"] = frozenset(immune)


def _check_limits(kw: dict[str, Any]) -> None:
    """Every count, timeout and threshold: integers are integers, numbers finite and in range."""
    kw["max_turns"] = _int(kw.get("max_turns", 100), "max_turns", 1)
    kw["max_tokens"] = _int(kw.get("max_tokens"), "max_tokens", 1, allow_none=True)
    kw["temperature"] = _num(kw.get("temperature"), "temperature", 0, 2, allow_none=True)
    kw["max_steering_queue"] = _int(kw.get("max_steering_queue", 3), "max_steering_queue", 0)
    kw["event_buffer_size"] = _int(kw.get("event_buffer_size", 500), "event_buffer_size", 0)
    kw["tool_retries"] = _int(kw.get("tool_retries", 0), "tool_retries", 0)
    kw["tool_retry_delay_s"] = _num(kw.get("tool_retry_delay_s", 0.5), "tool_retry_delay_s", 0)
    kw["tool_timeout_s"] = _num(kw.get("tool_timeout_s", 120.0), "tool_timeout_s", 0.001, allow_none=True)
    kw["request_timeout_s"] = _num(kw.get("request_timeout_s"), "request_timeout_s", 0.001, allow_none=True)
    kw["max_identical_tool_calls"] = _int(
        kw.get("max_identical_tool_calls", 3), "max_identical_tool_calls", 2
    )
    kw["max_consecutive_tool_failures"] = _int(
        kw.get("max_consecutive_tool_failures", 5), "max_consecutive_tool_failures", 1
    )
    kw["compact_at_tokens"] = _int(kw.get("compact_at_tokens"), "compact_at_tokens", 1, allow_none=True)
    kw["compact_at_fraction"] = _num(
        kw.get("compact_at_fraction"), "compact_at_fraction", 0.05, 1.0, allow_none=True
    )
    kw["compact_keep_last"] = _int(kw.get("compact_keep_last", 6), "compact_keep_last", 1)
    kw["compact_arg_chars"] = _int(kw.get("compact_arg_chars", 2000), "compact_arg_chars", 100)
    if not isinstance(kw.get("stream_tags", False), bool):
        raise InvalidInputError("must be True or False", field="stream_tags")


def _check_context(kw: dict[str, Any]) -> None:
    """Where the agent works and what it starts with: folder, user data, prompt mode, messages."""
    wd = kw.get("working_dir", ".")
    if not isinstance(wd, str | os.PathLike) or not Path(wd).expanduser().is_dir():
        raise InvalidInputError(f"{wd!r} is not an existing directory", field="working_dir")
    kw["working_dir"] = str(Path(wd).expanduser().resolve())
    name = kw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or "\x00" in name):
        raise InvalidInputError("must be a non-blank text (or None)", field="name")
    ud = kw.get("user_data") or {}
    if not isinstance(ud, Mapping):
        raise InvalidInputError("must be a mapping", field="user_data")
    kw["user_data"] = dict(ud)
    if kw.get("prompt_mode", "full") not in PROMPT_MODES:
        raise InvalidInputError(
            f"{kw['prompt_mode']!r} is not one of: {', '.join(PROMPT_MODES)}", field="prompt_mode"
        )
    msgs = _sequence(kw.get("messages"), "messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, Mapping) or m.get("role") not in ("user", "assistant", "system", "tool"):
            raise InvalidInputError(
                "each message needs a role: user, assistant, system or tool", field=f"messages[{i}]"
            )
    kw["messages"] = tuple(dict(m) for m in msgs)


def _check_provider(kw: dict[str, Any]) -> None:
    """How calls are made: fallback models, retries, provider options, a cassette."""
    kw["fallback_models"] = tuple(
        normalize_model(m, "fallback_models") for m in _sequence(kw.get("fallback_models"), "fallback_models")
    )
    retry = kw.get("retry", RetryPolicy())
    if isinstance(retry, int) and not isinstance(retry, bool):
        retry = RetryPolicy(retries=_int(retry, "retry", 0))
    if not isinstance(retry, RetryPolicy):
        raise InvalidInputError("give a number of retries or a RetryPolicy", field="retry")
    kw["retry"] = retry
    po = kw.get("provider_opts") or {}
    if not isinstance(po, Mapping):
        raise InvalidInputError("must be a mapping of litellm keyword arguments", field="provider_opts")
    kw["provider_opts"] = dict(po)
    if kw.get("cassette") is not None and not isinstance(kw["cassette"], Cassette):
        raise InvalidInputError("must be a cmdc_nb.providers.Cassette", field="cassette")
