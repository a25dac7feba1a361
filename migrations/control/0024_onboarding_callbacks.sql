-- External onboarding steps that answer 202 (docs/onboarding-steps.md): the create's
-- `integrations` step waits, journaled `waiting`, for the step's callback (POST
-- /api/v1/operations/{id}/steps/{name}/complete). The callback is kept here, in the
-- control database, so a server that restarts mid-wait finds it; a row is the step's
-- settled answer, written once: by the callback, or by the create when the step's
-- timeout passes first (`timed_out`), whichever comes first.
CREATE TABLE berqenas.onboarding_callbacks (
    operation_id uuid NOT NULL REFERENCES berqenas.operations (id) ON DELETE CASCADE,
    step         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('succeeded', 'failed', 'timed_out')),
    result       jsonb,
    error        text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operation_id, step)
);
REVOKE ALL ON berqenas.onboarding_callbacks FROM PUBLIC;

-- A step waiting on the outside world: the reconciler resumes its operation there
-- (waits again) after a restart, rather than undoing it.
ALTER TABLE berqenas.operation_steps DROP CONSTRAINT operation_steps_state_check;
ALTER TABLE berqenas.operation_steps
    ADD CONSTRAINT operation_steps_state_check
        CHECK (state IN ('started', 'waiting', 'applied', 'compensated', 'reverted', 'failed'));
