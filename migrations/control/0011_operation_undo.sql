-- What an operation that spans several transactions has changed so far, so that the
-- reconciler can give it back if the process dies (a restore: the logins it turned
-- off, the schema it set aside).
ALTER TABLE berqenas.operations ADD COLUMN undo jsonb;
CREATE INDEX operations_running_tenant_idx ON berqenas.operations (tenant_id) WHERE state = 'running';
