-- Windmill dispatch: circuit breakers per script, the flow job of a plan built as one flow.

CREATE TABLE circuits (
    script     text        PRIMARY KEY,
    state      text        NOT NULL DEFAULT 'closed'
                           CHECK (state IN ('closed', 'open', 'half_open')),
    -- consecutive failures of the script's steps
    failures   integer     NOT NULL DEFAULT 0,
    opened_at  timestamptz NULL,
    last_error text        NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- flow build mode: the Windmill job id of the plan's flow run, written before it is started
ALTER TABLE plans ADD COLUMN flow_job_id uuid NULL UNIQUE;
