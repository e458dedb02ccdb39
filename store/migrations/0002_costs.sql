-- Costs: what the cost service needs from the usage projections.
--
-- * usage_daily gains the 1-hour part of the cache writes (priced apart from 5-minute writes)
--   and the number of events that reported a cost themselves (costUsd), so a reported total
--   of 0 can be told apart from "no agent reported a cost".
-- * usage_by_issue gains the UTC day, so issue costs can be priced at the price of their day
--   and ranked within a window. `day` is the second column, so the primary key is the first
--   four columns (what projection_snapshot orders by). The readers that group by agent and
--   model (issue_usage) give the same answers as before.
-- * conductor_project is the function of 0001 with the TOKEN_USAGE branch extended; every
--   other branch is copied unchanged.
-- The existing rows are re-derived from the events, the same way the projection computes them.

ALTER TABLE usage_daily
    ADD COLUMN cache_creation_1h_tokens bigint  NOT NULL DEFAULT 0,
    ADD COLUMN reported_events          integer NOT NULL DEFAULT 0;

DROP TABLE usage_by_issue;
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

-- Applies one event to the projections. Uses only the event's own fields (never now()), so a
-- rebuild that replays the events gives the same rows as the live appends did.
CREATE OR REPLACE FUNCTION conductor_project(e events) RETURNS void
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

        IF d->>'repo' IS NOT NULL AND d->>'issueNumber' IS NOT NULL THEN
            INSERT INTO usage_by_issue AS u (stream_id, day, agent_id, model, events,
                                             input_tokens, output_tokens, cache_read_tokens,
                                             cache_creation_tokens, cache_creation_1h_tokens,
                                             cost_usd, reported_events, position)
            VALUES ((d->>'repo') || '#' || (d->>'issueNumber'), v_day, v_agent,
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
    END IF;
END
$$;

-- Re-derive the usage figures of the events recorded before this migration.
WITH t AS (
    SELECT e.position, (e.recorded_at AT TIME ZONE 'UTC')::date AS day, e.data AS d
    FROM events e WHERE e.type = 'TOKEN_USAGE'
), v AS (
    SELECT position, day, d,
           CASE WHEN jsonb_typeof(d->'cacheCreation1hTokens') = 'number'
                THEN least(greatest((d->>'cacheCreation1hTokens')::numeric, 0),
                           coalesce((d->>'cacheCreationTokens')::numeric, 0))::bigint
                ELSE 0 END AS write_1h,
           CASE WHEN d ? 'costUsd' AND jsonb_typeof(d->'costUsd') = 'number'
                THEN 1 ELSE 0 END AS reported
    FROM t
), per_day AS (
    SELECT day, d->>'agentId' AS agent_id, coalesce(d->>'repo', '') AS repo,
           coalesce(d->>'model', '') AS model, sum(write_1h)::bigint AS write_1h,
           sum(reported)::integer AS reported
    FROM v GROUP BY 1, 2, 3, 4
)
UPDATE usage_daily u SET cache_creation_1h_tokens = p.write_1h, reported_events = p.reported
FROM per_day p
WHERE u.day = p.day AND u.agent_id = p.agent_id AND u.repo = p.repo AND u.model = p.model;

INSERT INTO usage_by_issue (stream_id, day, agent_id, model, events, input_tokens,
                            output_tokens, cache_read_tokens, cache_creation_tokens,
                            cache_creation_1h_tokens, cost_usd, reported_events, position)
SELECT (d->>'repo') || '#' || (d->>'issueNumber'), day, d->>'agentId',
       coalesce(d->>'model', ''), count(*)::integer,
       sum(coalesce((d->>'inputTokens')::bigint, 0)),
       sum(coalesce((d->>'outputTokens')::bigint, 0)),
       sum(coalesce((d->>'cacheReadTokens')::bigint, 0)),
       sum(coalesce((d->>'cacheCreationTokens')::bigint, 0)),
       sum(CASE WHEN jsonb_typeof(d->'cacheCreation1hTokens') = 'number'
                THEN least(greatest((d->>'cacheCreation1hTokens')::numeric, 0),
                           coalesce((d->>'cacheCreationTokens')::numeric, 0))::bigint
                ELSE 0 END),
       sum(coalesce((d->>'costUsd')::numeric, 0)),
       sum(CASE WHEN d ? 'costUsd' AND jsonb_typeof(d->'costUsd') = 'number'
                THEN 1 ELSE 0 END)::integer,
       max(position)
FROM (SELECT e.position, (e.recorded_at AT TIME ZONE 'UTC')::date AS day, e.data AS d
      FROM events e WHERE e.type = 'TOKEN_USAGE'
        AND e.data->>'repo' IS NOT NULL AND e.data->>'issueNumber' IS NOT NULL) t
GROUP BY 1, 2, 3, 4;
