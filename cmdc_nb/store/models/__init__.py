"""SQLAlchemy models of the 20 tables in the seed schema (its README says 21 and lists 20), and of the
tables cmdc_nb adds (job_runs, cost_rollups, event_log, and the gateway's gateway_keys, a2a_tasks,
webhook_deliveries)."""

from cmdc_nb.store.models._base import Base
from cmdc_nb.store.models.accounts import ApiCredential, User
from cmdc_nb.store.models.agents import AgentCall, ToolUse
from cmdc_nb.store.models.approvals import ApprovalItem, ApprovalRule
from cmdc_nb.store.models.artifacts import Artifact
from cmdc_nb.store.models.costs import Budget, CostDailySummary, CostRecord, CostRollup, ModelPrice
from cmdc_nb.store.models.events import EventLogEntry
from cmdc_nb.store.models.gateway import A2ATask, GatewayKey, WebhookDelivery
from cmdc_nb.store.models.indexes import ContextChunk, ContextDocument, Index
from cmdc_nb.store.models.presence import ActivityLog, PresenceRecord
from cmdc_nb.store.models.scheduling import JobRun, ScheduledJob
from cmdc_nb.store.models.sessions import Message, Session
from cmdc_nb.store.models.workflows import Workflow, WorkflowRun, WorkflowStep

__all__ = [
    "ENCRYPTED_COLUMNS",
    "A2ATask",
    "ActivityLog",
    "AgentCall",
    "ApiCredential",
    "ApprovalItem",
    "ApprovalRule",
    "Artifact",
    "Base",
    "Budget",
    "ContextChunk",
    "ContextDocument",
    "CostDailySummary",
    "CostRecord",
    "CostRollup",
    "EventLogEntry",
    "GatewayKey",
    "Index",
    "JobRun",
    "Message",
    "ModelPrice",
    "PresenceRecord",
    "ScheduledJob",
    "Session",
    "ToolUse",
    "User",
    "WebhookDelivery",
    "Workflow",
    "WorkflowRun",
    "WorkflowStep",
]

# Every column that holds a vault ciphertext: key rotation re-encrypts them, and `connect()` refuses to
# make a new key while any of them holds a value (it could open none of them).
ENCRYPTED_COLUMNS: tuple[tuple[type[ApiCredential], str], ...] = ((ApiCredential, "encrypted_key"),)
