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
SELECT auto_plan, auto_build, watch_dir, max_parallel, max_running, updated_at FROM settings
WHERE id = 1;

-- name: update_settings
-- Change the given settings (a NULL parameter keeps the current value).
UPDATE settings SET
    auto_plan    = coalesce(%(auto_plan)s, auto_plan),
    auto_build   = coalesce(%(auto_build)s, auto_build),
    watch_dir    = CASE WHEN %(set_watch_dir)s THEN %(watch_dir)s ELSE watch_dir END,
    max_parallel = coalesce(%(max_parallel)s, max_parallel),
    max_running  = coalesce(%(max_running)s, max_running),
    updated_at   = now()
WHERE id = 1
RETURNING auto_plan, auto_build, watch_dir, max_parallel, max_running, updated_at;

-- name: record_files
-- Record a batch of stable file versions, each in its source (see planfleet_record_files_v3).
SELECT filename, input_id, outcome, source
FROM planfleet_record_files_v3(%(dir)s, %(names)s, %(raw_names)s, %(sources)s, %(sizes)s,
                               %(mtimes)s, %(digests)s, %(contents)s, %(errors)s, %(queue)s);

-- name: known_files
-- File versions already looked at in a watch dir (with the bytes of a name that is not UTF-8).
SELECT filename, filename_bytes, size, mtime_ns FROM input_files WHERE source_dir = %(dir)s;

-- name: list_inputs
-- Inputs, newest first, optionally of one status.
SELECT id, filename, source_dir, source, digest, size, status, error, warnings, attempts,
       created_at,
       updated_at
FROM pending_inputs
WHERE (%(status)s::planfleet_input_status IS NULL OR status = %(status)s::planfleet_input_status)
ORDER BY id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_inputs_by_status
-- How many inputs are in each status.
SELECT status::text AS status, count(*) AS n FROM pending_inputs GROUP BY status;

-- name: get_input
-- One input without its bytes.
SELECT id, filename, source_dir, source, digest, size, status, error, warnings, attempts,
       created_at,
       updated_at
FROM pending_inputs WHERE id = %(id)s;

-- name: get_input_with_content
-- One input with its bytes.
SELECT id, filename, source_dir, source, digest, size, status, error, warnings, attempts,
       created_at,
       updated_at, content
FROM pending_inputs WHERE id = %(id)s;

-- name: queue_input
-- pending -> queued (a person or the reconciler asked for a plan).
UPDATE pending_inputs SET status = 'queued'
WHERE id = %(id)s AND status = 'pending'
RETURNING id;

-- name: finish_input
-- planning -> planned | failed, with the error when failed (and what the planner warned about).
UPDATE pending_inputs SET status = %(status)s::planfleet_input_status, error = %(error)s,
    warnings = %(warnings)s
WHERE id = %(id)s AND status = 'planning'
  AND (%(job)s::text IS NULL OR claimed_by = %(job)s::text)
RETURNING id;

-- name: replan_input
-- planned | failed -> queued: plan an input again on purpose (refused files have no bytes);
-- its planning attempts start again from zero.
UPDATE pending_inputs SET status = 'queued', error = NULL, warnings = '[]', attempts = 0
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

-- name: claim_input
-- queued -> planning for one RQ job (the same job may claim again when RQ retries it).
UPDATE pending_inputs SET status = 'planning', attempts = attempts + 1, claimed_by = %(job)s,
    updated_at = now()
WHERE id = %(id)s
  AND (status = 'queued' OR (status = 'planning' AND claimed_by = %(job)s))
RETURNING id, filename, source_dir, source, digest, size, status, error, warnings, attempts,
          created_at, updated_at, content;

-- name: insert_plan_for_input
-- planning -> planned (with what the planner warned about) and the new plan, in one statement
-- (nothing if the input is not planning).
WITH done AS (
    UPDATE pending_inputs SET status = 'planned', error = NULL, warnings = %(warnings)s
    WHERE id = %(input_id)s AND status = 'planning'
      AND (%(job)s::text IS NULL OR claimed_by = %(job)s::text)
    RETURNING id, source
)
INSERT INTO plans (pending_input_id, status, summary, plan, digest, source)
SELECT done.id, %(status)s::planfleet_plan_status, %(summary)s, %(plan)s, %(digest)s,
       done.source FROM done
RETURNING id, source;

-- name: list_plans
-- Plans, newest first, optionally of one status.
SELECT id, pending_input_id, status, summary, digest, error, worker, heartbeat_at, attempts,
       created_at, updated_at, source
FROM plans
WHERE (%(status)s::planfleet_plan_status IS NULL OR status = %(status)s::planfleet_plan_status)
ORDER BY id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: plan_labels
-- What names some plans for a person: their project and the file they were made from.
SELECT p.id, p.summary->>'project' AS project, p.pending_input_id AS input_id, i.filename
FROM plans p LEFT JOIN pending_inputs i ON i.id = p.pending_input_id
WHERE p.id = ANY(%(ids)s);

-- name: plans_of_input
-- The plans made from one input, newest first.
SELECT id, pending_input_id, status, summary, digest, error, worker, heartbeat_at, attempts,
       created_at, updated_at, source
FROM plans WHERE pending_input_id = %(input_id)s
ORDER BY id DESC;

-- name: get_plan
-- One plan with its full plan document (and the revision that waits to be applied to it).
SELECT id, pending_input_id, status, summary, plan, digest, error, worker, heartbeat_at,
       attempts, created_at, updated_at, source, revision,
       (SELECT max(r.id) FROM plan_revisions r
        WHERE r.plan_id = plans.id AND r.status = 'pending') AS pending_revision
FROM plans WHERE id = %(id)s;

-- name: get_plan_head
-- One plan without its plan document (a turn reads the document only when it changed).
SELECT id, pending_input_id, status, summary, digest, error, worker, heartbeat_at,
       attempts, created_at, updated_at, source, revision,
       (SELECT max(r.id) FROM plan_revisions r
        WHERE r.plan_id = plans.id AND r.status = 'pending') AS pending_revision
FROM plans WHERE id = %(id)s;

-- name: count_plans_by_status
-- How many plans are in each status.
SELECT status::text AS status, count(*) AS n FROM plans GROUP BY status;

-- name: queue_plan
-- ready_for_build -> queued.
UPDATE plans SET status = 'queued' WHERE id = %(id)s AND status = 'ready_for_build'
RETURNING id;

-- name: claim_plan
-- queued -> building for this worker (again, on an RQ retry); also takes over a building plan
-- whose worker went silent.
UPDATE plans SET status = 'building', worker = %(worker)s, heartbeat_at = now(),
    attempts = attempts + 1
WHERE id = %(id)s
  AND (status = 'queued'
       OR (status = 'building' AND worker = %(worker)s)
       OR (status = 'building'
           AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => %(stale)s))))
RETURNING id, pending_input_id, status, summary, plan, digest, error, worker, heartbeat_at,
          attempts, created_at, updated_at;

-- name: hand_back_plan
-- building -> queued by its worker (it is stopping); the next worker takes the build over.
UPDATE plans SET status = 'queued', worker = NULL, heartbeat_at = NULL
WHERE id = %(id)s AND status = 'building' AND worker = %(worker)s
RETURNING id;

-- name: heartbeat_plan
-- The build worker is alive; returns nothing when the plan is no longer its to build.
UPDATE plans SET heartbeat_at = now()
WHERE id = %(id)s AND worker = %(worker)s AND status = 'building'
RETURNING id;

-- name: plan_status
-- A plan's status and its worker.
SELECT status, worker FROM plans WHERE id = %(id)s;

-- name: finish_plan
-- building -> built | failed, with the build summary merged into the plan summary.
UPDATE plans SET status = %(status)s::planfleet_plan_status, error = %(error)s,
    summary = summary || jsonb_build_object('build', %(build)s::jsonb)
WHERE id = %(id)s AND status = 'building'
RETURNING id;

-- name: cancel_plan
-- Any plan not finished -> cancelled.
UPDATE plans SET status = 'cancelled', error = %(reason)s
WHERE id = %(id)s AND status IN ('ready_for_build', 'queued', 'building', 'paused', 'blocked',
                                  'failed')
RETURNING id;

-- name: retry_plan
-- failed -> queued (its failed and skipped steps get a new attempt).
UPDATE plans SET status = 'queued', error = NULL, worker = NULL
WHERE id = %(id)s AND status = 'failed'
RETURNING id;

-- name: create_steps
-- The first attempt of every task of a plan (nothing for tasks that have steps already), with
-- what the fleet's sharing needs: business priority, rank in the plan's order, runs alone.
INSERT INTO steps (plan_id, task_id, attempt, script, solver, args, priority, rank, alone,
                   timeout)
SELECT %(plan_id)s, t.task_id, 1, t.script, t.solver, t.args, coalesce(t.priority, 50),
       coalesce(t.rank, 0), coalesce(t.alone, false), t.timeout
FROM jsonb_to_recordset(%(steps)s) AS t(task_id text, script text, solver text, args jsonb,
                                        priority integer, rank integer, alone boolean,
                                        timeout float8)
ON CONFLICT DO NOTHING;

-- name: latest_steps
-- The latest attempt of every task of a plan.
SELECT DISTINCT ON (task_id) id, plan_id, task_id, status, attempt, tries, windmill_job_id,
       script, solver, args, result, error, not_before, started_at, finished_at, error_type,
       timeout, question, decision, qa_job_id, observed, ready_at, removed, stale, rerun
FROM steps WHERE plan_id = %(plan_id)s
ORDER BY task_id, attempt DESC;

-- name: latest_steps_of
-- The latest attempt of every task of several plans.
SELECT DISTINCT ON (plan_id, task_id) id, plan_id, task_id, status, attempt, tries,
       windmill_job_id, script, solver, args, result, error, not_before, started_at,
       finished_at, error_type, timeout, question, decision, qa_job_id, observed, ready_at,
       removed, stale, rerun
FROM steps WHERE plan_id = ANY(%(ids)s)
ORDER BY plan_id, task_id, attempt DESC;

-- name: all_steps
-- Every attempt of every task of a plan, in the order they started.
SELECT id, plan_id, task_id, status, attempt, tries, windmill_job_id, script, solver, args,
       result, error, not_before, started_at, finished_at, error_type, timeout, question,
       decision, qa_job_id, removed, stale
FROM steps WHERE plan_id = %(plan_id)s
ORDER BY started_at NULLS LAST, task_id, attempt;

-- name: dispatch_step
-- pending -> dispatched with the job id chosen before the request is sent.
UPDATE steps SET status = 'dispatched', windmill_job_id = %(job_id)s, started_at = now(),
    updated_at = now()
WHERE id = %(id)s AND status = 'pending'
RETURNING id;

-- name: finish_step
-- dispatched | running -> completed | failed | cancelled | blocked, with the result or the
-- error (and, blocked, the question for a person).
UPDATE steps SET status = %(status)s::planfleet_step_status, result = %(result)s,
    error = %(error)s, error_type = %(error_type)s, question = %(question)s,
    finished_at = now(), updated_at = now()
WHERE id = %(id)s AND status IN ('dispatched', 'running', 'needs_qa')
RETURNING id;

-- name: next_attempt
-- A failed, skipped or cancelled step's next attempt, pending until not_before; script, solver
-- and timeout may change, and extra args (feedback, an answer) are merged into its args.
INSERT INTO steps (plan_id, task_id, attempt, tries, script, solver, args, not_before,
                   timeout, priority, rank, alone)
SELECT plan_id, task_id, attempt + 1, CASE WHEN %(fresh)s THEN 1 ELSE tries + 1 END,
       coalesce(%(script)s, script), coalesce(%(solver)s, solver),
       args || coalesce(%(extra)s::jsonb, '{}'::jsonb), now() + make_interval(secs => %(delay)s),
       coalesce(%(timeout)s, timeout), priority, rank, alone
FROM steps WHERE id = %(id)s AND status IN ('failed', 'skipped', 'cancelled')
ON CONFLICT DO NOTHING
RETURNING id;

-- name: skip_steps
-- pending -> skipped for the given tasks of a plan (a dependency failed).
UPDATE steps SET status = 'skipped', error = %(reason)s, finished_at = now(), updated_at = now()
WHERE plan_id = %(plan_id)s AND task_id = ANY (%(tasks)s) AND status = 'pending'
RETURNING task_id;

-- name: cancel_pending_steps
-- pending -> cancelled for a whole plan.
UPDATE steps SET status = 'cancelled', error = %(reason)s, finished_at = now(), updated_at = now()
WHERE plan_id = %(plan_id)s AND status = 'pending'
RETURNING id;

-- name: stale_plans
-- Plans that should be moving but nobody moves: queued a while; building in flow mode with a
-- silent worker; building with no turn for a while although one is due (a turn was asked for,
-- a job's end waits to be taken in, or nothing runs or waits for a slot, so no event will come).
SELECT p.id, p.status::text AS status FROM plans p
WHERE (p.status = 'building'
       AND (p.heartbeat_at IS NULL OR p.heartbeat_at < now() - make_interval(secs => %(stale)s))
       AND (p.worker IS NOT NULL OR p.turn_wanted
            OR EXISTS (SELECT 1 FROM steps s WHERE s.plan_id = p.id AND s.observed IS NOT NULL
                       AND s.status IN ('dispatched', 'running', 'needs_qa'))
            OR NOT EXISTS (SELECT 1 FROM steps s WHERE s.plan_id = p.id
                           AND (s.status IN ('dispatched', 'running', 'needs_qa')
                                OR (s.status = 'pending' AND s.ready_at IS NOT NULL)))))
   OR (p.status = 'queued' AND p.updated_at < now() - make_interval(secs => %(queued)s))
ORDER BY p.id;

-- name: stale_inputs
-- Inputs queued a while, or planning far past the planning timeout.
SELECT id, status::text AS status FROM pending_inputs
WHERE (status = 'queued' AND updated_at < now() - make_interval(secs => %(queued)s))
   OR (status = 'planning' AND updated_at < now() - make_interval(secs => %(planning)s))
ORDER BY id;

-- name: heartbeat_input
-- The plan job holding an input is alive (restarts the planning lease).
UPDATE pending_inputs SET updated_at = now()
WHERE id = %(id)s AND status = 'planning' AND claimed_by = %(job)s
RETURNING id;

-- name: queue_pending_inputs
-- pending -> queued for every input waiting for a person (auto_plan was turned on).
UPDATE pending_inputs SET status = 'queued'
WHERE status = 'pending' AND content IS NOT NULL
RETURNING id;

-- name: queue_ready_plans
-- ready_for_build -> queued for every plan waiting for a person (auto_build was turned on).
UPDATE plans SET status = 'queued' WHERE status = 'ready_for_build'
RETURNING id;

-- name: prune
-- Delete what finished before the cut-off: plans built, failed or cancelled (their steps go
-- with them), inputs planned or failed whose plans all go too, and events older than the
-- cut-off. Nothing that is still moving. input_files stays: it is what keeps a file still
-- lying in the watch dir from being recorded again.
WITH old_plans AS (
    DELETE FROM plans
    WHERE status IN ('built', 'failed', 'cancelled')
      AND updated_at < now() - make_interval(secs => %(older)s)
    RETURNING id
), old_inputs AS (
    DELETE FROM pending_inputs AS i
    WHERE i.status IN ('planned', 'failed')
      AND i.updated_at < now() - make_interval(secs => %(older)s)
      AND NOT EXISTS (SELECT 1 FROM plans p WHERE p.pending_input_id = i.id
                      AND p.id NOT IN (SELECT id FROM old_plans))
    RETURNING id
), old_events AS (
    DELETE FROM events WHERE at < now() - make_interval(secs => %(older)s)
    RETURNING id
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM old_plans) AS plans,
       (SELECT coalesce(array_agg(id), '{}') FROM old_inputs) AS inputs,
       (SELECT count(*) FROM old_events) AS events;

-- name: touch_input
-- Note that an input was enqueued again (restarts its queued clock).
UPDATE pending_inputs SET updated_at = now() WHERE id = %(id)s AND status = 'queued'
RETURNING id;

-- name: touch_plan
-- Note that a plan was enqueued again (restarts its queued clock).
UPDATE plans SET updated_at = now() WHERE id = %(id)s AND status = 'queued'
RETURNING id;

-- name: release_input
-- planning -> queued when its planner went away.
UPDATE pending_inputs SET status = 'queued', claimed_by = NULL
WHERE id = %(id)s AND status = 'planning'
  AND updated_at < now() - make_interval(secs => %(planning)s)
RETURNING id;

-- name: get_circuits
-- The circuits of the given scripts (scripts never failed have none), with the seconds since
-- each changed state.
SELECT script, state, failures, opened_at, last_error,
       EXTRACT(epoch FROM now() - coalesce(opened_at, updated_at))::float8 AS open_for,
       EXTRACT(epoch FROM now() - updated_at)::float8 AS idle_for
FROM circuits WHERE script = ANY (%(scripts)s);

-- name: list_circuits
-- Every circuit that is not closed, or has failures.
SELECT script, state, failures, opened_at, last_error,
       EXTRACT(epoch FROM now() - coalesce(opened_at, updated_at))::float8 AS open_for,
       EXTRACT(epoch FROM now() - updated_at)::float8 AS idle_for
FROM circuits ORDER BY script;

-- name: circuit_failure
-- One more consecutive failure; opens the circuit at the threshold (or at once when forced, or
-- when a half-open trial failed). just_opened: this statement opened it.
INSERT INTO circuits AS c (script, state, failures, opened_at, last_error)
VALUES (%(script)s,
        CASE WHEN %(force)s OR 1 >= %(threshold)s THEN 'open' ELSE 'closed' END, 1,
        CASE WHEN %(force)s OR 1 >= %(threshold)s THEN now() END, %(error)s)
ON CONFLICT (script) DO UPDATE SET
    failures = c.failures + 1,
    state = CASE WHEN %(force)s OR c.state <> 'closed' OR c.failures + 1 >= %(threshold)s
                 THEN 'open' ELSE 'closed' END,
    opened_at = CASE WHEN c.state = 'open' THEN c.opened_at
                     WHEN %(force)s OR c.state = 'half_open' OR c.failures + 1 >= %(threshold)s
                     THEN now() ELSE c.opened_at END,
    last_error = excluded.last_error,
    updated_at = now()
RETURNING state, failures, opened_at = now() AS just_opened;

-- name: circuit_success
-- A success closes the circuit and clears its failures; returns the state it left.
UPDATE circuits AS c SET state = 'closed', failures = 0, opened_at = NULL, updated_at = now()
FROM (SELECT script, state FROM circuits WHERE script = %(script)s FOR UPDATE) AS old
WHERE c.script = old.script AND (c.state <> 'closed' OR c.failures > 0)
RETURNING old.state AS was;

-- name: circuit_trial
-- open for the cool-down (or half-open with a trial that went silent as long) -> half_open:
-- the caller may send one trial step.
UPDATE circuits SET state = 'half_open', updated_at = now()
WHERE script = %(script)s
  AND ((state = 'open' AND opened_at <= now() - make_interval(secs => %(cooldown)s))
       OR (state = 'half_open' AND updated_at <= now() - make_interval(secs => %(cooldown)s)))
RETURNING script;

-- name: set_flow_job
-- The job id of a plan's flow run, chosen before the run is requested (once).
UPDATE plans SET flow_job_id = %(job_id)s
WHERE id = %(id)s AND status = 'building' AND worker = %(worker)s AND flow_job_id IS NULL
RETURNING flow_job_id;

-- name: get_flow_job
-- The job id of a plan's flow run, if it has one.
SELECT flow_job_id FROM plans WHERE id = %(id)s;

-- name: count_steps_by_status
-- How many step attempts are in each status.
SELECT status::text AS status, count(*) AS n FROM steps GROUP BY status;

-- name: step_duration_buckets
-- Finished step attempts with a duration at most each bound (seconds), for a histogram.
SELECT b.le, count(d.seconds) AS n
FROM unnest(%(bounds)s::float8[]) AS b(le)
LEFT JOIN (SELECT extract(epoch FROM finished_at - started_at)::float8 AS seconds
           FROM steps WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS d
       ON d.seconds <= b.le
GROUP BY b.le ORDER BY b.le;

-- name: metrics_totals
-- Totals for counters: finished step attempts and their seconds, retries (attempts after the
-- first), task files refused for a dependency cycle (a task depending on itself included).
SELECT (SELECT count(*) FROM steps
        WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS finished,
       (SELECT coalesce(sum(extract(epoch FROM finished_at - started_at)), 0)::float8 FROM steps
        WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS seconds,
       (SELECT count(*) FROM steps WHERE attempt > 1) AS retries,
       (SELECT count(*) FROM events
        WHERE kind = 'plan_failed' AND (data -> 'problems' @> '[{"code": "cycle"}]'
                                        OR data -> 'problems' @> '[{"code": "self_dependency"}]')
       ) AS cycles;

-- name: decide_step
-- A person's decision on a blocked step: it becomes failed (retry, answer, fail) or skipped.
UPDATE steps SET status = %(status)s::planfleet_step_status, decision = %(decision)s,
    error = coalesce(%(error)s, error), updated_at = now()
WHERE id = %(id)s AND status = 'blocked'
RETURNING id;

-- name: block_plan
-- building -> blocked by its turn: only steps waiting for a person are left.
UPDATE plans SET status = 'blocked', worker = NULL, heartbeat_at = NULL
WHERE id = %(id)s AND status = 'building'
RETURNING id;

-- name: pause_plan
-- queued | building | blocked -> paused: no new step starts (running ones finish).
UPDATE plans SET status = 'paused'
WHERE id = %(id)s AND status IN ('queued', 'building', 'blocked')
RETURNING id;

-- name: resume_plan
-- paused | blocked -> queued (the caller enqueues the build).
UPDATE plans SET status = 'queued', worker = NULL, heartbeat_at = NULL
WHERE id = %(id)s AND status IN ('paused', 'blocked')
RETURNING id;

-- name: step_needs_qa
-- dispatched | running -> needs_qa: the job succeeded, its output goes to the quality check
-- (whose job id is written here before the check is submitted).
UPDATE steps SET status = 'needs_qa', qa_job_id = %(qa_job_id)s, result = %(result)s,
    observed = NULL, updated_at = now()
WHERE id = %(id)s AND status IN ('dispatched', 'running')
RETURNING id;

-- name: start_turns
-- queued -> building, for a plan's first turn (or its first after a resume or a retry), with
-- the plan's own limits copied from its document; nobody holds it.
UPDATE plans SET status = 'building', worker = NULL, heartbeat_at = now(),
    attempts = attempts + 1, max_parallel = %(max_parallel)s, solver_caps = %(solver_caps)s
WHERE id = %(id)s AND status = 'queued'
RETURNING id;

-- name: lock_plan_turns
-- Taken for the length of a worker's turns of these plans (released by unlock_plan_turns, or
-- with the connection of a worker that died): two turns of one plan never overlap. Answers
-- the plans whose lock was taken (another worker's turn holds the others).
SELECT id FROM unnest(%(ids)s::bigint[]) AS id WHERE pg_try_advisory_lock(7014, id::integer);

-- name: unlock_plan_turns
SELECT coalesce(bool_and(pg_advisory_unlock(7014, id::integer)), true) AS unlocked
FROM unnest(%(ids)s::bigint[]) AS id;

-- name: want_turn
-- A turn was asked for: the plan's running turn (if any) goes round once more.
UPDATE plans SET turn_wanted = true WHERE id = %(id)s AND NOT turn_wanted
RETURNING id;

-- name: want_turns
-- Turns were asked for (the plans' next turns take them; a job for them is on its way).
UPDATE plans SET turn_wanted = true WHERE id = ANY(%(ids)s) AND NOT turn_wanted;

-- name: turns_wanted
-- Which of these plans still want a turn (a turn taken since the ask took its wish).
SELECT id FROM plans WHERE id = ANY(%(ids)s) AND turn_wanted ORDER BY id;

-- name: take_turn_wishes
-- Consume the wishes for turns of these plans: the plans a turn is due for (each goes round
-- once more when a wish came in meanwhile), without their documents (a turn reads a
-- document only when it changed).
UPDATE plans SET turn_wanted = false WHERE id = ANY(%(ids)s) AND turn_wanted
RETURNING id, pending_input_id, status, summary, digest, error, worker, heartbeat_at,
          attempts, created_at, updated_at, source, revision,
          (SELECT max(r.id) FROM plan_revisions r
           WHERE r.plan_id = plans.id AND r.status = 'pending') AS pending_revision;

-- name: plans_turned
-- Turns of the plans ended (what the reconciler reads to find a plan no turn moves); a turn
-- that ended well clears the count of failed ones.
UPDATE plans SET heartbeat_at = now(), turn_failures = 0 WHERE id = ANY(%(ids)s);

-- name: turn_failed
-- A turn of the plan ended with an unexpected error: how many in a row now.
UPDATE plans SET turn_failures = turn_failures + 1, heartbeat_at = now() WHERE id = %(id)s
RETURNING turn_failures;

-- name: fail_poisoned_plan
-- Its turns keep failing: the plan fails with the error, its pending steps are cancelled.
WITH p AS (
    UPDATE plans SET status = 'failed', error = %(error)s
    WHERE id = %(id)s AND status IN ('queued', 'building', 'paused')
    RETURNING id
)
UPDATE steps SET status = 'cancelled', error = %(error)s, finished_at = now(), updated_at = now()
WHERE plan_id IN (SELECT id FROM p) AND status = 'pending'
RETURNING id;

-- name: mark_ready
-- Pending steps whose dependencies are all done from now on compete for slots.
UPDATE steps SET ready_at = now()
WHERE id = ANY (%(ids)s) AND status = 'pending' AND ready_at IS NULL
RETURNING id;

-- name: clear_observed
-- The plan's turn has acted on what the tracker saw.
UPDATE steps SET observed = NULL WHERE id = %(id)s
RETURNING id;

-- name: lock_fleet_dispatch
-- Serialises the choice of steps to start across the fleet (every worker, every machine), so
-- no capacity is ever exceeded in a race; held for one short transaction.
SELECT pg_advisory_xact_lock(7013, 0);

-- name: ready_steps
-- Every step that may start as soon as a slot is free: pending, dependencies done, backoff
-- over, its plan building.
SELECT s.id, s.plan_id, s.task_id, s.solver, s.script, s.priority, s.rank, s.alone,
       extract(epoch FROM now() - greatest(s.ready_at, coalesce(s.not_before, s.ready_at)))
           AS waited
FROM steps s JOIN plans p ON p.id = s.plan_id
WHERE s.status = 'pending' AND s.ready_at IS NOT NULL
  AND (s.not_before IS NULL OR s.not_before <= now()) AND p.status = 'building';

-- name: active_load
-- What runs now, by plan, solver and whether it runs alone.
SELECT plan_id, solver, alone, count(*)::integer AS n
FROM steps WHERE status IN ('dispatched', 'running', 'needs_qa')
GROUP BY plan_id, solver, alone;

-- name: plans_active_load
-- What runs now of the given plans, by plan, solver and whether it runs alone.
SELECT plan_id, solver, alone, count(*)::integer AS n
FROM steps WHERE status IN ('dispatched', 'running', 'needs_qa') AND plan_id = ANY (%(ids)s)
GROUP BY plan_id, solver, alone;

-- name: fleet_busy
-- Steps running now, fleet-wide, by solver (NULL: steps of no solver).
SELECT solver, count(*)::integer AS n
FROM steps WHERE status IN ('dispatched', 'running', 'needs_qa')
GROUP BY solver;

-- name: dispatch_candidates
-- The ready steps a dispatch round weighs: those a slot could take now (their plan below its
-- max_parallel, no step of it running alone, their solver and the plan's own capacity for it
-- not all busy, their script's circuit closed or due for its trial; a step that runs alone
-- stays, since it holds the rest of its plan back even while it waits), in the sharing policy's order (planfleet.workers.sharing.order: standing,
-- then round-robin over plans served longest ago first, each plan in its own order), and at
-- most %(margin)s beyond what the fleet and each solver have free: a round reads what it may
-- start, not every waiting step (when the margin was not enough, it reads them all). The
-- running counts are computed once each (MATERIALIZED): joined to every ready step, an
-- inlined count would be computed again for each when the table's statistics are stale. A
-- plan's load by solver is a map on its plan's row (joined on the plan id alone: a join on
-- (plan, solver) was planned as a nested loop over every pair when the table had not been
-- analyzed since a burst of plans: on a copy of bench/fleet.py's tables mid-run, 1,464
-- candidates took 72-100 ms that way, 21-29 ms this way).
WITH busy AS MATERIALIZED (
    SELECT solver, count(*) AS n FROM steps
    WHERE status IN ('dispatched', 'running', 'needs_qa') AND solver IS NOT NULL
    GROUP BY solver
), plan_load AS MATERIALIZED (
    SELECT plan_id, sum(n) AS n, bool_or(alone) AS alone,
           jsonb_object_agg(solver, n) FILTER (WHERE solver IS NOT NULL) AS by_solver
    FROM (SELECT plan_id, solver, count(*) AS n, bool_or(alone) AS alone FROM steps
          WHERE status IN ('dispatched', 'running', 'needs_qa')
          GROUP BY plan_id, solver) AS per_solver
    GROUP BY plan_id
), ready AS (
    SELECT s.id, s.plan_id, s.task_id, s.solver, s.script, s.priority, s.rank, s.alone,
           extract(epoch FROM now() - greatest(s.ready_at, coalesce(s.not_before, s.ready_at)))
               AS waited,
           extract(epoch FROM now() - p.served_at) AS since_served,
           v.capacity - coalesce(b.n, 0) AS solver_free
    FROM steps s JOIN plans p ON p.id = s.plan_id
    LEFT JOIN solvers v ON v.name = s.solver
    LEFT JOIN busy b ON b.solver = s.solver
    LEFT JOIN plan_load l ON l.plan_id = s.plan_id
    LEFT JOIN circuits c ON c.script = s.script
    WHERE s.status = 'pending' AND s.ready_at IS NOT NULL
      AND (s.not_before IS NULL OR s.not_before <= now()) AND p.status = 'building'
      AND (c.state IS NULL OR c.state = 'closed'
           OR (c.state = 'open' AND c.opened_at <= now() - make_interval(secs => %(cooldown)s))
           OR (c.state = 'half_open'
               AND c.updated_at <= now() - make_interval(secs => %(cooldown)s)))
      AND NOT coalesce(l.alone, false) AND coalesce(l.n, 0) < coalesce(p.max_parallel, 1)
      AND (s.alone OR (
          (v.name IS NULL OR coalesce(b.n, 0) < v.capacity)
          AND (s.solver IS NULL OR p.solver_caps IS NULL OR NOT p.solver_caps ? s.solver
               OR coalesce((l.by_solver ->> s.solver)::integer, 0)
                  < (p.solver_caps ->> s.solver)::integer)))
), ranked AS (
    SELECT r.*,
           r.priority + 25 * floor(greatest(r.waited, 0) / %(aging)s::float8)::integer
               AS standing
    FROM ready r
), keyed AS (
    SELECT k.*, row_number() OVER (PARTITION BY k.plan_id, k.standing
                                   ORDER BY k.rank, k.task_id) AS depth
    FROM ranked k
), placed AS (
    SELECT q.*,
           row_number() OVER (ORDER BY q.standing DESC, q.depth,
                              q.since_served DESC NULLS FIRST, q.plan_id) AS place,
           row_number() OVER (PARTITION BY q.solver ORDER BY q.standing DESC, q.depth,
                              q.since_served DESC NULLS FIRST, q.plan_id) AS solver_place
    FROM keyed q
)
SELECT id, plan_id, task_id, solver, script, priority, rank, alone, waited, solver_free
FROM placed
WHERE place <= %(free)s + %(margin)s
  AND (alone OR solver_free IS NULL OR solver_place <= greatest(solver_free, 0) + %(margin)s)
ORDER BY place;

-- name: plan_limits
-- The plans' own limits and when they were last served.
SELECT id, max_parallel, solver_caps,
       extract(epoch FROM now() - served_at) AS since_served
FROM plans WHERE id = ANY (%(ids)s);

-- name: claim_steps
-- pending -> dispatched for the chosen steps, with the job ids chosen before any request;
-- the step holds its slot from here until its end is recorded (started_at is the statement's
-- time, after the lock was taken, not the transaction's start).
UPDATE steps SET status = 'dispatched', windmill_job_id = c.job, started_at = clock_timestamp(),
    ready_at = NULL, observed = NULL, updated_at = now()
FROM jsonb_to_recordset(%(claims)s) AS c(id bigint, job uuid)
WHERE steps.id = c.id AND steps.status = 'pending'
RETURNING steps.id, steps.plan_id, steps.task_id, steps.script, steps.args, steps.timeout,
          steps.windmill_job_id, steps.attempt;

-- name: plans_served
-- The plans whose steps just took slots (round-robin).
UPDATE plans SET served_at = now() WHERE id = ANY (%(ids)s)
RETURNING id;

-- name: fleet_active_steps
-- Every step whose job (or quality check) runs, fleet-wide: what the tracker follows.
SELECT s.id, s.plan_id, s.task_id, s.status, s.windmill_job_id, s.qa_job_id, s.started_at,
       s.timeout, s.observed IS NOT NULL AS observed
FROM steps s
WHERE s.status IN ('dispatched', 'running', 'needs_qa');

-- name: list_solvers
-- The fleet's solvers, with the steps each runs now.
SELECT v.name, v.capacity, v.script, v.updated_at,
       (SELECT count(*) FROM steps s WHERE s.solver = v.name
          AND s.status IN ('dispatched', 'running', 'needs_qa'))::integer AS busy,
       (SELECT count(*) FROM steps s JOIN plans p ON p.id = s.plan_id
          WHERE s.solver = v.name AND s.status = 'pending' AND s.ready_at IS NOT NULL
            AND p.status = 'building')::integer AS waiting
FROM solvers v ORDER BY v.name;

-- name: solver_capacities
-- name -> capacity of every declared solver.
SELECT name, capacity FROM solvers;

-- name: set_solver
-- Declare a solver, or change its capacity (and its script, when given).
INSERT INTO solvers (name, capacity, script) VALUES (%(name)s, %(capacity)s, %(script)s)
ON CONFLICT (name) DO UPDATE SET capacity = excluded.capacity,
    script = coalesce(excluded.script, solvers.script), updated_at = now()
RETURNING name, capacity, script, updated_at;

-- name: remove_solver
-- Forget a solver (its steps are no longer bound by a fleet-wide capacity).
DELETE FROM solvers WHERE name = %(name)s
RETURNING name;

-- name: lock_tracker
-- Held by the one build worker that tracks the fleet's jobs (for the life of its connection).
SELECT pg_try_advisory_lock(7015, 0) AS locked;

-- name: cancelled_among
-- Which of these steps were cancelled (their plan was, while their jobs were being submitted).
SELECT id, windmill_job_id FROM steps WHERE id = ANY (%(ids)s) AND status = 'cancelled';

-- name: source_versions
-- A source's versions, oldest first: every input recorded for it, with the plan made from it
-- (the newest, when it was planned more than once).
SELECT i.id, i.filename, i.source_dir, i.source, i.digest, i.size, i.status, i.error,
       i.warnings, i.attempts, i.created_at, i.updated_at,
       (SELECT p.id FROM plans p WHERE p.pending_input_id = i.id ORDER BY p.id DESC LIMIT 1)
           AS plan_id
FROM pending_inputs i
WHERE i.source = %(source)s
ORDER BY i.id;

-- name: source_current_plan
-- The plan a new version of a source revises: its newest plan that is not cancelled.
SELECT id, pending_input_id, status, summary, digest, error, worker, heartbeat_at, attempts,
       created_at, updated_at, source
FROM plans
WHERE source = %(source)s AND status <> 'cancelled'
ORDER BY id DESC LIMIT 1;

-- name: sources_named
-- The sources that have an input of this file name, the most recently recorded first.
SELECT source FROM pending_inputs
WHERE filename = %(filename)s
GROUP BY source
ORDER BY max(id) DESC;

-- name: add_revision
-- planning -> planned as a revision of the source's plan (pending, or waiting for a person),
-- which supersedes the revisions of that plan not yet applied; nothing if the input is not
-- planning or the plan has ended meanwhile.
WITH done AS (
    UPDATE pending_inputs SET status = 'planned', error = NULL, warnings = %(warnings)s
    WHERE id = %(input_id)s AND status = 'planning'
      AND (%(job)s::text IS NULL OR claimed_by = %(job)s::text)
      AND EXISTS (SELECT 1 FROM plans WHERE id = %(plan_id)s
                  AND status IN ('queued', 'building', 'paused', 'blocked'))
    RETURNING id
), older AS (
    UPDATE plan_revisions SET status = 'superseded'
    WHERE plan_id = %(plan_id)s AND status IN ('pending', 'waiting')
      AND EXISTS (SELECT 1 FROM done)
    RETURNING id
)
INSERT INTO plan_revisions (plan_id, input_id, plan, summary, digest, status)
SELECT %(plan_id)s, done.id, %(plan)s, %(summary)s, %(digest)s, %(status)s FROM done
RETURNING id, (SELECT count(*) FROM older) AS superseded;

-- name: get_revision
-- One revision, with the version's plan document.
SELECT r.id, r.plan_id, r.input_id, r.plan, r.summary, r.digest, r.status, r.diff,
       r.created_at, r.applied_at
FROM plan_revisions r WHERE r.id = %(id)s;

-- name: plan_revisions
-- A plan's revisions, oldest first (without the documents).
SELECT r.id, r.plan_id, r.input_id, r.summary, r.digest, r.status, r.diff, r.created_at,
       r.applied_at
FROM plan_revisions r WHERE r.plan_id = %(plan_id)s ORDER BY r.id;

-- name: release_revision
-- waiting -> pending: a person applies it (the plan's next turn does).
UPDATE plan_revisions SET status = 'pending'
WHERE id = %(id)s AND status = 'waiting'
RETURNING id, plan_id;

-- name: applied_revision
-- pending -> applied, with its diff; the plan takes the version's document, with the schedule
-- of the work that remains (a blocked plan builds again: what the revision changed may be what
-- it waited for).
WITH r AS (
    UPDATE plan_revisions SET status = 'applied', diff = %(diff)s, applied_at = now()
    WHERE id = %(id)s AND status = 'pending'
    RETURNING plan_id, plan, summary, digest
)
UPDATE plans p SET plan = r.plan || jsonb_build_object('remaining', %(remaining)s::jsonb),
    summary = r.summary, digest = r.digest,
    revision = p.revision + 1, max_parallel = %(max_parallel)s, solver_caps = %(solver_caps)s,
    status = CASE WHEN p.status = 'blocked' THEN 'building'::planfleet_plan_status
                  ELSE p.status END
FROM r WHERE p.id = r.plan_id
RETURNING p.id, p.revision;

-- name: revise_pending_step
-- A step not started takes the task's new definition (and waits for its dependencies again).
UPDATE steps SET script = %(script)s, solver = %(solver)s, args = %(args)s,
    priority = %(priority)s, rank = %(rank)s, alone = %(alone)s, timeout = %(timeout)s,
    ready_at = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'pending'
RETURNING id;

-- name: revised_attempt
-- The task runs again with its new definition: a fresh attempt after its latest one.
INSERT INTO steps (plan_id, task_id, attempt, tries, script, solver, args, priority, rank,
                   alone, timeout)
SELECT plan_id, task_id, attempt + 1, 1, %(script)s, %(solver)s, %(args)s, %(priority)s,
       %(rank)s, %(alone)s, %(timeout)s
FROM steps WHERE id = %(id)s
  AND status IN ('completed', 'failed', 'cancelled', 'skipped')
RETURNING id;

-- name: close_step
-- A step that waits or runs makes way (its task changed, or left the source): cancelled with
-- the reason (its job, if any, was cancelled by the caller).
UPDATE steps SET status = 'cancelled', error = %(reason)s, removed = %(removed)s,
    finished_at = now(), updated_at = now()
WHERE id = %(id)s AND status IN ('pending', 'dispatched', 'running', 'needs_qa', 'blocked')
RETURNING id;

-- name: mark_removed
-- The step's task left the source: recorded on it (a running one finishes, then counts for
-- nothing).
UPDATE steps SET removed = %(removed)s WHERE id = %(id)s
RETURNING id;

-- name: mark_stale
-- Completed, but a task it depends on runs again.
UPDATE steps SET stale = true WHERE id = ANY (%(ids)s) AND status = 'completed'
RETURNING id;

-- name: rerun_after
-- Once its job ends, the step's task runs again with this definition (on_change: finish).
UPDATE steps SET rerun = %(rerun)s WHERE id = %(id)s
RETURNING id;

-- name: unready_steps
-- Ready steps wait again (a dependency of theirs runs again).
UPDATE steps SET ready_at = NULL WHERE id = ANY (%(ids)s) AND status = 'pending'
RETURNING id;

-- name: settle_step
-- A step whose job ended but that counts for nothing now (its task left the source, or runs
-- again with a new definition): its outcome recorded, no retry.
UPDATE steps SET status = %(status)s::planfleet_step_status, result = %(result)s,
    error = %(error)s, observed = NULL, rerun = NULL, finished_at = now(), updated_at = now()
WHERE id = %(id)s AND status IN ('dispatched', 'running', 'needs_qa')
RETURNING id;

-- name: carry_steps
-- A new plan of a source keeps what its previous plan completed (and its revision kept): the
-- completed steps, copied as its tasks' first attempts.
INSERT INTO steps (plan_id, task_id, attempt, status, script, solver, args, result, started_at,
                   finished_at, priority, rank, alone, timeout, stale)
SELECT %(plan_id)s, s.task_id, 1, 'completed', s.script, s.solver,
       s.args || jsonb_build_object('plan_id', %(plan_id)s), s.result, s.started_at,
       s.finished_at, s.priority, s.rank, s.alone, s.timeout, s.stale OR s.id = ANY (%(stale)s)
FROM steps s WHERE s.id = ANY (%(ids)s) AND s.status = 'completed'
RETURNING task_id;

-- name: source_plan
-- The plan a new version of a source revises: its newest plan that is not cancelled.
SELECT id, pending_input_id, status, summary, plan, digest, error, worker, heartbeat_at,
       attempts, created_at, updated_at, source, revision
FROM plans
WHERE source = %(source)s AND status <> 'cancelled'
ORDER BY id DESC LIMIT 1;

-- name: revision_titles
-- The title of every task of each revision of a plan (what names a task it adds).
SELECT r.id, t.key AS task_id, t.value ->> 'title' AS title
FROM plan_revisions r, jsonb_each(r.plan -> 'tasks') AS t
WHERE r.plan_id = %(plan_id)s;

-- name: latest_step_states
-- The latest attempt of every task of a plan, without its args, result and observations: what
-- a revision decides on (a large plan's steps, read quickly).
SELECT DISTINCT ON (task_id) id, plan_id, task_id, status, attempt, tries, windmill_job_id,
       script, solver, NULL::jsonb AS args, NULL::jsonb AS result, NULL AS error, not_before,
       started_at, finished_at, qa_job_id, ready_at, removed, stale
FROM steps WHERE plan_id = %(plan_id)s
ORDER BY task_id, attempt DESC;

-- name: queued_plans
-- Plans queued for building, oldest first (the tracker asks for their first turns).
SELECT id FROM plans WHERE status = 'queued' ORDER BY id LIMIT %(limit)s;

-- name: revision_document
-- A revision's plan document, as JSON text (a large one is typed straight from it).
SELECT plan::text AS plan FROM plan_revisions WHERE id = %(id)s;

-- name: observe_steps
-- What the tracker saw some steps' jobs end with (or vanish), in one statement: recorded for
-- their plans' next turns (a step that moved on meanwhile, or is observed already, is left).
UPDATE steps s SET observed = o.observed
FROM jsonb_to_recordset(%(rows)s) AS o(id bigint, status text, observed jsonb)
WHERE s.id = o.id AND s.status = o.status::planfleet_step_status AND s.observed IS NULL
RETURNING s.id, s.plan_id;

-- name: steps_running
-- dispatched -> running for the steps whose jobs the runner said started.
UPDATE steps SET status = 'running', updated_at = now()
WHERE id = ANY (%(ids)s) AND status = 'dispatched'
RETURNING id;
