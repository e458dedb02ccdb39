-- Appends: every event enters the store through conductor_append, which inserts it, projects
-- it (conductor_project, store/projections/sql/project.sql) and notifies the followers, in the
-- caller's transaction.
--
-- Repeatable: applied by `conductor-e migrate` after the numbered migrations, whenever a
-- repeatable file changed or a numbered migration ran (store/migrations). Edit it in place.
-- Changing a function's arguments or result type, or removing it, needs a DROP FUNCTION in a
-- numbered migration: CREATE OR REPLACE cannot change them, and nothing drops what a file no
-- longer defines.

-- The key of the append lock, named once for every function that takes it: store.locks.
-- APPEND_LOCK, which the rebuild takes (a test keeps the two equal). IMMUTABLE, so the planner
-- folds the call to its constant: it costs an append nothing.
CREATE OR REPLACE FUNCTION conductor_append_lock() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 7166002::bigint
$$;

-- Appends events to one stream in the caller's transaction.
--   p_expected: NULL = any version; 0 = the stream must not exist yet; n = it must be at n.
-- Writers are serialised by a transaction-scoped advisory lock, so positions commit in order
-- and a follower that reads "position > last seen" never skips an event that commits late.
-- A repeated idempotency key returns the first append's result with duplicate = true.
CREATE OR REPLACE FUNCTION conductor_append(p_stream text, p_expected integer, p_key text,
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
    PERFORM pg_advisory_xact_lock(conductor_append_lock());

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
CREATE OR REPLACE FUNCTION conductor_append_batch(p_streams text[], p_expected integer[], p_keys text[],
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
    PERFORM pg_advisory_xact_lock(conductor_append_lock());
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
