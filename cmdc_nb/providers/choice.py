"""Which model a notebook talks to: a real provider when a key is present, the offline model otherwise.

Notebooks and demos are written against an offline model (a `Script` or a cassette) so they run
anywhere; `choose_model` lets the same cell use a real provider when the reader has set one up,
without the notebook naming a key. The order of precedence is explicit and printed by `describe`:

1. `$CMDC_NB_OFFLINE` set to a true value: always the offline model (CI and nbval set it, so checked
   outputs never depend on a developer's keys);
2. `$CMDC_NB_MODEL`: any litellm model string, used as given;
3. the first provider in `PROVIDER_DEFAULTS` whose usual litellm key variable is set;
4. the offline model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cmdc_nb.providers.scripted import Script

__all__ = [
    "KEY_VARIABLES",
    "PROVIDER_DEFAULTS",
    "ModelChoice",
    "choose_model",
    "describe_model_choice",
    "missing_key",
]

# A small, cheap and current model per provider, keyed by the environment variable litellm reads.
PROVIDER_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("OPENAI_API_KEY", "openai/gpt-4.1-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-haiku-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.5-flash"),
    ("MISTRAL_API_KEY", "mistral/mistral-small-latest"),
    ("DEEPSEEK_API_KEY", "deepseek/deepseek-chat"),
)

# The variables litellm reads a key from, per provider (any one of them will do).
KEY_VARIABLES: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
}
OFFLINE_PROVIDERS = ("scripted/", "replay/")

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The model chosen and why (never the key itself)."""

    model: str
    offline: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.model} ({self.reason})"


def describe_model_choice(offline: str | Script, *, env: Mapping[str, str] | None = None) -> ModelChoice:
    """Choose between `offline` and a real provider, and say why (see the module docstring)."""
    env = os.environ if env is None else env
    offline_model = offline.model if isinstance(offline, Script) else offline
    if env.get("CMDC_NB_OFFLINE", "").strip().lower() in _TRUE:
        return ModelChoice(offline_model, True, "CMDC_NB_OFFLINE is set")
    explicit = env.get("CMDC_NB_MODEL", "").strip()
    if explicit:
        return ModelChoice(explicit, False, "from CMDC_NB_MODEL")
    for variable, model in PROVIDER_DEFAULTS:
        if env.get(variable, "").strip():
            return ModelChoice(model, False, f"{variable} is set")
    return ModelChoice(offline_model, True, "no API key set: offline")


def choose_model(offline: str | Script, *, env: Mapping[str, str] | None = None) -> str:
    """The model string to use: a real provider's when a key is present, else `offline`'s.

    >>> choose_model("scripted/demo", env={})
    'scripted/demo'
    >>> choose_model("scripted/demo", env={"ANTHROPIC_API_KEY": "sk-..."})
    'anthropic/claude-haiku-4-5'
    """
    return describe_model_choice(offline, env=env).model


def missing_key(model: str, *, env: Mapping[str, str] | None = None) -> str | None:
    """The environment variable a call to `model` still needs (its provider's key), or None when it
    can be called: the key is set, or the provider needs none (the offline models never do). Only
    the variable's name is looked at and returned, never its value.

    The usual providers are known without importing litellm (seconds); another provider is asked of
    litellm once a model call has loaded it, and is otherwise taken as callable (its first call says).

    >>> missing_key("openai/gpt-4o", env={})
    'OPENAI_API_KEY'
    >>> missing_key("gemini/gemini-2.5-flash", env={"GOOGLE_API_KEY": "..."}) is None
    True
    >>> missing_key("scripted/demo", env={}) is None
    True
    """
    if model.startswith(OFFLINE_PROVIDERS):
        return None
    variables = KEY_VARIABLES.get(model.split("/", 1)[0])
    if variables is not None:
        values = os.environ if env is None else env
        return None if any(values.get(v, "").strip() for v in variables) else variables[0]
    return _missing_per_litellm(model) if env is None else None


def _missing_per_litellm(model: str) -> str | None:
    from cmdc_nb.providers import _litellm

    if _litellm._module is None:
        return None
    try:
        said = _litellm._module.validate_environment(model=model)
    except Exception:
        return None
    if said.get("keys_in_environment"):
        return None
    # litellm also lists settings that have defaults (OLLAMA_API_BASE): only a key stops a call
    keys = [k for k in said.get("missing_keys") or () if k.endswith(("_KEY", "_TOKEN"))]
    return keys[0] if keys else None
