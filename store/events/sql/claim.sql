-- Claims: the top of a queue handed to one agent, and a person's assignment, each under the
-- append lock, so a queued issue goes to exactly one agent.
--
-- Repeatable: applied by `conductor-e migrate` after the numbered migrations, whenever a
-- repeatable file changed or a numbered migration ran (store/migrations). Edit it in place.
-- Changing a function's arguments or result type, or removing it, needs a DROP FUNCTION in a
-- numbered migration: CREATE OR REPLACE cannot change them, and nothing drops what a file no
-- longer defines.

-- Atomically hands the top of a queue to an agent: 'issue' takes the highest-priority queued
-- issue (ISSUE_ASSIGNED), 'review' the oldest PR waiting for a reviewer (REVIEW_ASSIGNED).
-- Returns the claimed issue's stream id and the assignment's position, or no row.
--   p_keys: the route keys the agent serves; NULL = no filter (every queued issue; reviews
--   are never filtered here: who may review is decided before the claim).
--   p_unrouted: whether the agent may take issues of repos without a route key (no file,
--   never read, or a file whose route is the default).
-- A paused agent (or an instance of one) is handed nothing; a held issue is never handed out;
-- an issue is not handed back to the agent a person took it from (requeued_from). The filters
-- run inside the locked statement, so the claim stays atomic and exclusive.
CREATE OR REPLACE FUNCTION conductor_claim(p_kind text, p_agent text, p_metadata jsonb,
                                p_keys text[], p_unrouted boolean)
RETURNS TABLE (stream_id text, claim_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_stream text;
    v_type   text;
    v_pos    bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(conductor_append_lock());
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

-- The claims that arrive together, in one transaction with the appends' batch: one statement
-- and one WAL flush for all of them. Each claim runs in its own subtransaction, as each append
-- does in conductor_append_batch: a claim that fails reports its error and leaves the others
-- untouched. p_keys[k] is the claim's route keys as the text of a JSON array of strings, or
-- NULL for no routing filter (text: a driver sends a jsonb[] of arrays as a two-dimensional
-- array).
CREATE OR REPLACE FUNCTION conductor_claim_batch(p_kinds text[], p_agents text[], p_metadata jsonb[],
                                      p_keys text[], p_unrouted boolean[])
RETURNS TABLE (item integer, stream_id text, claim_position bigint, error_code text,
               error_message text)
LANGUAGE plpgsql AS $$
DECLARE
    k       integer;
    v_row   record;
    v_state text;
    v_msg   text;
BEGIN
    PERFORM pg_advisory_xact_lock(conductor_append_lock());
    FOR k IN 1 .. coalesce(cardinality(p_kinds), 0) LOOP
        BEGIN
            SELECT * INTO v_row FROM conductor_claim(
                p_kinds[k], p_agents[k], p_metadata[k],
                CASE WHEN p_keys[k] IS NOT NULL
                     THEN ARRAY(SELECT jsonb_array_elements_text(p_keys[k]::jsonb)) END,
                p_unrouted[k]);
            RETURN QUERY SELECT k, v_row.stream_id, v_row.claim_position, NULL::text, NULL::text;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
            RETURN QUERY SELECT k, NULL::text, NULL::bigint, v_state, v_msg;
        END;
    END LOOP;
END
$$;

-- A person hands a queued issue to a given agent: under the append lock, so it cannot race a
-- claim. Returns the assignment's position, or raises CE409 with why it cannot be done.
CREATE OR REPLACE FUNCTION conductor_assign(p_stream text, p_agent text, p_metadata jsonb)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_issue issues%ROWTYPE;
    v_pos   bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(conductor_append_lock());
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
