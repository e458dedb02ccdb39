-- The baseline: the tables and indexes of migrations 0001-0008, folded into one file before the
-- first release (no database had been deployed with them). It is numbered 0008 so that a
-- database those eight migrations built is at the baseline already: its schema is this one.
-- The functions live in the repeatable files (store/*/sql/*.sql), applied after the numbered
-- migrations; the whole current schema, functions included, is store/schema.sql.

-- The event store: one append-only table. `position` is the global order, (stream_id, version)
-- the optimistic concurrency of a stream.
CREATE TABLE events (
    position    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     integer     NOT NULL CHECK (version > 0),
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);
CREATE INDEX events_type_position ON events (type, position);

-- An idempotency key remembers the result of the append that first used it.
CREATE TABLE idempotency_keys (
    key            text        PRIMARY KEY,
    stream_id      text        NOT NULL,
    first_position bigint      NOT NULL,
    last_position  bigint      NOT NULL,
    version        integer     NOT NULL,
    recorded_at    timestamptz NOT NULL
);

-- Small named values the application keeps across restarts: a consumer's last handled
-- position (the bot's alerts), the hash of the last synced slash commands, ...
CREATE TABLE app_state (
    key        text        PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The projections, kept by conductor_project in the transaction of each append and rebuilt
-- from the events by `conductor-e projections rebuild`. Every row carries `position`, the
-- global position of the last event applied to it: that is how far the row is tracked.
CREATE TABLE issues (
    stream_id       text        PRIMARY KEY,
    repo            text        NOT NULL,
    number          integer     NOT NULL,
    title           text,
    url             text,
    labels          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    priority        text        NOT NULL DEFAULT 'normal',
    priority_rank   smallint    NOT NULL DEFAULT 2,
    state           text        NOT NULL,
    assignee        text,
    reviewer        text,
    attempt         integer     NOT NULL DEFAULT 0,
    pr_number       integer,
    review_state    text,
    escalated       boolean     NOT NULL DEFAULT false,
    human_gate      boolean     NOT NULL DEFAULT false,
    approved_at     timestamptz,
    state_since     timestamptz NOT NULL,
    last_activity   timestamptz NOT NULL,
    last_event_type text        NOT NULL,
    position        bigint      NOT NULL,
    -- Held by a person (ISSUE_HELD): never handed out, whatever its state.
    held            boolean     NOT NULL DEFAULT false,
    held_by         text,
    held_reason     text,
    held_at         timestamptz,
    -- The agent a person took it back from (ISSUE_REQUEUED): that agent's claims skip it, so
    -- it is not handed straight back; a person may still /issue assign it there. Cleared by
    -- the next assignment.
    requeued_from   text
);
-- The priority queue: critical > high > normal, then oldest approval first. It covers held
-- issues too (the listing shows them, marked); the claims skip them as they walk it.
CREATE INDEX issues_queue ON issues (priority_rank, approved_at, stream_id) WHERE state = 'queued';
-- The queue of one repo, for the routed claim.
CREATE INDEX issues_queue_by_repo ON issues (lower(repo), priority_rank, approved_at, stream_id)
    WHERE state = 'queued';
-- Reviews waiting for a reviewer, oldest PR first.
CREATE INDEX issues_review_queue ON issues (state_since, stream_id)
    WHERE state = 'in_review' AND reviewer IS NULL;
CREATE INDEX issues_state ON issues (state, last_activity);
-- The issue a PR belongs to, by PR number (review verdicts and merge requests name the PR).
CREATE INDEX issues_pr ON issues (lower(repo), pr_number) WHERE pr_number IS NOT NULL;

CREATE TABLE agents (
    agent_id       text        PRIMARY KEY,
    status         text        NOT NULL DEFAULT 'unknown',
    current_issue  text,
    last_heartbeat timestamptz,
    last_event_at  timestamptz NOT NULL,
    details        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    position       bigint      NOT NULL,
    -- Paused by a person (AGENT_PAUSED): handed nothing new; its current work is untouched.
    paused         boolean     NOT NULL DEFAULT false,
    paused_by      text,
    paused_reason  text,
    paused_at      timestamptz
);

-- Tokens and dollars per UTC day, agent, repo and model ('' when the event named none).
CREATE TABLE usage_daily (
    day                   date    NOT NULL,
    agent_id              text    NOT NULL,
    repo                  text    NOT NULL,
    model                 text    NOT NULL,
    events                integer NOT NULL DEFAULT 0,
    input_tokens          bigint  NOT NULL DEFAULT 0,
    output_tokens         bigint  NOT NULL DEFAULT 0,
    cache_read_tokens     bigint  NOT NULL DEFAULT 0,
    cache_creation_tokens bigint  NOT NULL DEFAULT 0,
    cost_usd              numeric NOT NULL DEFAULT 0,
    position              bigint  NOT NULL,
    -- The 1-hour part of the cache writes (priced apart from 5-minute writes), and how many
    -- events reported a cost themselves (costUsd): a reported 0 is not "nobody reported".
    cache_creation_1h_tokens bigint  NOT NULL DEFAULT 0,
    reported_events          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (day, agent_id, repo, model)
);

-- The same figures per issue and UTC day, for "what did this issue cost" and the most
-- expensive issues of a window. Every TOKEN_USAGE lands here, under the stream '' when it names
-- no issue (unattributed), so attributed + unattributed adds up to what each agent spent.
CREATE TABLE usage_by_issue (
    stream_id                text    NOT NULL,
    day                      date    NOT NULL,
    agent_id                 text    NOT NULL,
    model                    text    NOT NULL,
    events                   integer NOT NULL DEFAULT 0,
    input_tokens             bigint  NOT NULL DEFAULT 0,
    output_tokens            bigint  NOT NULL DEFAULT 0,
    cache_read_tokens        bigint  NOT NULL DEFAULT 0,
    cache_creation_tokens    bigint  NOT NULL DEFAULT 0,
    cache_creation_1h_tokens bigint  NOT NULL DEFAULT 0,
    cost_usd                 numeric NOT NULL DEFAULT 0,
    reported_events          integer NOT NULL DEFAULT 0,
    position                 bigint  NOT NULL,
    PRIMARY KEY (stream_id, day, agent_id, model)
);
-- Top issues by cost within a window of days.
CREATE INDEX usage_by_issue_day ON usage_by_issue (day);

-- Review verdicts and merge requests about a PR no issue is known to own yet: they wait on
-- the PR's stream (`owner/repo!N`) and are linked (copied to the issue's stream, with
-- metadata.linkedFrom = this position) once the PR becomes known.
CREATE TABLE pending_pr_events (
    position    bigint      PRIMARY KEY,
    stream_id   text        NOT NULL,
    repo        text        NOT NULL,
    pr_number   integer     NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX pending_pr_events_pr ON pending_pr_events (lower(repo), pr_number);

-- Execution logs: one row per run of an agent on an assignment, from the events of its stream
-- `execution-log#<id>`. Steps and log lines are bounded by the API (see README).
CREATE TABLE execution_logs (
    id                    text        PRIMARY KEY,
    stream_id             text        NOT NULL,
    repo                  text,
    issue_number          integer,
    agent_id              text,
    model                 text,
    status                text        NOT NULL,
    steps                 jsonb       NOT NULL DEFAULT '[]'::jsonb,
    log_lines             jsonb       NOT NULL DEFAULT '[]'::jsonb,
    total_cost_usd        numeric,
    total_turns           integer,
    input_tokens          bigint,
    output_tokens         bigint,
    cache_read_tokens     bigint,
    cache_creation_tokens bigint,
    duration_api_ms       bigint,
    pr_number             integer,
    started_at            timestamptz NOT NULL,
    completed_at          timestamptz,
    version               integer     NOT NULL,
    position              bigint      NOT NULL
);
CREATE INDEX execution_logs_issue ON execution_logs (lower(repo), issue_number, started_at);

-- Each managed repo's .rig-agent.yaml as routing sees it. REPO_CONFIG_CHANGED records a repo's
-- configuration as read from GitHub (or that it has none); REPO_CONFIG_INVALID records a
-- broken file, which leaves the last good configuration in place. The claim filters the queue
-- by it: an agent takes only issues of repos routed to it.
CREATE TABLE repo_configs (
    repo        text        PRIMARY KEY,  -- lower-cased owner/name
    repo_name   text        NOT NULL,     -- as GitHub spells it
    present     boolean     NOT NULL DEFAULT false,  -- the last good read found a file
    config      jsonb,                    -- the last good configuration (NULL: none)
    sha         text,                     -- blob sha of the last good file
    route_key   text,                     -- which route the config selects (NULL: default)
    error       text,                     -- the latest read was broken: why (NULL: it was fine)
    error_sha   text,
    changed_at  timestamptz NOT NULL,
    position    bigint      NOT NULL
);

-- Push dispatch: a transactional outbox of assignments for the agents' Valkey streams.
-- conductor_dispatch claims and writes the stream entry here in one transaction; the
-- dispatcher then writes each unsent row to `assignments:{agentId}` and marks it sent. The
-- entry carries the row's id and the write is skipped when Valkey already holds it, so a
-- crash, an outage or a restart delays an assignment but never loses or doubles it. Not a
-- projection: a rebuild leaves it alone.
CREATE TABLE dispatch_outbox (
    assignment_id bigint      PRIMARY KEY,  -- the position of the claim's event
    -- The id the stream entry carries (and its marker's key): unique even across a database
    -- restored or rebuilt beside the same Valkey, where positions repeat.
    token         uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    agent_id      text        NOT NULL,
    stream_id     text        NOT NULL,     -- owner/repo#N of the issue
    kind          text        NOT NULL CHECK (kind IN ('issue', 'review')),
    fields        jsonb       NOT NULL,     -- the stream entry, string values only
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,              -- written to the agent's stream
    entry_id      text,                     -- its stream entry id
    -- Not written after all: the issue left the agent (requeued as stuck while Valkey was down).
    cancelled     boolean     NOT NULL DEFAULT false
);
CREATE INDEX dispatch_outbox_unsent ON dispatch_outbox (assignment_id) WHERE sent_at IS NULL;
CREATE INDEX dispatch_outbox_agent ON dispatch_outbox (agent_id, assignment_id);

-- The agent runtime's activity log (its src/agent-log.js posts a batch every 2 s): kept as a
-- bounded history per agent, not as events - it is chatter about the work, not a fact of it,
-- and would outgrow the event store within days. Not a projection: a rebuild leaves it alone.
CREATE TABLE agent_logs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id    text        NOT NULL,
    ts          timestamptz,
    level       text,
    message     text        NOT NULL,
    meta        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_logs_agent ON agent_logs (agent_id, id DESC);
