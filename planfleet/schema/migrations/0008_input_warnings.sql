-- What the planner read from an input but did not plan, or read with a guess (lines that look
-- like tasks but cannot be read, link types without a direction, a missing estimate field):
-- a list of {code, message, line?, task?, field?}, set when the input is planned.

ALTER TABLE pending_inputs
    ADD COLUMN warnings jsonb NOT NULL DEFAULT '[]'::jsonb
        CONSTRAINT pending_inputs_warnings_is_list CHECK (jsonb_typeof(warnings) = 'array');
