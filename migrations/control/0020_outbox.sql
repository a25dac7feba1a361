-- The transactional outbox (docs/events.md): every change to a tenant writes its event
-- here, in the transaction (or the engine step) of the change, so an event exists if
-- and only if its change committed. The relay delivers from here; `seq` orders the
-- events of one tenant (its changes are serialised by the tenant's lock, and each takes
-- its `seq` inside that lock).
CREATE TABLE berqenas.outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    type        text NOT NULL CHECK (type ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tenant_id   uuid,
    tenant_name text,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(data) = 'object')
);

CREATE INDEX outbox_tenant_seq_idx ON berqenas.outbox (tenant_id, seq);
CREATE INDEX outbox_type_seq_idx ON berqenas.outbox (type, seq);
