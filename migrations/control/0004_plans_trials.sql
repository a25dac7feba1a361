-- A plan may choose the isolation mode its tenants get when the request names none:
-- enterprise tenants get a database of their own. The others keep schema per tenant.
ALTER TABLE berqenas.plans
    ADD COLUMN default_isolation text CHECK (default_isolation IN ('schema', 'database', 'shared'));
UPDATE berqenas.plans SET default_isolation = 'database' WHERE name = 'enterprise';

-- A tenant in `trial` until this moment; the worker then makes it `active` (paid plan)
-- or `suspended` (still on the free plan).
ALTER TABLE berqenas.tenants ADD COLUMN trial_ends_at timestamptz;
CREATE INDEX tenants_trial_idx ON berqenas.tenants (trial_ends_at) WHERE status = 'trial';
