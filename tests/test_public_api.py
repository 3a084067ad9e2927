"""The public API is explicit and frozen: changing it should be a deliberate act."""

from __future__ import annotations

import importlib

import pytest

import cmdc_nb

PUBLIC = {
    "cmdc_nb": [
        "Workspace",
        "__version__",
        "accounts",
        "activity",
        "agents",
        "approvals",
        "artifacts",
        "budgets",
        "connect",
        "costs",
        "errors",
        "events",
        "get_workspace",
        "matching",
        "presence",
        "pricing",
        "sessions",
        "store",
        "vault",
    ],
    "cmdc_nb.accounts": [
        "create_api_credential",
        "create_user",
        "get_api_credential",
        "get_api_credential_by_provider",
        "get_decrypted_key",
        "get_user",
        "get_user_by_email",
        "list_api_credentials",
        "list_users",
        "record_credential_usage",
        "revoke_api_credential",
        "update_user_preferences",
        "update_user_profile",
        "update_user_status",
        "verify_password",
    ],
    "cmdc_nb.sessions": [
        "EXPORT_FORMAT",
        "SESSION_TRANSITIONS",
        "archive_session",
        "count_messages",
        "create_message",
        "create_session",
        "export_session",
        "fork_session",
        "forks",
        "get_conversation_history",
        "get_message",
        "get_session",
        "get_session_by_slug",
        "import_session",
        "increment_session_stats",
        "lineage",
        "list_active_sessions",
        "list_messages",
        "list_sessions",
        "search_messages",
        "slugify",
        "update_session_config",
        "update_session_status",
    ],
    "cmdc_nb.vault": [
        "ENCRYPTED_COLUMNS",
        "KeyRing",
        "RotationReport",
        "Vault",
        "generate_key",
        "key_id",
        "rotate_vault_key",
    ],
    "cmdc_nb.events": [
        "Event",
        "EventBus",
        "EventStream",
        "Subscription",
        "topics",
    ],
    "cmdc_nb.agents": [
        "AGENT_CALL_TRANSITIONS",
        "APPROVAL_CLASSES",
        "TOOL_USE_TRANSITIONS",
        "approval_required",
        "approve_tool_use",
        "cancel_agent_call",
        "cancel_tool_use",
        "complete_agent_call",
        "complete_tool_use",
        "create_agent_call",
        "create_tool_use",
        "deny_tool_use",
        "fail_agent_call",
        "fail_tool_use",
        "get_agent_call",
        "get_tool_use",
        "list_agent_calls",
        "list_pending_tool_uses",
        "list_tool_uses",
        "normalize_policy",
        "retry_agent_call",
        "start_streaming",
        "start_tool_execution",
        "timeout_agent_call",
    ],
    "cmdc_nb.approvals": [
        "ExpiryReport",
        "PRIORITY_RANK",
        "RuleDecision",
        "approve_item",
        "count_pending_approvals",
        "create_approval_item",
        "create_approval_rule",
        "delete_approval_rule",
        "deny_item",
        "disable_rule",
        "enable_rule",
        "expire_old_approvals",
        "find_matching_rules",
        "get_approval_item",
        "get_approval_rule",
        "list_approval_rules",
        "list_pending_approvals",
        "list_session_pending_approvals",
        "try_auto_approve",
        "update_approval_rule",
    ],
    "cmdc_nb.activity": [
        "list_resource_activity",
        "list_user_activity",
        "log_activity",
        "log_user_activity",
        "search_activity",
    ],
    "cmdc_nb.presence": [
        "ACTIVE_WINDOW",
        "STALE_AFTER",
        "cleanup_stale_presence",
        "get_presence_by_client",
        "heartbeat",
        "join_resource",
        "leave_resource",
        "list_resource_presence",
        "update_presence",
    ],
    "cmdc_nb.matching": [
        "CompiledConditions",
        "command_matches",
        "compile_conditions",
        "normalise_path",
        "path_matches",
        "split_command",
    ],
    "cmdc_nb.costs": [
        "current_notebook_cell",
        "get_cost_by_model",
        "get_cost_by_provider",
        "get_cost_by_session",
        "get_daily_cost",
        "get_daily_summary",
        "get_monthly_cost",
        "get_weekly_cost",
        "list_daily_summaries",
        "record_cost",
        "regenerate_daily_summary",
    ],
    "cmdc_nb.budgets": [
        "BudgetStatus",
        "DEFAULT_WARN_AT",
        "budget_status",
        "check_budgets",
        "create_budget",
        "delete_budget",
        "disable_budget",
        "enable_budget",
        "get_budget",
        "list_budgets",
        "update_budget",
    ],
    "cmdc_nb.pricing": [
        "CostEstimate",
        "FREE_PROVIDERS",
        "Price",
        "count_tokens",
        "delete_model_price",
        "estimate_cost",
        "get_price",
        "list_model_prices",
        "litellm_price",
        "set_model_price",
    ],
    "cmdc_nb.artifacts": [
        "CleanupReport",
        "INLINE_LIMIT",
        "collect_garbage",
        "create_artifact",
        "create_artifact_version",
        "create_diff",
        "delete_artifact",
        "delete_expired_artifacts",
        "get_artifact",
        "get_latest_version",
        "get_version_history",
        "list_artifacts",
        "read_artifact",
        "read_artifact_text",
        "restore_artifact_version",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_exactly_these(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_every_error_derives_from_the_one_base() -> None:
    from cmdc_nb import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.CmdcError)
    # and the tree in the docstring names every class
    for name in errors.__all__:
        assert name in (errors.__doc__ or "")


def test_version_is_a_string() -> None:
    assert isinstance(cmdc_nb.__version__, str) and cmdc_nb.__version__.count(".") == 2
