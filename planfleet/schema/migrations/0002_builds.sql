-- Plan and build workers: who holds an input or a plan, build heartbeats, step attempts.

ALTER TABLE pending_inputs ADD COLUMN claimed_by text NULL;

ALTER TABLE plans
    ADD COLUMN worker       text        NULL,
    ADD COLUMN heartbeat_at timestamptz NULL,
    ADD COLUMN attempts     integer     NOT NULL DEFAULT 0;

-- tries: attempts in the current run of a step (a person's retry starts again at 1)
ALTER TABLE steps ADD COLUMN tries integer NOT NULL DEFAULT 1 CHECK (tries >= 1);

-- at most one attempt of a task is alive at a time
CREATE UNIQUE INDEX steps_one_live_attempt ON steps (plan_id, task_id)
    WHERE status IN ('pending', 'dispatched', 'running', 'needs_qa', 'blocked');
