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

__all__ = ["PROVIDER_DEFAULTS", "ModelChoice", "choose_model", "describe_model_choice"]

# A small, cheap and current model per provider, keyed by the environment variable litellm reads.
PROVIDER_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("OPENAI_API_KEY", "openai/gpt-4.1-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-haiku-4-5"),
    ("GEMINI_API_KEY", "gemini/gemini-2.5-flash"),
    ("MISTRAL_API_KEY", "mistral/mistral-small-latest"),
    ("DEEPSEEK_API_KEY", "deepseek/deepseek-chat"),
)

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
