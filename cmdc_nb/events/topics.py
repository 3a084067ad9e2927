"""Topic names, as in the seed (`session:{id}:messages`, `user:{id}:approvals`, …).

Build them with these helpers rather than by hand, so a typo is an AttributeError, not a silent miss.
"""

from __future__ import annotations

__all__ = [
    "AGENT_PREFIX",
    "a2a_tasks",
    "agent",
    "index",
    "presence",
    "session",
    "session_agent_calls",
    "session_messages",
    "user",
    "user_approvals",
    "user_costs",
    "user_indexes",
    "user_sessions",
    "user_workflows",
    "workflow",
    "workflow_run",
    "workflow_run_steps",
    "workflow_runs",
    "workspace",
]


def session(session_id: object) -> str:
    return f"session:{session_id}"


def session_messages(session_id: object) -> str:
    return f"session:{session_id}:messages"


def session_agent_calls(session_id: object) -> str:
    return f"session:{session_id}:agent_calls"


def user(user_id: object) -> str:
    return f"user:{user_id}"


def user_sessions(user_id: object) -> str:
    return f"user:{user_id}:sessions"


def user_approvals(user_id: object) -> str:
    return f"user:{user_id}:approvals"


def user_costs(user_id: object) -> str:
    return f"user:{user_id}:costs"


def user_workflows(user_id: object) -> str:
    return f"user:{user_id}:workflows"


def user_indexes(user_id: object) -> str:
    return f"user:{user_id}:indexes"


def workflow(workflow_id: object) -> str:
    return f"workflow:{workflow_id}"


def workflow_runs(workflow_id: object) -> str:
    return f"workflow:{workflow_id}:runs"


def workflow_run(run_id: object) -> str:
    return f"workflow_run:{run_id}"


def workflow_run_steps(run_id: object) -> str:
    return f"workflow_run:{run_id}:steps"


def index(index_id: object) -> str:
    return f"index:{index_id}"


def workspace() -> str:
    """Workspace-wide events (vault rotation, migrations)."""
    return "workspace"


def presence(resource_type: object, resource_id: object) -> str:
    """Who is looking at a resource (`presence:session:{id}`)."""
    return f"presence:{resource_type}:{resource_id}"


AGENT_PREFIX = "agent:"


def agent(agent_id: object) -> str:
    """Where a stored agent's kernel events are mirrored as plain JSON."""
    return f"{AGENT_PREFIX}{agent_id}"


def a2a_tasks(owner_id: object) -> str:
    """The gateway's A2A tasks of one owner."""
    return f"a2a:{owner_id}"
