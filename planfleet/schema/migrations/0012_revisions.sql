-- Revisions: a new version of a source whose plan has started is applied to that plan (one of
-- its turns) instead of becoming a plan of its own. A revision waits (pending, or waiting for a
-- person when the fleet does not build on its own), then is applied, or superseded by a newer
-- one of the same plan (the newest wins).

CREATE TABLE plan_revisions (
    id          bigserial   PRIMARY KEY,
    plan_id     bigint      NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    input_id    bigint      NOT NULL REFERENCES pending_inputs (id) ON DELETE CASCADE,
    plan        jsonb       NOT NULL,
    summary     jsonb       NOT NULL,
    digest      text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'waiting', 'applied', 'superseded')),
    diff        jsonb       NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    applied_at  timestamptz NULL
);
CREATE INDEX plan_revisions_plan_idx ON plan_revisions (plan_id, id);
CREATE UNIQUE INDEX plan_revisions_input_key ON plan_revisions (input_id);

ALTER TABLE plans ADD COLUMN revision integer NOT NULL DEFAULT 0;

-- A step of a task its source no longer has (removed_from_source, done_in_source); a completed
-- step a dependency ran again after (stale); the definition a running step runs again with once
-- its job has ended (a revision's on_change: finish).
ALTER TABLE steps ADD COLUMN removed text NULL,
    ADD COLUMN stale boolean NOT NULL DEFAULT false,
    ADD COLUMN rerun jsonb NULL;
