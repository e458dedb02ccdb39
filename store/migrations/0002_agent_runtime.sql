-- What the agent runtime (Stig-Johnny/automate-e) sends beyond the first generation's
-- contract: usage it cannot attribute, execution logs, review verdicts and merge requests that
-- name a PR, not an issue.

-- Usage: every TOKEN_USAGE now lands in usage_by_issue too, under the stream '' when it names
-- no issue (the runtime sends repo "" and issueNumber 0 then): "unattributed", so attributed +
-- unattributed adds up to what each agent spent. usage_daily keeps repo '' for "no repo" and
-- model '' for "no model" (unpriced). Backfill the unattributed part of what is recorded.
INSERT INTO usage_by_issue (stream_id, day, agent_id, model, events, input_tokens,
                            output_tokens, cache_read_tokens, cache_creation_tokens,
                            cache_creation_1h_tokens, cost_usd, reported_events, position)
SELECT '', d.day, d.agent_id, d.model,
       d.events - coalesce(i.events, 0),
       d.input_tokens - coalesce(i.input_tokens, 0),
       d.output_tokens - coalesce(i.output_tokens, 0),
       d.cache_read_tokens - coalesce(i.cache_read_tokens, 0),
       d.cache_creation_tokens - coalesce(i.cache_creation_tokens, 0),
       d.cache_creation_1h_tokens - coalesce(i.cache_creation_1h_tokens, 0),
       d.cost_usd - coalesce(i.cost_usd, 0),
       d.reported_events - coalesce(i.reported_events, 0), d.position
FROM (SELECT day, agent_id, model, sum(events)::int AS events,
             sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
             sum(cache_read_tokens) AS cache_read_tokens,
             sum(cache_creation_tokens) AS cache_creation_tokens,
             sum(cache_creation_1h_tokens) AS cache_creation_1h_tokens,
             sum(cost_usd) AS cost_usd, sum(reported_events)::int AS reported_events,
             max(position) AS position
      FROM usage_daily GROUP BY day, agent_id, model) d
LEFT JOIN (SELECT day, agent_id, model, sum(events)::int AS events,
                  sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                  sum(cache_read_tokens) AS cache_read_tokens,
                  sum(cache_creation_tokens) AS cache_creation_tokens,
                  sum(cache_creation_1h_tokens) AS cache_creation_1h_tokens,
                  sum(cost_usd) AS cost_usd, sum(reported_events)::int AS reported_events
           FROM usage_by_issue GROUP BY day, agent_id, model) i USING (day, agent_id, model)
WHERE d.events > coalesce(i.events, 0)
ON CONFLICT (stream_id, day, agent_id, model) DO NOTHING;

-- The issue a PR belongs to, by PR number (review verdicts and merge requests name the PR).
CREATE INDEX issues_pr ON issues (lower(repo), pr_number) WHERE pr_number IS NOT NULL;

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

-- The issue `owner/repo#N` names: that issue when we know it; else, when N is a PR we know (issues
-- and PRs share GitHub's numbers), the issue the PR belongs to - Review-E reports its usage and
-- runs under the PR's number; else `owner/repo#N` as given. Reads only the projection as it
-- stands at the event's position, so a rebuild resolves it the same way.
CREATE FUNCTION conductor_issue_of(p_repo text, p_number integer) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT stream_id FROM issues WHERE stream_id = p_repo || '#' || p_number),
        (SELECT stream_id FROM issues
         WHERE lower(repo) = lower(p_repo) AND pr_number = p_number
         ORDER BY last_activity DESC, stream_id LIMIT 1),
        p_repo || '#' || p_number)
$$;

-- The first generation's projection keeps the issues and agents; TOKEN_USAGE is projected by
-- conductor_project_usage below instead of its usage branch.
ALTER FUNCTION conductor_project(events) RENAME TO conductor_project_lifecycle;

CREATE FUNCTION conductor_project_usage(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d          jsonb := e.data;
    v_agent    text  := d->>'agentId';
    v_repo     text  := coalesce(d->>'repo', '');
    v_model    text  := coalesce(d->>'model', '');
    v_stream   text;
    v_write_1h bigint;
    v_reported integer;
    v_day      date  := (e.recorded_at AT TIME ZONE 'UTC')::date;
BEGIN
    -- The 1-hour part of the cache writes (cacheCreationTokens counts all of them, as the
    -- Messages API's cache_creation_input_tokens does); anything but a number counts 0.
    v_write_1h := CASE WHEN jsonb_typeof(d->'cacheCreation1hTokens') = 'number'
                       THEN least(greatest((d->>'cacheCreation1hTokens')::numeric, 0),
                                  coalesce((d->>'cacheCreationTokens')::numeric, 0))::bigint
                       ELSE 0 END;
    v_reported := CASE WHEN jsonb_typeof(d->'costUsd') = 'number' THEN 1 ELSE 0 END;
    -- Its issue when it names a repo and an issue number ≥ 1, else '' (unattributed).
    v_stream := CASE WHEN v_repo <> '' AND jsonb_typeof(d->'issueNumber') = 'number'
                          AND (d->>'issueNumber')::numeric >= 1
                     THEN conductor_issue_of(v_repo, (d->>'issueNumber')::integer)
                     ELSE '' END;
    INSERT INTO usage_daily AS u (day, agent_id, repo, model, events, input_tokens,
                                  output_tokens, cache_read_tokens, cache_creation_tokens,
                                  cost_usd, position, cache_creation_1h_tokens, reported_events)
    VALUES (v_day, v_agent, v_repo, v_model, 1,
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
        cache_creation_1h_tokens = u.cache_creation_1h_tokens + excluded.cache_creation_1h_tokens,
        reported_events = u.reported_events + excluded.reported_events;

    INSERT INTO usage_by_issue AS u (stream_id, day, agent_id, model, events, input_tokens,
                                     output_tokens, cache_read_tokens, cache_creation_tokens,
                                     cache_creation_1h_tokens, cost_usd, reported_events,
                                     position)
    VALUES (v_stream, v_day, v_agent, v_model, 1,
            coalesce((d->>'inputTokens')::bigint, 0),
            coalesce((d->>'outputTokens')::bigint, 0),
            coalesce((d->>'cacheReadTokens')::bigint, 0),
            coalesce((d->>'cacheCreationTokens')::bigint, 0),
            v_write_1h, coalesce((d->>'costUsd')::numeric, 0), v_reported, e.position)
    ON CONFLICT (stream_id, day, agent_id, model) DO UPDATE SET
        events = u.events + 1,
        input_tokens = u.input_tokens + excluded.input_tokens,
        output_tokens = u.output_tokens + excluded.output_tokens,
        cache_read_tokens = u.cache_read_tokens + excluded.cache_read_tokens,
        cache_creation_tokens = u.cache_creation_tokens + excluded.cache_creation_tokens,
        cache_creation_1h_tokens = u.cache_creation_1h_tokens + excluded.cache_creation_1h_tokens,
        cost_usd = u.cost_usd + excluded.cost_usd,
        reported_events = u.reported_events + excluded.reported_events,
        position = excluded.position;
END
$$;

CREATE FUNCTION conductor_project_execution_log(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d        jsonb   := e.data;
    v_repo   text    := nullif(d->>'repo', '');
    v_number integer := nullif((d->>'issueNumber')::integer, 0);
BEGIN
    IF e.type = 'EXECUTION_LOG_STARTED' THEN
        IF v_repo IS NOT NULL AND v_number IS NOT NULL THEN
            -- A review run names its PR: shown with the PR's issue.
            v_number := split_part(conductor_issue_of(v_repo, v_number), '#', 2)::integer;
        END IF;
        INSERT INTO execution_logs (id, stream_id, repo, issue_number, agent_id, model, status,
                                    steps, started_at, version, position)
        VALUES (d->>'executionLogId', e.stream_id, v_repo, v_number, d->>'agentId', d->>'model',
                coalesce(d->>'status', 'running'), coalesce(d->'steps', '[]'::jsonb),
                e.recorded_at, e.version, e.position);
    ELSIF e.type = 'EXECUTION_LOG_STEP' THEN
        UPDATE execution_logs
        SET steps = steps || jsonb_build_array(d->'step'),
            version = e.version, position = e.position
        WHERE id = d->>'executionLogId';
    ELSIF e.type = 'EXECUTION_LOG_LINES' THEN
        UPDATE execution_logs
        SET log_lines = log_lines || coalesce(d->'entries', '[]'::jsonb),
            version = e.version, position = e.position
        WHERE id = d->>'executionLogId';
    ELSIF e.type = 'EXECUTION_LOG_COMPLETED' THEN
        UPDATE execution_logs SET
            status = coalesce(d->>'status', status),
            total_cost_usd = (d->>'totalCostUsd')::numeric,
            total_turns = (d->>'totalTurns')::integer,
            input_tokens = (d->>'totalInputTokens')::bigint,
            output_tokens = (d->>'totalOutputTokens')::bigint,
            cache_read_tokens = (d->>'cacheReadTokens')::bigint,
            cache_creation_tokens = (d->>'cacheCreationTokens')::bigint,
            duration_api_ms = (d->>'durationApiMs')::bigint,
            pr_number = nullif((d->>'prNumber')::integer, 0),
            completed_at = e.recorded_at,
            version = e.version, position = e.position
        WHERE id = d->>'executionLogId';
    END IF;
END
$$;

-- Applies one event to the projections (the dispatcher conductor_append and the rebuild call).
CREATE FUNCTION conductor_project(e events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'TOKEN_USAGE' THEN
        PERFORM conductor_project_usage(e);
        RETURN;
    END IF;
    IF e.type LIKE 'EXECUTION\_LOG\_%' THEN
        PERFORM conductor_project_execution_log(e);
        RETURN;
    END IF;
    PERFORM conductor_project_lifecycle(e);
    IF e.type = 'HEARTBEAT'
       AND (e.data->>'currentRepo' = '' OR e.data->>'currentIssue' = '0') THEN
        -- Working on nothing it can name: no current issue (not "#0").
        UPDATE agents SET current_issue = NULL WHERE agent_id = e.data->>'agentId';
    END IF;
    IF e.stream_id LIKE '%/%!%' THEN
        INSERT INTO pending_pr_events (position, stream_id, repo, pr_number, type, data,
                                       recorded_at)
        VALUES (e.position, e.stream_id, split_part(e.stream_id, '!', 1),
                split_part(e.stream_id, '!', 2)::integer, e.type, e.data, e.recorded_at);
    ELSIF e.metadata ? 'linkedFrom' THEN
        DELETE FROM pending_pr_events WHERE position = (e.metadata->>'linkedFrom')::bigint;
    END IF;
END
$$;
