-- Input hardening: file names that are not UTF-8 are kept as their bytes.
--
-- A POSIX file name is bytes. `filename` holds its readable form (each byte that is not UTF-8
-- written as \xNN); `filename_bytes` holds the exact bytes of such a name (NULL when the name
-- is valid UTF-8: then `filename` is the name itself).

ALTER TABLE pending_inputs ADD COLUMN filename_bytes bytea NULL;
ALTER TABLE input_files ADD COLUMN filename_bytes bytea NULL;

-- Record a batch of stable file versions: v1 plus each name's bytes (NULL for a UTF-8 name).
CREATE FUNCTION planfleet_record_files_v2(
    p_dir text, p_names text[], p_raw_names bytea[], p_sizes bigint[], p_mtimes bigint[],
    p_digests text[], p_contents bytea[], p_errors text[], p_queue boolean)
RETURNS TABLE (filename text, input_id bigint, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    v_claimed text[];
    v_new_names text[];
    v_new_ids bigint[];
    v_status planfleet_input_status :=
        CASE WHEN p_queue THEN 'queued' ELSE 'pending' END::planfleet_input_status;
BEGIN
    WITH ins AS (
        INSERT INTO input_files AS f (source_dir, filename, size, mtime_ns, digest,
                                      filename_bytes)
        SELECT p_dir, u.name, u.size, u.mtime_ns, u.digest, u.raw
        FROM unnest(p_names, p_sizes, p_mtimes, p_digests, p_raw_names)
             AS u(name, size, mtime_ns, digest, raw)
        ORDER BY u.name
        ON CONFLICT DO NOTHING
        RETURNING f.filename)
    SELECT coalesce(array_agg(ins.filename), '{}') INTO v_claimed FROM ins;

    RETURN QUERY
    WITH ins AS (
        INSERT INTO pending_inputs AS p (filename, filename_bytes, source_dir, size, status,
                                         error)
        SELECT u.name, u.raw, p_dir, u.size, 'failed', u.error
        FROM unnest(p_names, p_raw_names, p_sizes, p_errors) AS u(name, raw, size, error)
        JOIN unnest(v_claimed) AS c(name) ON c.name = u.name
        WHERE u.error IS NOT NULL
        ORDER BY u.name
        RETURNING p.id, p.filename, p.size, p.error),
    ev AS (
        INSERT INTO events (kind, input_id, message, data)
        SELECT 'input_refused', ins.id, ins.filename || ': ' || ins.error,
               jsonb_build_object('filename', ins.filename, 'size', ins.size)
        FROM ins)
    SELECT ins.filename, ins.id, 'refused'::text FROM ins;

    WITH ins AS (
        INSERT INTO pending_inputs AS p (filename, filename_bytes, source_dir, digest, size,
                                         content, status)
        SELECT DISTINCT ON (u.digest) u.name, u.raw, p_dir, u.digest, u.size, u.content,
               v_status
        FROM unnest(p_names, p_raw_names, p_sizes, p_digests, p_contents, p_errors)
             AS u(name, raw, size, digest, content, error)
        JOIN unnest(v_claimed) AS c(name) ON c.name = u.name
        WHERE u.error IS NULL
        ORDER BY u.digest, u.name
        ON CONFLICT (digest) WHERE digest IS NOT NULL DO NOTHING
        RETURNING p.id, p.filename, p.digest, p.size),
    ev AS (
        INSERT INTO events (kind, input_id, message, data)
        SELECT 'input_recorded', ins.id, ins.filename || ' recorded (' || ins.size || ' bytes)',
               jsonb_build_object('filename', ins.filename, 'digest', ins.digest,
                                  'size', ins.size, 'queued', p_queue)
        FROM ins)
    SELECT coalesce(array_agg(ins.filename), '{}'), coalesce(array_agg(ins.id), '{}')
    INTO v_new_names, v_new_ids FROM ins;

    RETURN QUERY SELECT n.name, n.id, 'recorded'::text FROM unnest(v_new_names, v_new_ids) AS n(name, id);

    -- a new statement sees inputs a concurrent watcher committed meanwhile
    RETURN QUERY
    WITH dup AS (
        SELECT u.name, p.id, u.digest
        FROM unnest(p_names, p_digests, p_errors) AS u(name, digest, error)
        JOIN unnest(v_claimed) AS c(name) ON c.name = u.name
        JOIN pending_inputs AS p ON p.digest = u.digest
        WHERE u.error IS NULL AND u.name <> ALL (v_new_names)),
    ev AS (
        INSERT INTO events (kind, input_id, message, data)
        SELECT 'input_duplicate', dup.id, dup.name || ' has the same content as input ' || dup.id,
               jsonb_build_object('filename', dup.name, 'digest', dup.digest)
        FROM dup)
    SELECT dup.name, dup.id, 'duplicate'::text FROM dup;
END $$;
