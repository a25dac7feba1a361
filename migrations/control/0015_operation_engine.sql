-- The operation engine (src/ops): one journal, one lease, one reconciler.

-- Every process running berqenas registers itself. An instance that stopped (cleanly,
-- or replaced by a new process on the same data directory after a crash) is gone for
-- certain: its running operations are taken over at once, without waiting for their
-- lease to lapse.
CREATE TABLE berqenas.instances (
    id           uuid PRIMARY KEY,
    -- what makes two processes the same server: host and data directory
    identity     text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
CREATE INDEX instances_live_idx ON berqenas.instances (identity) WHERE stopped_at IS NULL;
REVOKE ALL ON berqenas.instances FROM PUBLIC;

-- An operation: its kind's input, the process running it, and whether it is going
-- forward or being compensated. Its steps are its journal.
ALTER TABLE berqenas.operations
    ADD COLUMN instance_id uuid,
    ADD COLUMN params jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN phase text NOT NULL DEFAULT 'forward' CHECK (phase IN ('forward', 'compensating'));

-- A step: `started` with its intent (the objects it will create, committed before it
-- reaches outside the control database), then `applied` with its outcome, or
-- `compensated` once undone.
ALTER TABLE berqenas.operation_steps DROP CONSTRAINT operation_steps_state_check;
ALTER TABLE berqenas.operation_steps
    ADD CONSTRAINT operation_steps_state_check
        CHECK (state IN ('started', 'applied', 'compensated', 'reverted', 'failed')),
    ADD COLUMN intent jsonb,
    ADD COLUMN outcome jsonb;

-- Fencing: the operation that owns the tenant (a multi-step one), and a generation
-- that moves each time ownership is taken. Every step and every compensation checks,
-- under the tenant's lock, that its operation still owns the tenant.
ALTER TABLE berqenas.tenants
    ADD COLUMN owner_op uuid,
    ADD COLUMN generation bigint NOT NULL DEFAULT 0;
