"""The closed sets of values that status and kind columns take.

Each is a `StrEnum`, so a member compares equal to its string (`SessionStatus.ACTIVE == "active"`),
and is stored as that string with a CHECK constraint on both backends.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ActivityAction",
    "AgentCallStatus",
    "ApprovalSourceType",
    "ApprovalStatus",
    "ApprovalType",
    "ArtifactSourceType",
    "ArtifactType",
    "AuthProvider",
    "BudgetPeriod",
    "BudgetScope",
    "ChunkStrategy",
    "CostService",
    "CostSourceType",
    "CredentialStatus",
    "DocumentSourceType",
    "IndexSourceType",
    "IndexStatus",
    "JobStatus",
    "JobType",
    "MessageRole",
    "PresenceResource",
    "PresenceStatus",
    "Priority",
    "RetentionPolicy",
    "RiskLevel",
    "RuleAction",
    "RuleStatus",
    "ScheduleType",
    "SessionStatus",
    "StepType",
    "StorageBackend",
    "TimeoutAction",
    "ToolUseStatus",
    "TriggerType",
    "UserStatus",
    "Visibility",
    "WebhookDeliveryStatus",
    "WorkflowRunStatus",
    "WorkflowStatus",
    "WorkflowStepStatus",
]


class UserStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    SUSPENDED = "suspended"


class AuthProvider(StrEnum):
    LOCAL = "local"
    GITHUB = "github"
    GOOGLE = "google"


class CredentialStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class SessionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL_RESULT = "tool_result"


class AgentCallStatus(StrEnum):
    PENDING = "pending"
    STREAMING = "streaming"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class ToolUseStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class WorkflowStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    ARCHIVED = "archived"


class WorkflowRunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_APPROVAL = "waiting_approval"
    WAITING_INPUT = "waiting_input"  # only hand-driven (external) steps are left to do
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class WorkflowStepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    WAITING_INPUT = "waiting_input"  # an external step whose dependencies are done: someone's turn
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class StepType(StrEnum):
    AGENT_CALL = "agent_call"
    TOOL = "tool"
    PYTHON = "python"
    RAG_QUERY = "rag_query"
    SHELL = "shell"
    APPROVAL = "approval"
    TRANSFORM = "transform"
    CONDITION = "condition"
    PARALLEL = "parallel"
    EXTERNAL = "external"  # performed by a person or an outside system: start_step / complete_step


class TriggerType(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    WEBHOOK = "webhook"
    API = "api"
    RETRY = "retry"


class IndexStatus(StrEnum):
    CREATING = "creating"
    UPDATING = "updating"
    READY = "ready"
    FAILED = "failed"
    ARCHIVED = "archived"


class IndexSourceType(StrEnum):
    LOCAL_REPO = "local_repo"
    GITHUB = "github"
    FILES = "files"
    URL = "url"
    TEXTS = "texts"
    DATAFRAME = "dataframe"


class ChunkStrategy(StrEnum):
    FIXED = "fixed"
    SEMANTIC = "semantic"
    CODE_AWARE = "code_aware"
    RECURSIVE = "recursive"


class DocumentSourceType(StrEnum):
    FILE = "file"
    URL = "url"
    GITHUB = "github"
    API = "api"
    TEXT = "text"


class ApprovalType(StrEnum):
    TOOL_USE = "tool_use"
    FILE_WRITE = "file_write"
    SHELL_COMMAND = "shell_command"
    WORKFLOW_STEP = "workflow_step"
    PLAN = "plan"
    CUSTOM = "custom"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    AUTO_APPROVED = "auto_approved"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class ApprovalSourceType(StrEnum):
    TOOL_USE = "tool_use"
    WORKFLOW_STEP = "workflow_step"
    MANUAL = "manual"
    PLAN = "plan"
    FLOWSTONE_CHECKPOINT = "flowstone_checkpoint"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class TimeoutAction(StrEnum):
    DENY = "deny"
    APPROVE = "approve"
    ESCALATE = "escalate"


class RuleStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class RuleAction(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    REQUIRE_REVIEW = "require_review"


class ArtifactType(StrEnum):
    FILE = "file"
    CODE = "code"
    DIFF = "diff"
    IMAGE = "image"
    DOCUMENT = "document"
    ARCHIVE = "archive"
    OTHER = "other"


class StorageBackend(StrEnum):
    INLINE = "inline"
    LOCAL = "local"
    S3 = "s3"


class ArtifactSourceType(StrEnum):
    AGENT_OUTPUT = "agent_output"
    TOOL_RESULT = "tool_result"
    UPLOAD = "upload"
    WORKFLOW = "workflow"


class Visibility(StrEnum):
    PRIVATE = "private"
    SHARED = "shared"
    PUBLIC = "public"


class RetentionPolicy(StrEnum):
    PERMANENT = "permanent"
    SESSION = "session"
    TEMPORARY = "temporary"


class CostSourceType(StrEnum):
    AGENT_CALL = "agent_call"
    EMBEDDING = "embedding"
    TOOL_EXECUTION = "tool_execution"


class BudgetScope(StrEnum):
    USER = "user"
    SESSION = "session"
    WORKSPACE = "workspace"


class BudgetPeriod(StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"
    TOTAL = "total"


class CostService(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"
    IMAGE = "image"
    SPEECH = "speech"


class JobType(StrEnum):
    WORKFLOW = "workflow"
    REINDEX = "reindex"
    CLEANUP = "cleanup"
    CUSTOM = "custom"


class ScheduleType(StrEnum):
    ONCE = "once"
    CRON = "cron"
    INTERVAL = "interval"


class JobStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PresenceResource(StrEnum):
    SESSION = "session"
    WORKFLOW_RUN = "workflow_run"
    APPROVAL_ITEM = "approval_item"


class PresenceStatus(StrEnum):
    VIEWING = "viewing"
    EDITING = "editing"
    IDLE = "idle"
    AWAY = "away"


class ActivityAction(StrEnum):
    """The seed's whitelist of 30 audited actions."""

    SESSION_CREATE = "session.create"
    SESSION_UPDATE = "session.update"
    SESSION_ARCHIVE = "session.archive"
    SESSION_FORK = "session.fork"
    MESSAGE_CREATE = "message.create"
    MESSAGE_DELETE = "message.delete"
    AGENT_CALL_START = "agent.call.start"
    AGENT_CALL_COMPLETE = "agent.call.complete"
    AGENT_CALL_FAIL = "agent.call.fail"
    TOOL_EXECUTE = "tool.execute"
    TOOL_APPROVE = "tool.approve"
    TOOL_DENY = "tool.deny"
    WORKFLOW_CREATE = "workflow.create"
    WORKFLOW_RUN_START = "workflow.run.start"
    WORKFLOW_RUN_COMPLETE = "workflow.run.complete"
    WORKFLOW_RUN_FAIL = "workflow.run.fail"
    INDEX_CREATE = "index.create"
    INDEX_UPDATE = "index.update"
    INDEX_DELETE = "index.delete"
    APPROVAL_CREATE = "approval.create"
    APPROVAL_APPROVE = "approval.approve"
    APPROVAL_DENY = "approval.deny"
    APPROVAL_EXPIRE = "approval.expire"
    ARTIFACT_CREATE = "artifact.create"
    ARTIFACT_UPDATE = "artifact.update"
    ARTIFACT_DELETE = "artifact.delete"
    USER_LOGIN = "user.login"
    USER_LOGOUT = "user.logout"
    USER_UPDATE = "user.update"
    # Not in the seed's 30: credential changes are security-relevant and belong in the audit log too.
    CREDENTIAL_CREATE = "credential.create"
    CREDENTIAL_REVOKE = "credential.revoke"
    VAULT_ROTATE = "vault.rotate"


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
