-- Push dispatch: the claim and its outbox row (dispatch_outbox) in one transaction.
--
-- Repeatable: applied by `conductor-e migrate` after the numbered migrations, whenever a
-- repeatable file changed or a numbered migration ran (store/migrations). Edit it in place.
-- Changing a function's arguments or result type, or removing it, needs a DROP FUNCTION in a
-- numbered migration: CREATE OR REPLACE cannot change them, and nothing drops what a file no
-- longer defines.

-- conductor_dispatch claims the top of an agent's route with the pull path's own exclusive
-- claim (conductor_claim: ISSUE_ASSIGNED or REVIEW_ASSIGNED) and, in the same transaction,
-- writes the stream entry the agent runtime reads (src/stream-consumer.js) into
-- dispatch_outbox: an assignment exists as an event and as a row to send, or not at all.
CREATE OR REPLACE FUNCTION conductor_dispatch(p_kind text, p_agent text, p_metadata jsonb,
                                   p_keys text[], p_unrouted boolean)
RETURNS SETOF dispatch_outbox
LANGUAGE plpgsql AS $$
DECLARE
    v_stream text;
    v_pos    bigint;
BEGIN
    SELECT c.stream_id, c.claim_position INTO v_stream, v_pos
    FROM conductor_claim(p_kind, p_agent, p_metadata, p_keys, p_unrouted) c;
    IF v_stream IS NULL THEN
        RETURN;
    END IF;
    -- The entry's fields, as the runtime reads them: a review's issueNumber is its PR number.
    RETURN QUERY
    INSERT INTO dispatch_outbox (assignment_id, token, agent_id, stream_id, kind, fields)
    SELECT v_pos, t.token, p_agent, v_stream, p_kind, jsonb_build_object(
        'assignmentId', t.token::text,
        'repo', i.repo,
        'issueNumber', (CASE WHEN p_kind = 'review' THEN coalesce(i.pr_number, i.number)
                        ELSE i.number END)::text,
        'title', coalesce(i.title, ''),
        'priority', i.priority,
        'stack', coalesce(c.config->>'stack', ''),
        'testCommand', coalesce(c.config->>'testCommand', ''),
        'buildCommand', coalesce(c.config->>'buildCommand', ''),
        'tools', coalesce((SELECT string_agg(t, ',') FROM jsonb_array_elements_text(
                               CASE WHEN jsonb_typeof(c.config->'tools') = 'array'
                                    THEN c.config->'tools' ELSE '[]'::jsonb END) t), ''),
        'body', coalesce(i.url, ''))
    FROM issues i
    CROSS JOIN (SELECT gen_random_uuid() AS token) t
    LEFT JOIN repo_configs c ON c.repo = lower(i.repo)
    WHERE i.stream_id = v_stream
    RETURNING *;
END
$$;
