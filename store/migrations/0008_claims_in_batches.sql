-- Claims share the appends' commits (issue 16: make load's p99).
--
-- Every append and claim takes the append lock and holds it until its commit is on disk, so
-- they commit one at a time, in position order. The store already sent the appends that
-- arrive while one is in flight together, in one transaction and one WAL flush; each claim
-- still paid for a commit of its own. Under load the lock was busy most of the time, and a
-- slow fdatasync (this disk's p99 is ~10 ms, its worst ~100 ms) left a queue that took
-- seconds to drain. Now the claims that arrive together ride in the same batch as the
-- appends: one statement, one transaction, one flush.
--
-- Each claim runs in its own subtransaction, as each append does in conductor_append_batch,
-- and after the batch's appends (the order of things that arrived together is free): a claim
-- that fails reports its error and leaves the others untouched. p_keys[k] is the claim's route
-- keys as the text of a JSON array of strings, or NULL for no routing filter (text: a driver
-- sends a jsonb[] of arrays as a two-dimensional array).
CREATE FUNCTION conductor_claim_batch(p_kinds text[], p_agents text[], p_metadata jsonb[],
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
    PERFORM pg_advisory_xact_lock(7166002);
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
