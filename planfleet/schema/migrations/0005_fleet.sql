-- The fleet scheduler: plans move in short turns; solver capacity is a fleet-wide fact.

-- Solvers the operators declare: a capacity shared by every plan, and a default script.
CREATE TABLE solvers (
    name       text        PRIMARY KEY CHECK (name <> ''),
    capacity   integer     NOT NULL CHECK (capacity BETWEEN 0 AND 100000),
    script     text        NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- a fleet-wide cap on steps running at once (every plan, every worker)
ALTER TABLE settings
    ADD COLUMN max_running integer NOT NULL DEFAULT 1000 CHECK (max_running BETWEEN 1 AND 1000000);

ALTER TABLE plans
    -- a turn was asked for while another ran: the running one goes round once more
    ADD COLUMN turn_wanted  boolean     NOT NULL DEFAULT false,
    -- the plan's own limits, copied from its document when its first turn starts
    ADD COLUMN max_parallel integer     NULL,
    ADD COLUMN solver_caps  jsonb       NULL,
    -- when a step of it last took a slot (round-robin between plans of equal standing)
    ADD COLUMN served_at    timestamptz NULL;

ALTER TABLE steps
    -- business priority of the task (critical 100 ... idle 0)
    ADD COLUMN priority integer     NOT NULL DEFAULT 50,
    -- position in its plan's priority order (lower starts first)
    ADD COLUMN rank     integer     NOT NULL DEFAULT 0,
    -- parallel: false (runs alone within its plan)
    ADD COLUMN alone    boolean     NOT NULL DEFAULT false,
    -- pending and every dependency done since then (set by the plan's turns)
    ADD COLUMN ready_at timestamptz NULL,
    -- what the tracker saw its job (or its check) end with, for the plan's next turn
    ADD COLUMN observed jsonb       NULL;

CREATE INDEX steps_active ON steps (solver) WHERE status IN ('dispatched', 'running', 'needs_qa');
CREATE INDEX steps_ready ON steps (plan_id) WHERE status = 'pending' AND ready_at IS NOT NULL;
