-- Steering (issue 17): people hold and release issues and pause and resume agents.
--
-- ISSUE_HELD / ISSUE_UNHELD (who, why) mark an issue held: it is never handed out, whatever
-- its state. AGENT_PAUSED / AGENT_RESUMED mark an agent paused: it is handed nothing new (its
-- current work is left alone). Both are filtered inside conductor_claim, under the append lock,
-- so a hold and a claim racing are serialised: exactly one comes first, and the other sees it.
-- A person's assignment goes through conductor_assign below, under the same lock.

ALTER TABLE issues ADD COLUMN held        boolean     NOT NULL DEFAULT false,
                   ADD COLUMN held_by     text,
                   ADD COLUMN held_reason text,
                   ADD COLUMN held_at     timestamptz,
                   -- The agent a person took it back from (ISSUE_REQUEUED): that agent's
                   -- claims skip it, so it is not handed straight back; a person may still
                   -- /issue assign it there. Cleared by the next assignment.
                   ADD COLUMN requeued_from text;
ALTER TABLE agents ADD COLUMN paused        boolean     NOT NULL DEFAULT false,
                   ADD COLUMN paused_by     text,
                   ADD COLUMN paused_reason text,
                   ADD COLUMN paused_at     timestamptz;

-- The queue indexes cover only what may be handed out.
DROP INDEX issues_queue;
CREATE INDEX issues_queue ON issues (priority_rank, approved_at, stream_id)
    WHERE state = 'queued' AND NOT held;
DROP INDEX issues_queue_by_repo;
CREATE INDEX issues_queue_by_repo ON issues (lower(repo), priority_rank, approved_at, stream_id)
    WHERE state = 'queued' AND NOT held;

ALTER FUNCTION conductor_project(events) RENAME TO conductor_project_routing;

CREATE FUNCTION conductor_project(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d       jsonb := e.data;
    v_agent text  := d->>'agentId';
    v_by    text  := coalesce(e.metadata->>'actor', d->>'actor');
    v_prev  text;
BEGIN
    IF e.type = 'ISSUE_REQUEUED' THEN
        -- Taken back from the agent holding it; a failed issue's last assignee holds nothing
        -- (skipping it could leave the issue with no agent on a one-agent route).
        SELECT assignee INTO v_prev FROM issues
        WHERE stream_id = e.stream_id AND state IN ('assigned', 'in_progress', 'in_review');
    END IF;
    IF e.type = 'ISSUE_HELD' THEN
        UPDATE issues SET held = true, held_by = v_by, held_reason = d->>'reason',
                          held_at = e.recorded_at, labels = coalesce(d->'labels', labels),
                          last_activity = e.recorded_at, last_event_type = e.type,
                          position = e.position
        WHERE stream_id = e.stream_id;
    ELSIF e.type = 'ISSUE_UNHELD' THEN
        UPDATE issues SET held = false, held_by = NULL, held_reason = NULL, held_at = NULL,
                          labels = coalesce(d->'labels', labels),
                          last_activity = e.recorded_at, last_event_type = e.type,
                          position = e.position
        WHERE stream_id = e.stream_id;
    ELSIF e.type = 'AGENT_PAUSED' THEN
        INSERT INTO agents AS a (agent_id, last_event_at, paused, paused_by, paused_reason,
                                 paused_at, position)
        VALUES (v_agent, e.recorded_at, true, v_by, d->>'reason', e.recorded_at, e.position)
        ON CONFLICT (agent_id) DO UPDATE SET
            paused = true, paused_by = excluded.paused_by,
            paused_reason = excluded.paused_reason, paused_at = excluded.paused_at,
            last_event_at = excluded.last_event_at, position = excluded.position;
    ELSIF e.type = 'AGENT_RESUMED' THEN
        UPDATE agents SET paused = false, paused_by = NULL, paused_reason = NULL,
                          paused_at = NULL, last_event_at = e.recorded_at, position = e.position
        WHERE agent_id = v_agent;
    ELSE
        PERFORM conductor_project_routing(e);
    END IF;
    IF e.type = 'ISSUE_REQUEUED' THEN
        UPDATE issues SET requeued_from = split_part(v_prev, '/', 1)
        WHERE stream_id = e.stream_id;
    ELSIF e.type = 'ISSUE_ASSIGNED' THEN
        UPDATE issues SET requeued_from = NULL WHERE stream_id = e.stream_id;
    END IF;
    IF e.type = 'HEARTBEAT' THEN
        -- A heartbeat naming an issue that is no longer the agent's (requeued, or given to
        -- another agent) does not make it its current issue again: the agent has lost it.
        UPDATE agents a SET current_issue = NULL
        FROM issues i
        WHERE a.agent_id = v_agent AND i.stream_id = a.current_issue
          AND (i.state = 'queued'
               OR split_part(coalesce(i.assignee, ''), '/', 1) <> split_part(v_agent, '/', 1)
                  AND i.state IN ('assigned', 'in_progress'));
    END IF;
END
$$;

-- The claim of 0003, and: a paused agent is handed nothing; a held issue is never handed out.
DROP FUNCTION conductor_claim(text, text, jsonb, text[], boolean);

CREATE FUNCTION conductor_claim(p_kind text, p_agent text, p_metadata jsonb,
                                p_keys text[], p_unrouted boolean)
RETURNS TABLE (stream_id text, claim_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_stream text;
    v_type   text;
    v_pos    bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7166002);
    IF EXISTS (SELECT 1 FROM agents a
               WHERE a.agent_id IN (p_agent, split_part(p_agent, '/', 1)) AND a.paused) THEN
        RETURN;
    END IF;
    IF p_kind = 'issue' THEN
        v_type := 'ISSUE_ASSIGNED';
        IF p_keys IS NULL THEN
            SELECT i.stream_id INTO v_stream FROM issues i
            WHERE i.state = 'queued' AND NOT i.held
              AND i.requeued_from IS DISTINCT FROM split_part(p_agent, '/', 1)
            ORDER BY i.priority_rank, i.approved_at, i.stream_id
            LIMIT 1;
        ELSE
            SELECT q.stream_id INTO v_stream FROM (
                SELECT s.stream_id, s.priority_rank, s.approved_at
                FROM repo_configs c
                CROSS JOIN LATERAL (
                    SELECT i.stream_id, i.priority_rank, i.approved_at FROM issues i
                    WHERE i.state = 'queued' AND NOT i.held AND lower(i.repo) = c.repo
                      AND i.requeued_from IS DISTINCT FROM split_part(p_agent, '/', 1)
                    ORDER BY i.priority_rank, i.approved_at, i.stream_id
                    LIMIT 1) s
                WHERE c.route_key = ANY(p_keys)
                UNION ALL
                (SELECT i.stream_id, i.priority_rank, i.approved_at FROM issues i
                 LEFT JOIN repo_configs c ON c.repo = lower(i.repo)
                 WHERE p_unrouted AND i.state = 'queued' AND NOT i.held AND c.route_key IS NULL
                   AND i.requeued_from IS DISTINCT FROM split_part(p_agent, '/', 1)
                 ORDER BY i.priority_rank, i.approved_at, i.stream_id
                 LIMIT 1)
            ) q
            ORDER BY q.priority_rank, q.approved_at, q.stream_id
            LIMIT 1;
        END IF;
    ELSIF p_kind = 'review' THEN
        v_type := 'REVIEW_ASSIGNED';
        SELECT i.stream_id INTO v_stream FROM issues i
        WHERE i.state = 'in_review' AND i.reviewer IS NULL AND NOT i.held
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

-- A person hands a queued issue to a given agent: under the append lock, so it cannot race a
-- claim. Returns the assignment's position, or raises CE409 with why it cannot be done.
CREATE FUNCTION conductor_assign(p_stream text, p_agent text, p_metadata jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_issue issues%ROWTYPE;
    v_pos   bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7166002);
    SELECT * INTO v_issue FROM issues WHERE stream_id = p_stream;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a known issue', p_stream USING ERRCODE = 'CE409';
    ELSIF v_issue.held THEN
        RAISE EXCEPTION '% is held; unhold it first', p_stream USING ERRCODE = 'CE409';
    ELSIF v_issue.state <> 'queued' THEN
        RAISE EXCEPTION '% is %, not queued (requeue it first)', p_stream, v_issue.state
            USING ERRCODE = 'CE409';
    ELSIF EXISTS (SELECT 1 FROM agents a
                  WHERE a.agent_id IN (p_agent, split_part(p_agent, '/', 1)) AND a.paused) THEN
        RAISE EXCEPTION '% is paused; resume it first', p_agent USING ERRCODE = 'CE409';
    END IF;
    SELECT a.last_position INTO v_pos
    FROM conductor_append(
        p_stream, NULL, NULL, ARRAY['ISSUE_ASSIGNED'],
        ARRAY[jsonb_build_object('type', 'ISSUE_ASSIGNED', 'agentId', p_agent,
                                 'repo', v_issue.repo, 'issueNumber', v_issue.number)],
        ARRAY[p_metadata]) a;
    RETURN v_pos;
END
$$;
