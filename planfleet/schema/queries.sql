-- All of planfleet's SQL, one named block per statement.

-- name: create_migrations_table
-- The ledger of applied migrations.
CREATE TABLE IF NOT EXISTS planfleet_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
-- Serialise concurrent migrators (held until the transaction ends).
SELECT pg_advisory_xact_lock(7321560912);

-- name: applied_migrations
-- Versions already applied.
SELECT version FROM planfleet_migrations ORDER BY version;

-- name: mark_migration_applied
-- Note a migration as applied.
INSERT INTO planfleet_migrations (version) VALUES (%(version)s);

-- name: get_settings
-- The settings row.
SELECT auto_plan, auto_build, watch_dir, max_parallel, updated_at FROM settings WHERE id = 1;

-- name: update_settings
-- Change the given settings (a NULL parameter keeps the current value).
UPDATE settings SET
    auto_plan    = coalesce(%(auto_plan)s, auto_plan),
    auto_build   = coalesce(%(auto_build)s, auto_build),
    watch_dir    = CASE WHEN %(set_watch_dir)s THEN %(watch_dir)s ELSE watch_dir END,
    max_parallel = coalesce(%(max_parallel)s, max_parallel),
    updated_at   = now()
WHERE id = 1
RETURNING auto_plan, auto_build, watch_dir, max_parallel, updated_at;

-- name: record_files
-- Record a batch of stable file versions (see planfleet_record_files_v1).
SELECT filename, input_id, outcome
FROM planfleet_record_files_v1(%(dir)s, %(names)s, %(sizes)s, %(mtimes)s, %(digests)s,
                               %(contents)s, %(errors)s, %(queue)s);

-- name: known_files
-- File versions already looked at in a watch dir.
SELECT filename, size, mtime_ns FROM input_files WHERE source_dir = %(dir)s;

-- name: list_inputs
-- Inputs, newest first, optionally of one status.
SELECT id, filename, source_dir, digest, size, status, error, attempts, created_at, updated_at
FROM pending_inputs
WHERE (%(status)s::planfleet_input_status IS NULL OR status = %(status)s::planfleet_input_status)
ORDER BY id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_inputs_by_status
-- How many inputs are in each status.
SELECT status::text AS status, count(*) AS n FROM pending_inputs GROUP BY status;

-- name: get_input
-- One input without its bytes.
SELECT id, filename, source_dir, digest, size, status, error, attempts, created_at, updated_at
FROM pending_inputs WHERE id = %(id)s;

-- name: get_input_with_content
-- One input with its bytes.
SELECT id, filename, source_dir, digest, size, status, error, attempts, created_at, updated_at,
       content
FROM pending_inputs WHERE id = %(id)s;

-- name: queue_input
-- pending -> queued (a person or the reconciler asked for a plan).
UPDATE pending_inputs SET status = 'queued'
WHERE id = %(id)s AND status = 'pending'
RETURNING id;

-- name: claim_input
-- queued -> planning: the plan worker takes the input (only one can).
UPDATE pending_inputs SET status = 'planning', attempts = attempts + 1
WHERE id = %(id)s AND status = 'queued'
RETURNING id, filename, source_dir, digest, size, status, error, attempts, created_at,
          updated_at, content;

-- name: finish_input
-- planning -> planned | failed, with the error when failed.
UPDATE pending_inputs SET status = %(status)s::planfleet_input_status, error = %(error)s
WHERE id = %(id)s AND status = 'planning'
RETURNING id;

-- name: requeue_input
-- planning -> queued: hand an input back after a transient fault.
UPDATE pending_inputs SET status = 'queued'
WHERE id = %(id)s AND status = 'planning'
RETURNING id;

-- name: replan_input
-- planned | failed -> queued: plan an input again on purpose (refused files have no bytes).
UPDATE pending_inputs SET status = 'queued', error = NULL
WHERE id = %(id)s AND status IN ('planned', 'failed') AND content IS NOT NULL
RETURNING id;

-- name: insert_event
-- Add a line to the audit trail.
INSERT INTO events (kind, input_id, plan_id, step_id, message, data)
VALUES (%(kind)s, %(input_id)s, %(plan_id)s, %(step_id)s, %(message)s, %(data)s)
RETURNING id;

-- name: list_events
-- Events, newest first, optionally of one input, plan or kind.
SELECT id, at, kind, input_id, plan_id, step_id, message, data
FROM events
WHERE (%(input_id)s::bigint IS NULL OR input_id = %(input_id)s::bigint)
  AND (%(plan_id)s::bigint IS NULL OR plan_id = %(plan_id)s::bigint)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;
