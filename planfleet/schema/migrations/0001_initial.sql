-- planfleet initial schema: the tables of the design (inputs, plans, steps, settings, events),
-- the file sightings that make intake idempotent, and the trigger that audits every status change.

CREATE TYPE planfleet_input_status AS ENUM ('pending', 'queued', 'planning', 'planned', 'failed');
CREATE TYPE planfleet_plan_status AS ENUM (
    'ready_for_build', 'queued', 'building', 'paused', 'blocked', 'built', 'failed', 'cancelled');
CREATE TYPE planfleet_step_status AS ENUM (
    'pending', 'dispatched', 'running', 'needs_qa', 'blocked', 'completed', 'failed', 'skipped',
    'cancelled');

-- One row: the operator's run-time toggles, read by every process.
CREATE TABLE settings (
    id           smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    auto_plan    boolean     NOT NULL DEFAULT true,
    auto_build   boolean     NOT NULL DEFAULT true,
    watch_dir    text        NULL CHECK (watch_dir IS NULL OR watch_dir <> ''),
    max_parallel integer     NOT NULL DEFAULT 15 CHECK (max_parallel BETWEEN 1 AND 100000),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO settings DEFAULT VALUES;

-- A task-list file as recorded: its bytes live here, so the file itself may change or vanish.
-- The digest is unique on its own: the same content is planned once, whatever its name.
CREATE TABLE pending_inputs (
    id          bigserial    PRIMARY KEY,
    filename    text         NOT NULL,
    source_dir  text         NULL,
    digest      text         NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    size        bigint       NOT NULL CHECK (size >= 0),
    content     bytea        NULL,
    status      planfleet_input_status NOT NULL DEFAULT 'pending',
    error       text         NULL,
    attempts    integer      NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    -- only a refused file (never read) may lack its bytes, and it is failed from the start
    CONSTRAINT pending_inputs_content_check
        CHECK (status = 'failed' OR (digest IS NOT NULL AND content IS NOT NULL)),
    CONSTRAINT pending_inputs_failed_has_error CHECK (status <> 'failed' OR error IS NOT NULL)
);
CREATE UNIQUE INDEX pending_inputs_digest_key ON pending_inputs (digest) WHERE digest IS NOT NULL;
CREATE INDEX pending_inputs_status_idx ON pending_inputs (status, updated_at);

-- Every version of a file the watcher looked at (name, size, mtime): makes intake idempotent
-- across rescans, restarts and concurrent watchers, and tells a duplicate from a new input.
CREATE TABLE input_files (
    source_dir text        NOT NULL,
    filename   text        NOT NULL,
    size       bigint      NOT NULL,
    mtime_ns   bigint      NOT NULL,
    digest     text        NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_dir, filename, size, mtime_ns)
);
CREATE INDEX input_files_digest_idx ON input_files (digest);

CREATE TABLE plans (
    id               bigserial   PRIMARY KEY,
    pending_input_id bigint      NULL REFERENCES pending_inputs (id) ON DELETE CASCADE,
    status           planfleet_plan_status NOT NULL DEFAULT 'ready_for_build',
    summary          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    plan             jsonb       NOT NULL,
    digest           text        NOT NULL,
    error            text        NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plans_status_idx ON plans (status, updated_at);
CREATE INDEX plans_input_idx ON plans (pending_input_id);

CREATE TABLE steps (
    id              bigserial   PRIMARY KEY,
    plan_id         bigint      NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    task_id         text        NOT NULL,
    status          planfleet_step_status NOT NULL DEFAULT 'pending',
    attempt         integer     NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    windmill_job_id uuid        NULL UNIQUE,
    script          text        NOT NULL,
    solver          text        NULL,
    args            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result          jsonb       NULL,
    error           text        NULL,
    not_before      timestamptz NULL,
    started_at      timestamptz NULL,
    finished_at     timestamptz NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT steps_plan_task_attempt_key UNIQUE (plan_id, task_id, attempt)
);
CREATE INDEX steps_plan_status_idx ON steps (plan_id, status);

-- The audit trail: every status change (by trigger) and every notable action (by the code).
CREATE TABLE events (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind     text        NOT NULL,
    input_id bigint      NULL,
    plan_id  bigint      NULL,
    step_id  bigint      NULL,
    message  text        NOT NULL DEFAULT '',
    data     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_input_idx ON events (input_id, id) WHERE input_id IS NOT NULL;
CREATE INDEX events_plan_idx ON events (plan_id, id) WHERE plan_id IS NOT NULL;
CREATE INDEX events_kind_idx ON events (kind, id);

CREATE FUNCTION planfleet_status_event_v1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        NEW.updated_at := now();
        IF TG_TABLE_NAME = 'pending_inputs' THEN
            INSERT INTO events (kind, input_id, message, data)
            VALUES ('input_status', NEW.id, OLD.status || ' -> ' || NEW.status,
                    jsonb_build_object('from', OLD.status, 'to', NEW.status));
        ELSIF TG_TABLE_NAME = 'plans' THEN
            INSERT INTO events (kind, input_id, plan_id, message, data)
            VALUES ('plan_status', NEW.pending_input_id, NEW.id, OLD.status || ' -> ' || NEW.status,
                    jsonb_build_object('from', OLD.status, 'to', NEW.status));
        ELSE
            INSERT INTO events (kind, plan_id, step_id, message, data)
            VALUES ('step_status', NEW.plan_id, NEW.id,
                    NEW.task_id || ' ' || OLD.status || ' -> ' || NEW.status,
                    jsonb_build_object('from', OLD.status, 'to', NEW.status,
                                       'task_id', NEW.task_id, 'attempt', NEW.attempt));
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER pending_inputs_status_event BEFORE UPDATE OF status ON pending_inputs
    FOR EACH ROW EXECUTE FUNCTION planfleet_status_event_v1();
CREATE TRIGGER plans_status_event BEFORE UPDATE OF status ON plans
    FOR EACH ROW EXECUTE FUNCTION planfleet_status_event_v1();
CREATE TRIGGER steps_status_event BEFORE UPDATE OF status ON steps
    FOR EACH ROW EXECUTE FUNCTION planfleet_status_event_v1();

-- Record one batch of stable file versions the watcher read or refused, set-based (a few
-- statements per batch, not per file). Each name appears at most once in a batch. A version
-- that another watcher (or an earlier run) already took is skipped: it is claimed in
-- input_files first, in name order, so concurrent watchers lock rows in one order.
-- errors[i] set: the file was refused (never read) and becomes a failed input with that error.
-- Returns one row per claimed file: recorded (a new input), duplicate (content already
-- recorded, under any name) or refused.
CREATE FUNCTION planfleet_record_files_v1(
    p_dir text, p_names text[], p_sizes bigint[], p_mtimes bigint[], p_digests text[],
    p_contents bytea[], p_errors text[], p_queue boolean)
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
        INSERT INTO input_files AS f (source_dir, filename, size, mtime_ns, digest)
        SELECT p_dir, u.name, u.size, u.mtime_ns, u.digest
        FROM unnest(p_names, p_sizes, p_mtimes, p_digests) AS u(name, size, mtime_ns, digest)
        ORDER BY u.name
        ON CONFLICT DO NOTHING
        RETURNING f.filename)
    SELECT coalesce(array_agg(ins.filename), '{}') INTO v_claimed FROM ins;

    RETURN QUERY
    WITH ins AS (
        INSERT INTO pending_inputs AS p (filename, source_dir, size, status, error)
        SELECT u.name, p_dir, u.size, 'failed', u.error
        FROM unnest(p_names, p_sizes, p_errors) AS u(name, size, error)
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
        INSERT INTO pending_inputs AS p (filename, source_dir, digest, size, content, status)
        SELECT DISTINCT ON (u.digest) u.name, p_dir, u.digest, u.size, u.content, v_status
        FROM unnest(p_names, p_sizes, p_digests, p_contents, p_errors)
             AS u(name, size, digest, content, error)
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
