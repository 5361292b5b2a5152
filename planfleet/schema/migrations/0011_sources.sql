-- Sources: the inputs of one source (a file name in the watch dir, an upload's file name, a
-- YouTrack project and search, an explicit `source:` key) are the versions of one lineage, and
-- the plans made from them carry it too (see planfleet.sources for the keys).
--
-- The digest is no longer unique across all inputs: a version is a no-op (a duplicate of the
-- earlier input) when its bytes are those of its source's latest version that has bytes; the
-- same bytes under another source are a version of that source; a source going back to bytes
-- it had before (not its latest) is a new version.

ALTER TABLE pending_inputs ADD COLUMN source text NULL;
UPDATE pending_inputs
SET source = CASE WHEN source_dir = 'upload:' THEN 'upload:' ELSE 'file:' END || filename
WHERE source IS NULL;
ALTER TABLE pending_inputs ALTER COLUMN source SET NOT NULL,
    ADD CONSTRAINT pending_inputs_source_check CHECK (source <> '' AND length(source) <= 2000);

-- an input written by an older writer (without a source) gets its name's source
CREATE FUNCTION planfleet_input_source_v1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source IS NULL THEN
        NEW.source := CASE WHEN NEW.source_dir = 'upload:' THEN 'upload:' ELSE 'file:' END
                      || NEW.filename;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pending_inputs_source BEFORE INSERT ON pending_inputs
    FOR EACH ROW EXECUTE FUNCTION planfleet_input_source_v1();

DROP INDEX pending_inputs_digest_key;
CREATE INDEX pending_inputs_digest_idx ON pending_inputs (digest) WHERE digest IS NOT NULL;
-- a source's versions in order (and its latest one)
CREATE INDEX pending_inputs_source_idx ON pending_inputs (source, id);

ALTER TABLE plans ADD COLUMN source text NULL;
UPDATE plans p SET source = i.source FROM pending_inputs i WHERE i.id = p.pending_input_id;
CREATE INDEX plans_source_idx ON plans (source, id) WHERE source IS NOT NULL;

-- Record a batch of stable file versions: v2 with each file's source key (decided by
-- planfleet.sources.of_input). Versions of one source are recorded one after the other
-- (a transaction-scoped lock per source, taken in key order): a version whose bytes are those
-- of its source's latest version with bytes is a duplicate; two versions of one source in a
-- batch are recorded in name order.
CREATE FUNCTION planfleet_record_files_v3(
    p_dir text, p_names text[], p_raw_names bytea[], p_sources text[], p_sizes bigint[],
    p_mtimes bigint[], p_digests text[], p_contents bytea[], p_errors text[], p_queue boolean)
RETURNS TABLE (filename text, input_id bigint, outcome text, source text)
LANGUAGE plpgsql AS $$
DECLARE
    v_claimed text[];
    v_file record;
    v_latest_id bigint;
    v_latest_digest text;
    v_id bigint;
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

    -- one source at a time, across every recorder (watchers, the API), in key order
    PERFORM pg_advisory_xact_lock(7016, hashtext(s.source))
    FROM (SELECT DISTINCT u.source
          FROM unnest(p_names, p_sources) AS u(name, source)
          WHERE u.name = ANY (v_claimed)
          ORDER BY u.source) AS s;

    FOR v_file IN
        SELECT u.name, u.raw, u.source, u.size, u.digest, u.content, u.error
        FROM unnest(p_names, p_raw_names, p_sources, p_sizes, p_digests, p_contents, p_errors)
             AS u(name, raw, source, size, digest, content, error)
        WHERE u.name = ANY (v_claimed)
        ORDER BY u.source, u.name
    LOOP
        IF v_file.error IS NOT NULL THEN
            INSERT INTO pending_inputs (filename, filename_bytes, source_dir, source, size,
                                        status, error)
            VALUES (v_file.name, v_file.raw, p_dir, v_file.source, v_file.size, 'failed',
                    v_file.error)
            RETURNING id INTO v_id;
            INSERT INTO events (kind, input_id, message, data)
            VALUES ('input_refused', v_id, v_file.name || ': ' || v_file.error,
                    jsonb_build_object('filename', v_file.name, 'size', v_file.size,
                                       'source', v_file.source));
            RETURN QUERY SELECT v_file.name, v_id, 'refused'::text, v_file.source;
            CONTINUE;
        END IF;
        v_latest_id := NULL;
        v_latest_digest := NULL;
        SELECT p.id, p.digest INTO v_latest_id, v_latest_digest FROM pending_inputs p
        WHERE p.source = v_file.source AND p.digest IS NOT NULL
        ORDER BY p.id DESC LIMIT 1;
        IF v_latest_digest = v_file.digest THEN
            INSERT INTO events (kind, input_id, message, data)
            VALUES ('input_duplicate', v_latest_id,
                    v_file.name || ' has the same content as input ' || v_latest_id
                    || ', the latest version of ' || v_file.source,
                    jsonb_build_object('filename', v_file.name, 'digest', v_file.digest,
                                       'source', v_file.source));
            RETURN QUERY SELECT v_file.name, v_latest_id, 'duplicate'::text, v_file.source;
            CONTINUE;
        END IF;
        INSERT INTO pending_inputs (filename, filename_bytes, source_dir, source, digest, size,
                                    content, status)
        VALUES (v_file.name, v_file.raw, p_dir, v_file.source, v_file.digest, v_file.size,
                v_file.content, v_status)
        RETURNING id INTO v_id;
        INSERT INTO events (kind, input_id, message, data)
        VALUES ('input_recorded', v_id,
                v_file.name || ' recorded (' || v_file.size || ' bytes)',
                jsonb_build_object('filename', v_file.name, 'digest', v_file.digest,
                                   'size', v_file.size, 'queued', p_queue,
                                   'source', v_file.source,
                                   'previous', v_latest_id));
        RETURN QUERY SELECT v_file.name, v_id, 'recorded'::text, v_file.source;
    END LOOP;
END $$;

-- v2's callers (a process not yet upgraded) record through v3, each file under its name's source.
CREATE OR REPLACE FUNCTION planfleet_record_files_v2(
    p_dir text, p_names text[], p_raw_names bytea[], p_sizes bigint[], p_mtimes bigint[],
    p_digests text[], p_contents bytea[], p_errors text[], p_queue boolean)
RETURNS TABLE (filename text, input_id bigint, outcome text)
LANGUAGE sql AS $$
    SELECT v3.filename, v3.input_id, v3.outcome FROM planfleet_record_files_v3(
        p_dir, p_names, p_raw_names,
        ARRAY(SELECT CASE WHEN p_dir = 'upload:' THEN 'upload:' ELSE 'file:' END || n
              FROM unnest(p_names) WITH ORDINALITY AS x(n, i) ORDER BY i),
        p_sizes, p_mtimes, p_digests, p_contents, p_errors, p_queue) AS v3
$$;
