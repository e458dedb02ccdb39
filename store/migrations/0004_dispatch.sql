-- Push dispatch: a transactional outbox of assignments for the agents' Valkey streams.
--
-- conductor_dispatch claims the top of an agent's route with the pull path's own exclusive
-- claim (conductor_claim: ISSUE_ASSIGNED or REVIEW_ASSIGNED) and, in the same transaction,
-- writes the stream entry the agent runtime reads (src/stream-consumer.js) into
-- dispatch_outbox. The dispatcher then writes each unsent row to `assignments:{agentId}` and
-- marks it sent; the entry carries the row's id, and the write is skipped when Valkey already
-- holds it, so a crash, an outage or a restart delays an assignment but never loses or doubles
-- it. The outbox is not a projection: a rebuild leaves it alone.

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

CREATE FUNCTION conductor_dispatch(p_kind text, p_agent text, p_metadata jsonb,
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
