-- Repo configuration (each managed repo's .rig-agent.yaml) and routing.
--
-- REPO_CONFIG_CHANGED records a repo's configuration as read from GitHub (or that it has none);
-- REPO_CONFIG_INVALID records a broken file, which leaves the last good configuration in
-- place. `repo_configs` is their projection, kept by conductor_project like the others, and
-- the claim filters the queue by it: an agent takes only issues of repos routed to it.

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

-- The queue of one repo, for the routed claim below.
CREATE INDEX issues_queue_by_repo ON issues (lower(repo), priority_rank, approved_at, stream_id)
    WHERE state = 'queued';

-- The projection of 0001 and 0002 (issues, agents, usage, runs) keeps its body under a new
-- name; conductor_project (called by conductor_append and the rebuild) now runs it and then
-- the repo configurations.
ALTER FUNCTION conductor_project(events) RENAME TO conductor_project_work;

CREATE FUNCTION conductor_project(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d jsonb := e.data;
BEGIN
    PERFORM conductor_project_work(e);
    IF e.type = 'REPO_CONFIG_CHANGED' THEN
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
END
$$;

-- The claim of 0001, with routing: an issue is handed only to an agent its repo routes to.
--   p_keys: the route keys the agent serves; NULL = no filter (every queued issue; reviews
--   are never filtered here: who may review is decided before the claim).
--   p_unrouted: whether the agent may take issues of repos without a route key (no file,
--   never read, or a file whose route is the default).
-- The filter runs inside the locked statement, so the claim stays atomic and exclusive.
DROP FUNCTION conductor_claim(text, text, jsonb);

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
    IF p_kind = 'issue' THEN
        v_type := 'ISSUE_ASSIGNED';
        IF p_keys IS NULL THEN
            SELECT i.stream_id INTO v_stream FROM issues i
            WHERE i.state = 'queued'
            ORDER BY i.priority_rank, i.approved_at, i.stream_id
            LIMIT 1;
        ELSE
            -- The top of each repo routed to the agent (one index probe per repo, however
            -- long the queue), and the top of the repos without a route when it may take
            -- those; the better of the two.
            SELECT q.stream_id INTO v_stream FROM (
                SELECT s.stream_id, s.priority_rank, s.approved_at
                FROM repo_configs c
                CROSS JOIN LATERAL (
                    SELECT i.stream_id, i.priority_rank, i.approved_at FROM issues i
                    WHERE i.state = 'queued' AND lower(i.repo) = c.repo
                    ORDER BY i.priority_rank, i.approved_at, i.stream_id
                    LIMIT 1) s
                WHERE c.route_key = ANY(p_keys)
                UNION ALL
                (SELECT i.stream_id, i.priority_rank, i.approved_at FROM issues i
                 LEFT JOIN repo_configs c ON c.repo = lower(i.repo)
                 WHERE p_unrouted AND i.state = 'queued' AND c.route_key IS NULL
                 ORDER BY i.priority_rank, i.approved_at, i.stream_id
                 LIMIT 1)
            ) q
            ORDER BY q.priority_rank, q.approved_at, q.stream_id
            LIMIT 1;
        END IF;
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
