-- The event store: one append-only table, the projections kept in the same transaction as each
-- append, and the server-side functions that do an append (or a claim) in one round trip.

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

-- The projections. Every row carries `position`, the global position of the last event applied
-- to it, written in the same transaction as the event: that is how far the row is tracked.
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
    position        bigint      NOT NULL
);
-- The priority queue: critical > high > normal, then oldest approval first.
CREATE INDEX issues_queue ON issues (priority_rank, approved_at, stream_id) WHERE state = 'queued';
-- Reviews waiting for a reviewer, oldest PR first.
CREATE INDEX issues_review_queue ON issues (state_since, stream_id)
    WHERE state = 'in_review' AND reviewer IS NULL;
CREATE INDEX issues_state ON issues (state, last_activity);

CREATE TABLE agents (
    agent_id       text        PRIMARY KEY,
    status         text        NOT NULL DEFAULT 'unknown',
    current_issue  text,
    last_heartbeat timestamptz,
    last_event_at  timestamptz NOT NULL,
    details        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    position       bigint      NOT NULL
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
-- expensive issues of a window; usage that names no issue is under stream_id '' (unattributed).
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

CREATE FUNCTION conductor_priority_rank(p text) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p WHEN 'critical' THEN 0 WHEN 'high' THEN 1 ELSE 2 END::smallint
$$;

-- The issue state an event moves an issue to; NULL keeps the current state.
CREATE FUNCTION conductor_issue_state(p_type text, p_current text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_type = 'ISSUE_APPROVED'
            THEN CASE WHEN p_current IS NULL OR p_current = 'withdrawn' THEN 'queued' END
        WHEN p_type IN ('ISSUE_UNASSIGNED', 'ISSUE_REQUEUED') THEN 'queued'
        WHEN p_type = 'ISSUE_ASSIGNED' THEN 'assigned'
        WHEN p_type IN ('WORK_STARTED', 'BRANCH_CREATED', 'CI_FAILED', 'REVIEW_DISPUTED')
            THEN 'in_progress'
        WHEN p_type IN ('PR_CREATED', 'REVIEW_ASSIGNED') THEN 'in_review'
        WHEN p_type IN ('MERGED', 'DEPLOYED_STAGING', 'SMOKE_PASSED', 'DEPLOYED_PRODUCTION',
                        'VERIFIED', 'E2E_PASSED') THEN 'deploying'
        WHEN p_type IN ('SMOKE_FAILED', 'E2E_FAILED', 'ESCALATED') THEN 'failed'
        WHEN p_type = 'ISSUE_DONE' THEN 'done'
        WHEN p_type = 'ISSUE_WITHDRAWN' THEN 'withdrawn'
    END
$$;

-- Applies one event to the projections. Uses only the event's own fields (never now()), so a
-- rebuild that replays the events gives the same rows as the live appends did.
CREATE FUNCTION conductor_project(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d          jsonb := e.data;
    v_agent    text  := d->>'agentId';
    v_issue    text;
    v_state    text;
    v_current  issues%ROWTYPE;
    v_priority text;
    v_known    boolean;
    v_write_1h bigint;
    v_reported integer;
    v_day      date;
    v_usage_of text;
BEGIN
    IF e.stream_id LIKE '%/%#%' THEN
        SELECT * INTO v_current FROM issues WHERE stream_id = e.stream_id;
        v_known := FOUND;
        v_state := conductor_issue_state(e.type, v_current.state);
        v_priority := d->>'priority';
    END IF;
    -- An event that implies no state (CI_PASSED, a reminder) does not create an issue row.
    IF e.stream_id LIKE '%/%#%' AND (v_known OR v_state IS NOT NULL) THEN
        IF NOT v_known THEN
            INSERT INTO issues (stream_id, repo, number, title, url, labels, priority,
                                priority_rank, state, approved_at, state_since, last_activity,
                                last_event_type, position)
            VALUES (e.stream_id, split_part(e.stream_id, '#', 1),
                    split_part(e.stream_id, '#', 2)::integer,
                    d->>'title', d->>'url', coalesce(d->'labels', '[]'::jsonb),
                    coalesce(v_priority, 'normal'),
                    conductor_priority_rank(coalesce(v_priority, 'normal')),
                    v_state, e.recorded_at, e.recorded_at, e.recorded_at,
                    e.type, e.position);
            v_state := NULL;  -- the row was created in its state already
        END IF;

        UPDATE issues SET
            title        = coalesce(d->>'title', title),
            url          = coalesce(d->>'url', url),
            labels       = coalesce(d->'labels', labels),
            priority     = coalesce(v_priority, priority),
            priority_rank = conductor_priority_rank(coalesce(v_priority, priority)),
            state        = coalesce(v_state, state),
            state_since  = CASE WHEN v_state IS NOT NULL AND v_state <> state
                                THEN e.recorded_at ELSE state_since END,
            approved_at  = coalesce(approved_at, e.recorded_at),
            assignee     = CASE
                               WHEN e.type = 'ISSUE_ASSIGNED' THEN v_agent
                               WHEN e.type IN ('ISSUE_UNASSIGNED', 'ISSUE_REQUEUED') THEN NULL
                               ELSE assignee END,
            attempt      = attempt + CASE WHEN e.type = 'ISSUE_ASSIGNED' THEN 1 ELSE 0 END,
            reviewer     = CASE
                               WHEN e.type = 'REVIEW_ASSIGNED' THEN v_agent
                               WHEN e.type IN ('REVIEW_DISPUTED', 'ISSUE_UNASSIGNED',
                                               'ISSUE_REQUEUED', 'PR_CREATED') THEN NULL
                               ELSE reviewer END,
            pr_number    = coalesce((d->>'prNumber')::integer, pr_number),
            review_state = CASE
                               WHEN e.type = 'REVIEW_PASSED' THEN 'approved'
                               WHEN e.type = 'REVIEW_DISPUTED' THEN 'changes_requested'
                               WHEN e.type IN ('PR_CREATED', 'ISSUE_REQUEUED') THEN NULL
                               ELSE review_state END,
            escalated    = CASE
                               WHEN e.type = 'ESCALATED' THEN true
                               WHEN e.type = 'ISSUE_REQUEUED' THEN false
                               ELSE escalated END,
            human_gate   = CASE
                               WHEN e.type = 'HUMAN_GATE_TRIGGERED' THEN true
                               WHEN e.type IN ('ISSUE_DONE', 'ISSUE_REQUEUED') THEN false
                               ELSE human_gate END,
            last_activity = e.recorded_at,
            last_event_type = e.type,
            position     = e.position
        WHERE stream_id = e.stream_id;
    END IF;

    -- Agents: heartbeats, and whatever an agent is given or gives up.
    IF e.type = 'HEARTBEAT' THEN
        v_issue := CASE WHEN d->>'currentIssue' IS NOT NULL AND d->>'currentRepo' IS NOT NULL
                        THEN (d->>'currentRepo') || '#' || (d->>'currentIssue') END;
        INSERT INTO agents AS a (agent_id, status, current_issue, last_heartbeat, last_event_at,
                                 details, position)
        VALUES (v_agent, coalesce(d->>'status', 'unknown'), v_issue, e.recorded_at,
                e.recorded_at, d - 'type' - 'agentId', e.position)
        ON CONFLICT (agent_id) DO UPDATE SET
            status = excluded.status, current_issue = excluded.current_issue,
            last_heartbeat = excluded.last_heartbeat, last_event_at = excluded.last_event_at,
            details = excluded.details, position = excluded.position;
    ELSIF e.type IN ('ISSUE_ASSIGNED', 'REVIEW_ASSIGNED') AND v_agent IS NOT NULL THEN
        INSERT INTO agents AS a (agent_id, status, current_issue, last_event_at, position)
        VALUES (v_agent, 'assigned', e.stream_id, e.recorded_at, e.position)
        ON CONFLICT (agent_id) DO UPDATE SET
            status = 'assigned', current_issue = excluded.current_issue,
            last_event_at = excluded.last_event_at, position = excluded.position;
    ELSIF e.type = 'AGENT_STUCK' AND v_agent IS NOT NULL THEN
        INSERT INTO agents AS a (agent_id, status, last_event_at, position)
        VALUES (v_agent, 'stuck', e.recorded_at, e.position)
        ON CONFLICT (agent_id) DO UPDATE SET
            status = 'stuck', last_event_at = excluded.last_event_at,
            position = excluded.position;
    ELSIF e.type IN ('ISSUE_UNASSIGNED', 'ISSUE_DONE', 'ESCALATED', 'ISSUE_WITHDRAWN',
                     'ISSUE_REQUEUED') THEN
        UPDATE agents SET current_issue = NULL, status = 'idle', last_event_at = e.recorded_at,
                          position = e.position
        WHERE current_issue = e.stream_id;
    END IF;

    IF e.type = 'TOKEN_USAGE' THEN
        -- The 1-hour part of the cache writes (cacheCreationTokens counts all of them, as the
        -- Messages API's cache_creation_input_tokens does); anything but a number counts 0.
        v_write_1h := CASE WHEN jsonb_typeof(d->'cacheCreation1hTokens') = 'number'
                           THEN least(greatest((d->>'cacheCreation1hTokens')::numeric, 0),
                                      coalesce((d->>'cacheCreationTokens')::numeric, 0))::bigint
                           ELSE 0 END;
        v_reported := CASE WHEN d ? 'costUsd' AND jsonb_typeof(d->'costUsd') = 'number'
                           THEN 1 ELSE 0 END;
        v_day := (e.recorded_at AT TIME ZONE 'UTC')::date;
        INSERT INTO usage_daily AS u (day, agent_id, repo, model, events, input_tokens,
                                      output_tokens, cache_read_tokens, cache_creation_tokens,
                                      cost_usd, position, cache_creation_1h_tokens,
                                      reported_events)
        VALUES (v_day, v_agent, coalesce(d->>'repo', ''),
                coalesce(d->>'model', ''), 1,
                coalesce((d->>'inputTokens')::bigint, 0),
                coalesce((d->>'outputTokens')::bigint, 0),
                coalesce((d->>'cacheReadTokens')::bigint, 0),
                coalesce((d->>'cacheCreationTokens')::bigint, 0),
                coalesce((d->>'costUsd')::numeric, 0), e.position, v_write_1h, v_reported)
        ON CONFLICT (day, agent_id, repo, model) DO UPDATE SET
            events = u.events + 1,
            input_tokens = u.input_tokens + excluded.input_tokens,
            output_tokens = u.output_tokens + excluded.output_tokens,
            cache_read_tokens = u.cache_read_tokens + excluded.cache_read_tokens,
            cache_creation_tokens = u.cache_creation_tokens + excluded.cache_creation_tokens,
            cost_usd = u.cost_usd + excluded.cost_usd,
            position = excluded.position,
            cache_creation_1h_tokens = u.cache_creation_1h_tokens
                                       + excluded.cache_creation_1h_tokens,
            reported_events = u.reported_events + excluded.reported_events;

        -- Every usage event lands here: under its issue when it names a repo and an issue
        -- number ≥ 1, else under '' ("unattributed"). The agent runtime sends `repo: ""` and
        -- `issueNumber: 0` when it knows neither (and `model: ""`, kept as '' = unpriced).
        v_usage_of := CASE WHEN coalesce(d->>'repo', '') <> ''
                                AND jsonb_typeof(d->'issueNumber') = 'number'
                                AND (d->>'issueNumber')::numeric >= 1
                           THEN (d->>'repo') || '#' || (d->>'issueNumber') ELSE '' END;
        INSERT INTO usage_by_issue AS u (stream_id, day, agent_id, model, events,
                                         input_tokens, output_tokens, cache_read_tokens,
                                         cache_creation_tokens, cache_creation_1h_tokens,
                                         cost_usd, reported_events, position)
        VALUES (v_usage_of, v_day, v_agent,
                coalesce(d->>'model', ''), 1,
                coalesce((d->>'inputTokens')::bigint, 0),
                coalesce((d->>'outputTokens')::bigint, 0),
                coalesce((d->>'cacheReadTokens')::bigint, 0),
                coalesce((d->>'cacheCreationTokens')::bigint, 0),
                v_write_1h,
                coalesce((d->>'costUsd')::numeric, 0), v_reported, e.position)
        ON CONFLICT (stream_id, day, agent_id, model) DO UPDATE SET
            events = u.events + 1,
            input_tokens = u.input_tokens + excluded.input_tokens,
            output_tokens = u.output_tokens + excluded.output_tokens,
            cache_read_tokens = u.cache_read_tokens + excluded.cache_read_tokens,
            cache_creation_tokens = u.cache_creation_tokens + excluded.cache_creation_tokens,
            cache_creation_1h_tokens = u.cache_creation_1h_tokens
                                       + excluded.cache_creation_1h_tokens,
            cost_usd = u.cost_usd + excluded.cost_usd,
            reported_events = u.reported_events + excluded.reported_events,
            position = excluded.position;
    END IF;
END
$$;

-- Appends events to one stream in the caller's transaction.
--   p_expected: NULL = any version; 0 = the stream must not exist yet; n = it must be at n.
-- Writers are serialised by a transaction-scoped advisory lock, so positions commit in order
-- and a follower that reads "position > last seen" never skips an event that commits late.
-- A repeated idempotency key returns the first append's result with duplicate = true.
CREATE FUNCTION conductor_append(p_stream text, p_expected integer, p_key text,
                                 p_types text[], p_data jsonb[], p_metadata jsonb[])
RETURNS TABLE (first_position bigint, last_position bigint, stream_version integer,
               recorded_at timestamptz, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_current integer;
    v_first   bigint;
    v_event   events%ROWTYPE;
    i         integer;
BEGIN
    IF p_types IS NULL OR cardinality(p_types) = 0 THEN
        RAISE EXCEPTION 'an append needs at least one event' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(7166002);  -- 'conductor-e appends'

    IF p_key IS NOT NULL THEN
        RETURN QUERY SELECT k.first_position, k.last_position, k.version, k.recorded_at, true
                     FROM idempotency_keys k WHERE k.key = p_key;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    v_current := coalesce((SELECT e.version FROM events e WHERE e.stream_id = p_stream
                           ORDER BY e.version DESC LIMIT 1), 0);
    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RAISE EXCEPTION 'stream % is at version %, not the expected %',
            p_stream, v_current, p_expected
            USING ERRCODE = 'CE409', HINT = v_current::text;
    END IF;

    FOR i IN 1 .. cardinality(p_types) LOOP
        INSERT INTO events (stream_id, version, type, data, metadata)
        VALUES (p_stream, v_current + i, p_types[i], p_data[i], coalesce(p_metadata[i], '{}'))
        RETURNING * INTO v_event;
        v_first := coalesce(v_first, v_event.position);
        PERFORM conductor_project(v_event);
    END LOOP;

    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (key, stream_id, first_position, last_position, version,
                                      recorded_at)
        VALUES (p_key, p_stream, v_first, v_event.position, v_event.version,
                v_event.recorded_at);
    END IF;
    PERFORM pg_notify('conductor_events', v_event.position::text);

    RETURN QUERY SELECT v_first, v_event.position, v_event.version, v_event.recorded_at, false;
END
$$;

-- Several appends in one transaction: the store batches appends that arrive while one is in
-- flight, so concurrent writers share a commit (and its WAL flush) instead of queueing for
-- the append lock one commit at a time. Each append runs in its own subtransaction: one that
-- fails (a stale expected version) reports its error and leaves the others untouched.
-- The events of append k are p_types[p_ends[k-1]+1 .. p_ends[k]] (and the same in p_data,
-- p_metadata).
CREATE FUNCTION conductor_append_batch(p_streams text[], p_expected integer[], p_keys text[],
                                       p_ends integer[], p_types text[], p_data jsonb[],
                                       p_metadata jsonb[])
RETURNS TABLE (item integer, first_position bigint, last_position bigint,
               stream_version integer, recorded_at timestamptz, duplicate boolean,
               error_code text, error_message text, error_hint text)
LANGUAGE plpgsql AS $$
DECLARE
    k       integer;
    v_start integer := 1;
    v_row   record;
    v_state text;
    v_msg   text;
    v_hint  text;
BEGIN
    PERFORM pg_advisory_xact_lock(7166002);
    FOR k IN 1 .. cardinality(p_streams) LOOP
        BEGIN
            SELECT * INTO v_row FROM conductor_append(
                p_streams[k], p_expected[k], p_keys[k], p_types[v_start:p_ends[k]],
                p_data[v_start:p_ends[k]], p_metadata[v_start:p_ends[k]]);
            RETURN QUERY SELECT k, v_row.first_position, v_row.last_position,
                                v_row.stream_version, v_row.recorded_at, v_row.duplicate,
                                NULL::text, NULL::text, NULL::text;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
                                    v_hint = PG_EXCEPTION_HINT;
            RETURN QUERY SELECT k, NULL::bigint, NULL::bigint, NULL::integer,
                                NULL::timestamptz, NULL::boolean, v_state, v_msg, v_hint;
        END;
        v_start := p_ends[k] + 1;
    END LOOP;
END
$$;

-- Atomically hands the top of a queue to an agent: 'issue' takes the highest-priority queued
-- issue (ISSUE_ASSIGNED), 'review' the oldest PR waiting for a reviewer (REVIEW_ASSIGNED).
-- Returns the claimed issue's stream id and the assignment's position, or no row.
CREATE FUNCTION conductor_claim(p_kind text, p_agent text, p_metadata jsonb)
RETURNS TABLE (stream_id text, claim_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_stream text;
    v_type   text;
    v_pos    bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7166002);
    IF p_kind = 'issue' THEN
        v_type := 'ISSUE_ASSIGNED';
        SELECT i.stream_id INTO v_stream FROM issues i
        WHERE i.state = 'queued'
        ORDER BY i.priority_rank, i.approved_at, i.stream_id
        LIMIT 1;
    ELSIF p_kind = 'review' THEN
        v_type := 'REVIEW_ASSIGNED';
        SELECT i.stream_id INTO v_stream FROM issues i
        WHERE i.state = 'in_review' AND i.reviewer IS NULL
        ORDER BY i.state_since, i.stream_id
        LIMIT 1;
    ELSE
        RAISE EXCEPTION 'unknown claim kind %', p_kind USING ERRCODE = '22023';
    END IF;
    IF v_stream IS NULL THEN
        RETURN;
    END IF;
    SELECT a.last_position INTO v_pos
    FROM conductor_append(
        v_stream, NULL, NULL, ARRAY[v_type],
        ARRAY[jsonb_build_object('type', v_type, 'agentId', p_agent,
                                 'repo', split_part(v_stream, '#', 1),
                                 'issueNumber', split_part(v_stream, '#', 2)::integer)],
        ARRAY[p_metadata]) a;
    RETURN QUERY SELECT v_stream, v_pos;
END
$$;

-- Replays events in (p_after, p_upto] into the projections; used by `projections rebuild`.
CREATE FUNCTION conductor_project_range(p_after bigint, p_upto bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_event events%ROWTYPE;
    v_count bigint := 0;
BEGIN
    FOR v_event IN SELECT * FROM events WHERE position > p_after AND position <= p_upto
                   ORDER BY position LOOP
        PERFORM conductor_project(v_event);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
