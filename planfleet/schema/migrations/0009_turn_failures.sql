-- The poison-pill rule for a plan's turns: consecutive turns that ended with an unexpected error.
ALTER TABLE plans ADD COLUMN turn_failures integer NOT NULL DEFAULT 0;
