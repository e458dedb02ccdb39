"""The events as the fold reads them (`events_query`): one line of COPY text per event, its
fields in a fixed order, each extracted by the server; the constants below name the places."""

from __future__ import annotations

import json

from store.projections.pgtext import NULL, copy_escape, copy_unescape

# One line per event: the fields any event may need, then `detail`, the fields of its family of
# types (heartbeats, holds and pauses, usage, runs, repo configurations) as a JSON array of
# texts, NULL for the others. A cast the plpgsql makes on every event of a type is made here
# under the same type, so it cannot fail where the live projection did not.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("position", "position"),
    ("stream_id", "stream_id"),
    ("type", "type"),
    ("recorded_at", "recorded_at"),
    ("agent", "data->>'agentId'"),
    ("linked_from", "metadata->>'linkedFrom'"),
    ("pr_data", "CASE WHEN stream_id LIKE '%/%!%' THEN data END"),  # not NULL: a PR stream
    # Issue streams (`issue_repo_key` not NULL: one): the state machine, and the holds.
    (
        "issue_repo_key",
        "CASE WHEN stream_id LIKE '%/%#%' THEN lower(split_part(stream_id, '#', 1)) END",
    ),
    ("title", "data->>'title'"),
    ("url", "data->>'url'"),
    ("labels", "data->'labels'"),
    ("priority", "data->>'priority'"),
    ("pr_number", "data->>'prNumber'"),
)
_FAMILIES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "heartbeat",  # the agents
        "type = 'HEARTBEAT'",
        (
            ("status", "data->>'status'"),
            ("current_repo", "data->>'currentRepo'"),
            ("current_issue", "data->>'currentIssue'"),
            ("details", "data - 'type' - 'agentId'"),
        ),
    ),
    (
        "steering",  # holds and pauses
        "type IN ('ISSUE_HELD', 'ISSUE_UNHELD', 'AGENT_PAUSED', 'AGENT_RESUMED')",
        (("actor", "coalesce(metadata->>'actor', data->>'actor')"), ("reason", "data->>'reason'")),
    ),
    (
        "usage",  # the values conductor_project inserts for TOKEN_USAGE
        "type = 'TOKEN_USAGE'",
        (
            ("repo", "data->>'repo'"),
            ("repo_key", "lower(data->>'repo')"),
            ("model", "data->>'model'"),
            ("day", "(recorded_at AT TIME ZONE 'UTC')::date"),
            ("input_tokens", "coalesce((data->>'inputTokens')::bigint, 0)"),
            ("output_tokens", "coalesce((data->>'outputTokens')::bigint, 0)"),
            ("cache_read_tokens", "coalesce((data->>'cacheReadTokens')::bigint, 0)"),
            ("cache_creation_tokens", "coalesce((data->>'cacheCreationTokens')::bigint, 0)"),
            (
                "cache_creation_1h_tokens",
                "CASE WHEN jsonb_typeof(data->'cacheCreation1hTokens') = 'number'"
                " THEN least(greatest((data->>'cacheCreation1hTokens')::numeric, 0),"
                " coalesce((data->>'cacheCreationTokens')::numeric, 0))::bigint ELSE 0 END",
            ),
            ("cost_usd", "coalesce((data->>'costUsd')::numeric, 0)"),
            ("reported", "CASE WHEN jsonb_typeof(data->'costUsd') = 'number' THEN 1 ELSE 0 END"),
            (
                "issue",  # the issue number it is attributed by; NULL: unattributed
                "CASE WHEN coalesce(data->>'repo', '') <> ''"
                " AND jsonb_typeof(data->'issueNumber') = 'number'"
                " AND (data->>'issueNumber')::numeric >= 1"
                " THEN (data->>'issueNumber')::integer END",
            ),
        ),
    ),
    (
        "run",  # conductor_project_execution_log; its totals are cast on the way in
        r"type LIKE 'EXECUTION\_LOG\_%'",
        (
            ("id", "data->>'executionLogId'"),
            ("version", "version"),
            ("repo", "data->>'repo'"),
            ("repo_key", "lower(data->>'repo')"),
            ("issue", "nullif((data->>'issueNumber')::integer, 0)"),
            ("model", "data->>'model'"),
            ("status", "data->>'status'"),
            ("steps", "data->'steps'"),
            ("step", "data->'step'"),
            ("entries", "data->'entries'"),
            ("total_cost_usd", "data->>'totalCostUsd'"),
            ("total_turns", "data->>'totalTurns'"),
            ("input_tokens", "data->>'totalInputTokens'"),
            ("output_tokens", "data->>'totalOutputTokens'"),
            ("cache_read_tokens", "data->>'cacheReadTokens'"),
            ("cache_creation_tokens", "data->>'cacheCreationTokens'"),
            ("duration_api_ms", "data->>'durationApiMs'"),
            ("pr_number", "data->>'prNumber'"),
        ),
    ),
    (
        "repo_config",  # the repo configurations
        "type IN ('REPO_CONFIG_CHANGED', 'REPO_CONFIG_INVALID')",
        (
            ("repo", "data->>'repo'"),
            ("repo_key", "lower(data->>'repo')"),
            (
                "present",
                "CASE WHEN type = 'REPO_CONFIG_CHANGED'"
                " THEN coalesce((data->>'present')::boolean, false) END",
            ),
            ("config", "data->'config'"),
            ("sha", "data->>'sha'"),
            ("route_key", "data->>'routeKey'"),
            ("error", "data->>'error'"),
        ),
    ),
)


def events_query(after: int, upto: int) -> str:
    """The events in (after, upto], in position order, as the fold reads them (through COPY)."""
    detail = " ".join(
        f"WHEN {condition} THEN json_build_array("
        + ", ".join(f"({sql})::text" for _, sql in fields)
        + ")"
        for _, condition, fields in _FAMILIES
    )
    fields = ", ".join(f"{sql} AS {name}" for name, sql in _FIELDS)
    return (
        f"SELECT {fields}, CASE {detail} END AS detail FROM events "
        f"WHERE position > {int(after)} AND position <= {int(upto)} ORDER BY position"
    )


_NAMES = [name for name, _ in _FIELDS]
POSITION, STREAM_ID, TYPE, RECORDED_AT, AGENT, LINKED_FROM, PR_DATA, ISSUE_REPO_KEY = range(8)
TITLE, URL, LABELS, PRIORITY, PR_NUMBER, DETAIL = range(8, 14)
assert _NAMES == [
    "position", "stream_id", "type", "recorded_at", "agent", "linked_from", "pr_data",
    "issue_repo_key", "title", "url", "labels", "priority", "pr_number",
]  # fmt: skip


def _family(name: str) -> tuple[str, ...]:
    return next(tuple(f for f, _ in fields) for family, _, fields in _FAMILIES if family == name)


# The places in each family's detail.
HB_STATUS, HB_CURRENT_REPO, HB_CURRENT_ISSUE, HB_DETAILS = range(4)
ST_ACTOR, ST_REASON = range(2)
(US_REPO, US_REPO_KEY, US_MODEL, US_DAY, US_INPUT, US_OUTPUT, US_CACHE_READ, US_CACHE_CREATION,
 US_CACHE_CREATION_1H, US_COST, US_REPORTED, US_ISSUE) = range(12)  # fmt: skip
(RUN_ID, RUN_VERSION, RUN_REPO, RUN_REPO_KEY, RUN_ISSUE, RUN_MODEL, RUN_STATUS, RUN_STEPS,
 RUN_STEP, RUN_ENTRIES) = range(10)  # fmt: skip
RUN_TOTALS = slice(10, 17)  # total_cost_usd .. duration_api_ms: cast by COPY on the way in
RUN_PR_NUMBER = 17
RC_REPO, RC_REPO_KEY, RC_PRESENT, RC_CONFIG, RC_SHA, RC_ROUTE_KEY, RC_ERROR = range(7)
assert _family("heartbeat")[HB_DETAILS] == "details"
assert _family("steering")[ST_REASON] == "reason"
assert _family("usage")[US_ISSUE] == "issue" and _family("usage")[US_COST] == "cost_usd"
assert _family("run")[RUN_ENTRIES] == "entries" and _family("run")[RUN_PR_NUMBER] == "pr_number"
assert _family("run")[RUN_TOTALS] == (
    "total_cost_usd", "total_turns", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_creation_tokens", "duration_api_ms",
)  # fmt: skip
assert _family("repo_config")[RC_ERROR] == "error"


def detail(e: list[str]) -> list[str]:
    """The fields of the event's family (its `detail`), as COPY text like the others."""
    return [NULL if v is None else copy_escape(v) for v in json.loads(copy_unescape(e[DETAIL]))]
