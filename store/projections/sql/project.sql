-- The projection: conductor_project applies one event to the projection tables, in the
-- transaction of its append. store/projections/fold.py holds the same rules in Python for the
-- one-pass rebuild: a change here needs the same change there (tests/store/test_replay.py
-- compares the two table by table).
--
-- Repeatable: applied by `conductor-e migrate` after the numbered migrations, whenever a
-- repeatable file changed or a numbered migration ran (store/migrations). Edit it in place.
-- Changing a function's arguments or result type, or removing it, needs a DROP FUNCTION in a
-- numbered migration: CREATE OR REPLACE cannot change them, and nothing drops what a file no
-- longer defines.

-- critical > high > normal, as the queue's index orders them (0, 1, 2).
CREATE OR REPLACE FUNCTION conductor_priority_rank(p text) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p WHEN 'critical' THEN 0 WHEN 'high' THEN 1 ELSE 2 END::smallint
$$;

-- The issue state an event moves an issue to; NULL keeps the current state.
CREATE OR REPLACE FUNCTION conductor_issue_state(p_type text, p_current text) RETURNS text
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

-- The issue `owner/repo#N` names: that issue when we know it; else, when N is a PR we know (issues
-- and PRs share GitHub's numbers), the issue the PR belongs to - Review-E reports its usage and
-- runs under the PR's number; else `owner/repo#N` as given. Reads only the projection as it
-- stands at the event's position, so a rebuild resolves it the same way.
CREATE OR REPLACE FUNCTION conductor_issue_of(p_repo text, p_number integer) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT stream_id FROM issues WHERE stream_id = p_repo || '#' || p_number),
        (SELECT stream_id FROM issues
         WHERE lower(repo) = lower(p_repo) AND pr_number = p_number
         ORDER BY last_activity DESC, stream_id LIMIT 1),
        p_repo || '#' || p_number)
$$;

-- Execution logs: a run's row from the events of its stream `execution-log#<id>`.
CREATE OR REPLACE FUNCTION conductor_project_execution_log(e events) RETURNS void
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

-- Applies one event to the projections: usage; runs; holds and pauses; else the issue's state
-- machine, its agents, the repo configurations and the PR streams. Uses only the event's own
-- fields and the projection as it stands (never now()), so a rebuild that replays the events
-- gives the same rows as the live appends did.
CREATE OR REPLACE FUNCTION conductor_project(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d          jsonb := e.data;
    v_agent    text  := d->>'agentId';
    v_by       text;
    v_issue    text;
    v_state    text;
    v_current  issues%ROWTYPE;
    v_known    boolean := false;
    v_priority text;
    v_prev     text;
    v_repo     text;
    v_model    text;
    v_stream   text;
    v_write_1h bigint;
    v_reported integer;
    v_day      date;
BEGIN
    IF e.type = 'TOKEN_USAGE' THEN
        -- Per day, agent, repo and model; and per issue ('' when it names none: unattributed).
        -- The 1-hour part of the cache writes (cacheCreationTokens counts all of them, as the
        -- Messages API's cache_creation_input_tokens does); anything but a number counts 0.
        v_repo := coalesce(d->>'repo', '');
        v_model := coalesce(d->>'model', '');
        v_day := (e.recorded_at AT TIME ZONE 'UTC')::date;
        v_write_1h := CASE WHEN jsonb_typeof(d->'cacheCreation1hTokens') = 'number'
                           THEN least(greatest((d->>'cacheCreation1hTokens')::numeric, 0),
                                      coalesce((d->>'cacheCreationTokens')::numeric, 0))::bigint
                           ELSE 0 END;
        v_reported := CASE WHEN jsonb_typeof(d->'costUsd') = 'number' THEN 1 ELSE 0 END;
        v_stream := CASE WHEN v_repo <> '' AND jsonb_typeof(d->'issueNumber') = 'number'
                              AND (d->>'issueNumber')::numeric >= 1
                         THEN conductor_issue_of(v_repo, (d->>'issueNumber')::integer)
                         ELSE '' END;
        INSERT INTO usage_daily AS u (day, agent_id, repo, model, events, input_tokens,
                                      output_tokens, cache_read_tokens, cache_creation_tokens,
                                      cost_usd, position, cache_creation_1h_tokens,
                                      reported_events)
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
            cache_creation_1h_tokens = u.cache_creation_1h_tokens
                                       + excluded.cache_creation_1h_tokens,
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
            cache_creation_1h_tokens = u.cache_creation_1h_tokens
                                       + excluded.cache_creation_1h_tokens,
            cost_usd = u.cost_usd + excluded.cost_usd,
            reported_events = u.reported_events + excluded.reported_events,
            position = excluded.position;
        RETURN;
    ELSIF e.type LIKE 'EXECUTION\_LOG\_%' THEN
        PERFORM conductor_project_execution_log(e);
        RETURN;
    END IF;

    -- Steering: holds and pauses (who: the metadata's actor, else the payload's).
    v_by := coalesce(e.metadata->>'actor', d->>'actor');
    IF e.type = 'ISSUE_HELD' THEN
        UPDATE issues SET held = true, held_by = v_by, held_reason = d->>'reason',
                          held_at = e.recorded_at, labels = coalesce(d->'labels', labels),
                          last_activity = e.recorded_at, last_event_type = e.type,
                          position = e.position
        WHERE stream_id = e.stream_id;
        RETURN;
    ELSIF e.type = 'ISSUE_UNHELD' THEN
        UPDATE issues SET held = false, held_by = NULL, held_reason = NULL, held_at = NULL,
                          labels = coalesce(d->'labels', labels),
                          last_activity = e.recorded_at, last_event_type = e.type,
                          position = e.position
        WHERE stream_id = e.stream_id;
        RETURN;
    ELSIF e.type = 'AGENT_PAUSED' THEN
        INSERT INTO agents AS a (agent_id, last_event_at, paused, paused_by, paused_reason,
                                 paused_at, position)
        VALUES (v_agent, e.recorded_at, true, v_by, d->>'reason', e.recorded_at, e.position)
        ON CONFLICT (agent_id) DO UPDATE SET
            paused = true, paused_by = excluded.paused_by,
            paused_reason = excluded.paused_reason, paused_at = excluded.paused_at,
            last_event_at = excluded.last_event_at, position = excluded.position;
        RETURN;
    ELSIF e.type = 'AGENT_RESUMED' THEN
        UPDATE agents SET paused = false, paused_by = NULL, paused_reason = NULL,
                          paused_at = NULL, last_event_at = e.recorded_at, position = e.position
        WHERE agent_id = v_agent;
        RETURN;
    END IF;

    -- Issues: the state machine. An event that implies no state (CI_PASSED, a reminder) does
    -- not create an issue row.
    IF e.stream_id LIKE '%/%#%' THEN
        SELECT * INTO v_current FROM issues WHERE stream_id = e.stream_id;
        v_known := FOUND;
        v_state := conductor_issue_state(e.type, v_current.state);
        v_priority := d->>'priority';
        -- Taken back from the agent holding it; a failed issue's last assignee holds nothing
        -- (skipping it could leave the issue with no agent on a one-agent route).
        IF e.type = 'ISSUE_REQUEUED'
           AND v_current.state IN ('assigned', 'in_progress', 'in_review') THEN
            v_prev := split_part(v_current.assignee, '/', 1);
        END IF;
    END IF;
    IF v_known OR v_state IS NOT NULL THEN
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
            -- The agent a person took it back from: its claims skip it. Cleared by the next
            -- assignment.
            requeued_from = CASE
                                WHEN e.type = 'ISSUE_REQUEUED' THEN v_prev
                                WHEN e.type = 'ISSUE_ASSIGNED' THEN NULL
                                ELSE requeued_from END,
            last_activity = e.recorded_at,
            last_event_type = e.type,
            position     = e.position
        WHERE stream_id = e.stream_id;
    END IF;

    -- Agents: heartbeats, and whatever an agent is given or gives up.
    IF e.type = 'HEARTBEAT' THEN
        -- Its current issue, unless it names none it can name ("" or #0), or names one that
        -- is no longer its own (requeued, or given to another agent): it has lost that one.
        v_issue := CASE WHEN d->>'currentIssue' IS NOT NULL AND d->>'currentRepo' IS NOT NULL
                             AND d->>'currentRepo' <> '' AND d->>'currentIssue' <> '0'
                        THEN (d->>'currentRepo') || '#' || (d->>'currentIssue') END;
        IF v_issue IS NOT NULL AND EXISTS (
            SELECT 1 FROM issues i
            WHERE i.stream_id = v_issue
              AND (i.state = 'queued'
                   OR split_part(coalesce(i.assignee, ''), '/', 1) <> split_part(v_agent, '/', 1)
                      AND i.state IN ('assigned', 'in_progress'))) THEN
            v_issue := NULL;
        END IF;
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
    ELSIF e.type = 'REPO_CONFIG_CHANGED' THEN
        INSERT INTO repo_configs AS c (repo, repo_name, present, config, sha, route_key,
                                       error, error_sha, changed_at, position)
        VALUES (lower(d->>'repo'), d->>'repo', coalesce((d->>'present')::boolean, false),
                d->'config', d->>'sha', d->>'routeKey', NULL, NULL, e.recorded_at, e.position)
        ON CONFLICT (repo) DO UPDATE SET
            repo_name = excluded.repo_name, present = excluded.present,
            config = excluded.config, sha = excluded.sha, route_key = excluded.route_key,
            error = NULL, error_sha = NULL, changed_at = excluded.changed_at,
            position = excluded.position;
    ELSIF e.type = 'REPO_CONFIG_INVALID' THEN
        INSERT INTO repo_configs AS c (repo, repo_name, error, error_sha, changed_at, position)
        VALUES (lower(d->>'repo'), d->>'repo', d->>'error', d->>'sha', e.recorded_at,
                e.position)
        ON CONFLICT (repo) DO UPDATE SET
            error = excluded.error, error_sha = excluded.error_sha,
            changed_at = excluded.changed_at, position = excluded.position;
    END IF;

    -- Review verdicts and merge requests about a PR no issue is known to own yet wait on the
    -- PR's stream; linking one to its issue (metadata.linkedFrom) ends the wait.
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

-- Replays events in (p_after, p_upto] into the projections, one conductor_project call each
-- (`projections rebuild` folds them in one pass instead; the benchmarks compare the two).
CREATE OR REPLACE FUNCTION conductor_project_range(p_after bigint, p_upto bigint) RETURNS bigint
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
