"""Chat sessions and their messages: create, configure, fork, walk, search, export and import.

>>> s = create_session(user, name="Refactor the parser", tags=["parser"])   # doctest: +SKIP
>>> s.slug
'refactor-the-parser'
>>> m = create_message(s, role="user", content="Where is the tokenizer?")  # doctest: +SKIP
>>> alt = fork_session(s, m, name="Try a PEG grammar")                     # doctest: +SKIP
>>> [x.content for x in list_messages(alt)] == [m.content]                 # doctest: +SKIP
True

Sessions move between statuses along `SESSION_TRANSITIONS`; anything else is an InvalidStateError.
Message sequence numbers are allocated under the session's row lock, so they are unique and gap-free
with any number of writers, and the session's counters are updated with `SET x = x + n`, never read,
changed and written back.
"""

from __future__ import annotations

from cmdc_nb.services.sessions.feedback import rate_message
from cmdc_nb.services.sessions.forks import branches, fork_session, forks, lineage
from cmdc_nb.services.sessions.messages import (
    count_messages,
    create_message,
    get_conversation_history,
    get_message,
    list_messages,
    search_messages,
)
from cmdc_nb.services.sessions.records import (
    EXPORT_FORMAT,
    SESSION_TRANSITIONS,
    archive_session,
    create_session,
    get_session,
    get_session_by_slug,
    increment_session_stats,
    list_active_sessions,
    list_sessions,
    share_session,
    slugify,
    update_session_config,
    update_session_status,
)
from cmdc_nb.services.sessions.transfer import export_session, import_session

__all__ = [
    "EXPORT_FORMAT",
    "SESSION_TRANSITIONS",
    "archive_session",
    "branches",
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
    "rate_message",
    "search_messages",
    "share_session",
    "slugify",
    "update_session_config",
    "update_session_status",
]
