-- What an operation that spans several transactions has changed so far, so that the
-- reconciler can give it back if the process dies (a restore: the logins it turned
-- off, the schema it set aside).
ALTER TABLE berqenas.operations ADD COLUMN undo jsonb;
CREATE INDEX operations_running_tenant_idx ON berqenas.operations (tenant_id) WHERE state = 'running';

-- A database-mode purge drops the tenant's database outside the transaction that
-- records the purge; `purging`, committed first, keeps a restore from bringing the
-- tenant back without its database if the purge dies in between.
ALTER TABLE berqenas.offboarding DROP CONSTRAINT offboarding_state_check;
ALTER TABLE berqenas.offboarding ADD CONSTRAINT offboarding_state_check
    CHECK (state IN ('pending', 'deleted', 'purging', 'purged'));
