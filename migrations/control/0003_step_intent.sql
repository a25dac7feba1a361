-- A step that cannot run in a transaction (CREATE DATABASE) is recorded as `started`
-- before it runs, so a reconciler after a crash knows to undo it, and a step that
-- failed because its object already existed (someone else's) is never undone.
ALTER TABLE berqenas.operation_steps DROP CONSTRAINT operation_steps_state_check;
ALTER TABLE berqenas.operation_steps
    ADD CONSTRAINT operation_steps_state_check CHECK (state IN ('started', 'applied', 'reverted', 'failed'));

-- The tenant template database's version, so a start knows whether to rebuild it.
CREATE TABLE berqenas.template_database (
    name     text PRIMARY KEY,
    version  integer NOT NULL,
    checksum text NOT NULL
);
