"""Every error cmdc_nb raises on purpose, in one tree you can catch at any level.

```
CmdcError                         base of everything below
├── ConfigurationError            the workspace cannot be opened as configured (bad URL, missing extra)
├── StorageError                  the database refused or failed an operation
│   └── MigrationError            the schema could not be brought up to date
├── NotFoundError                 no such row (or not visible to you)
├── AccessDeniedError             the acting user may not read or change this (not theirs, not shared)
├── InvalidInputError             an argument is malformed; `.field` names it
│   ├── ConflictError             the input collides with stored data (a duplicate email, slug, …)
│   ├── GuardrailError            a guardrail refused the text (a denied word or pattern, too long)
│   └── WorkflowSpecError         a workflow spec is malformed; `.problems` lists every problem found
├── InvalidStateError             an illegal status transition; `.current` and `.target` say which
├── ApprovalError
│   ├── ApprovalRequiredError     a human (or a rule) must decide first
│   └── ApprovalDeniedError       it was decided, and the answer was no
├── BudgetExceededError           a budget would be crossed; `.budget` and `.overrun_usd` say by how much
├── AbortedError                  the run was aborted; `.reason` is normalised
├── ProviderError                 the model provider failed; `.kind`, `.retryable`, `.status_code`, `.model`
│   ├── RateLimitedError          429 / quota; `.retry_after` seconds when the provider said
│   ├── ProviderTimeoutError      no answer in time
│   └── ContextOverflowError      the prompt does not fit the model's context window
├── WorkflowError                 a workflow step failed or the run cannot go on; `.step_id` names it
├── AgentError                    the agent kernel refused a request
│   └── AgentNotAliveError        the agent was stopped (or its task died); create or resume it again
├── SandboxError                  a path or command is not allowed, or failed, in an agent's sandbox
│   └── PathEscapeError           the path would leave the sandbox's root (`..`, elsewhere, a symlink, NUL)
└── VaultError                    secrets at rest
    ├── VaultKeyError             no key, a malformed key, or the key that encrypted a value is missing
    └── DecryptionError           wrong key, or the ciphertext or its binding was tampered with
```

Messages say what went wrong and what to do. None of them ever contains a secret: values that might be
secret are described (`'api_key' (sk-…abcd)`) rather than echoed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

__all__ = [
    "AbortedError",
    "AccessDeniedError",
    "AgentError",
    "AgentNotAliveError",
    "ApprovalDeniedError",
    "ApprovalError",
    "ApprovalRequiredError",
    "BudgetExceededError",
    "CmdcError",
    "ConfigurationError",
    "ConflictError",
    "ContextOverflowError",
    "DecryptionError",
    "GuardrailError",
    "InvalidInputError",
    "InvalidStateError",
    "MigrationError",
    "NotFoundError",
    "PathEscapeError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitedError",
    "SandboxError",
    "StorageError",
    "VaultError",
    "VaultKeyError",
    "WorkflowError",
    "WorkflowSpecError",
]


class CmdcError(Exception):
    """Base class of every error cmdc_nb raises on purpose."""


class ConfigurationError(CmdcError):
    """The workspace cannot be opened as configured."""


class StorageError(CmdcError):
    """The database refused or failed an operation."""


class MigrationError(StorageError):
    """The schema could not be brought up to date."""


class NotFoundError(CmdcError):
    """No such row, or not one visible to the caller."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} not found: {key!s}")


class AccessDeniedError(CmdcError):
    """The acting user may not read or change this row: it is another user's and not shared with them.

    `.kind` and `.key` name the row, `.action` is "read", "write" or "decide"."""

    def __init__(self, kind: str, key: object, action: str) -> None:
        self.kind = kind
        self.key = key
        self.action = action
        super().__init__(f"not allowed to {action} {kind} {key!s}: it is not yours and not shared with you")


class InvalidInputError(CmdcError, ValueError):
    """An argument is malformed. `field` names the argument when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ConflictError(InvalidInputError):
    """The input collides with stored data (a unique key already taken)."""


class GuardrailError(InvalidInputError):
    """A guardrail refused the text: `rule` says which one (never the text itself)."""

    def __init__(self, message: str, *, rule: str, field: str | None = None) -> None:
        self.rule = rule
        super().__init__(message, field=field)


class WorkflowSpecError(InvalidInputError):
    """A workflow spec is malformed. `problems` lists every problem found, each naming its step."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        head = "invalid workflow spec" + (f" ({len(problems)} problems)" if len(problems) > 1 else "")
        super().__init__(head + ": " + "; ".join(self.problems))


class WorkflowError(CmdcError):
    """A workflow step failed, or a run cannot go on. `step_id` names the step when there is one."""

    def __init__(self, message: str, *, step_id: str | None = None, error_type: str | None = None) -> None:
        self.step_id = step_id
        self.error_type = error_type
        super().__init__(message)


class InvalidStateError(CmdcError):
    """An illegal status transition."""

    def __init__(
        self, kind: str, current: object, target: object, *, allowed: list[str] | None = None
    ) -> None:
        self.kind = kind
        self.current = current
        self.target = target
        self.allowed = allowed or []
        hint = f"; from {current!s} it may go to: {', '.join(self.allowed)}" if allowed is not None else ""
        super().__init__(f"{kind} cannot go from {current!s} to {target!s}{hint}")


class ApprovalError(CmdcError):
    """Base of the approval signals."""


class ApprovalRequiredError(ApprovalError):
    """A human (or a rule) must decide before this can go on."""

    def __init__(self, message: str, *, approval_id: object = None) -> None:
        self.approval_id = approval_id
        super().__init__(message)


class ApprovalDeniedError(ApprovalError):
    """It was decided, and the answer was no."""

    def __init__(self, message: str, *, approval_id: object = None, note: str | None = None) -> None:
        self.approval_id = approval_id
        self.note = note
        super().__init__(message)


class BudgetExceededError(CmdcError):
    """A budget would be crossed; raised before the call is sent."""

    def __init__(self, message: str, *, budget: Any = None, overrun_usd: Decimal | None = None) -> None:
        self.budget = budget
        self.overrun_usd = overrun_usd
        super().__init__(message)


class AbortedError(CmdcError):
    """The run was aborted."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"aborted ({reason})" + (f": {detail}" if detail else ""))


class ProviderError(CmdcError):
    """The model provider failed. `kind` is one of rate_limit, timeout, server_error, unavailable,
    connection, authentication, bad_request, context_overflow, not_found, script, unknown;
    `retryable` says whether the same request may succeed later."""

    RETRYABLE_KINDS = frozenset({"rate_limit", "timeout", "server_error", "unavailable", "connection"})

    def __init__(
        self,
        message: str,
        *,
        kind: str = "unknown",
        model: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.model = model
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = kind in self.RETRYABLE_KINDS
        where = f" ({model})" if model else ""
        super().__init__(f"{kind}{where}: {message}")


class RateLimitedError(ProviderError):
    """429 or quota: wait `retry_after` seconds (when the provider said) and try again."""


class ProviderTimeoutError(ProviderError):
    """The provider did not answer in time."""


class ContextOverflowError(ProviderError):
    """The prompt does not fit the model's context window: compact the conversation or switch model."""


class AgentError(CmdcError):
    """The agent kernel refused a request."""


class AgentNotAliveError(AgentError):
    """The agent was stopped, or its task died. Create it again, or resume it from its session."""

    def __init__(self, agent_id: object, why: str = "stopped") -> None:
        self.agent_id = agent_id
        super().__init__(f"agent {agent_id!s} is not alive ({why}); create it again or resume its session")


class SandboxError(CmdcError):
    """A file or command operation failed, or is not allowed, in an agent's sandbox."""


class PathEscapeError(SandboxError):
    """The path would leave the sandbox's root."""

    def __init__(self, path: object, why: str) -> None:
        self.path = path
        shown = repr(str(path).replace("\x00", "\\0"))[:200]
        super().__init__(f"path {shown} is not allowed: {why}; use a path inside the working directory")


class VaultError(CmdcError):
    """Base of the secrets-at-rest errors."""


class VaultKeyError(VaultError):
    """No key, a malformed key, or the key that encrypted a value is not in the ring."""


class DecryptionError(VaultError):
    """Wrong key, or the ciphertext (or the row and column it is bound to) was tampered with."""
