-- Step lifecycle: how an attempt ended, its own timeout, a question for a person, a decision.

ALTER TABLE steps
    ADD COLUMN error_type text  NULL,
    -- seconds this attempt may run (NULL: the task's or the default)
    ADD COLUMN timeout    float8 NULL,
    -- what a person is asked while the step is blocked
    ADD COLUMN question   text  NULL,
    -- what a person decided about a blocked step: {"decision": retry|skip|fail|answer, ...}
    ADD COLUMN decision   jsonb NULL,
    -- the quality check's job (needs_qa), written before it is submitted
    ADD COLUMN qa_job_id  uuid  NULL UNIQUE;
