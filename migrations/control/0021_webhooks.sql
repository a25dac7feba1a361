-- Webhooks (docs/webhooks.md): the endpoints events are sent to, the queue of events
-- still to fan out, and one delivery per (event, endpoint) with its attempts.

-- An endpoint. Its secrets are sealed with the server's key (never stored in clear):
-- `secret` is the one in force; `previous_secret` is still signed with until
-- `previous_expires_at` (a rotation's overlap).
CREATE TABLE berqenas.webhook_endpoints (
    id                  uuid PRIMARY KEY,
    url                 text NOT NULL,
    events              text[] NOT NULL CHECK (cardinality(events) > 0),
    description         text,
    enabled             boolean NOT NULL DEFAULT true,
    disabled_reason     text,
    secret              bytea NOT NULL,
    previous_secret     bytea,
    previous_expires_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Events not yet fanned out into deliveries. A trigger adds each outbox row in the
-- transaction that appends it, so an event whose `seq` commits after a higher one is
-- still found: the relay takes rows from here (SKIP LOCKED), never from a cursor.
-- `tenant_key` is the event's tenant, or the nil uuid for an event about none (so that
-- "the same tenant" is a plain, indexable equality).
CREATE TABLE berqenas.webhook_fanout (
    seq        bigint PRIMARY KEY REFERENCES berqenas.outbox (seq) ON DELETE CASCADE,
    tenant_key uuid NOT NULL
);
CREATE INDEX webhook_fanout_tenant_idx ON berqenas.webhook_fanout (tenant_key, seq);

CREATE FUNCTION berqenas.outbox_fanout() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO berqenas.webhook_fanout (seq, tenant_key)
    VALUES (NEW.seq, coalesce(NEW.tenant_id, '00000000-0000-0000-0000-000000000000'));
    -- Wakes the relays at commit (one notification per transaction).
    PERFORM pg_notify('berqenas_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_fanout AFTER INSERT ON berqenas.outbox
    FOR EACH ROW EXECUTE FUNCTION berqenas.outbox_fanout();

-- One event to one endpoint. `seq` and `tenant_key` are the event's: deliveries of one
-- (endpoint, tenant) go out in `seq` order. A pending row whose `claim` is set is being
-- attempted by a relay until `next_attempt_at` (its claim's end); a relay that died
-- leaves it due again then.
CREATE TABLE berqenas.webhook_deliveries (
    id               uuid PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES berqenas.webhook_endpoints (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL REFERENCES berqenas.outbox (id) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    tenant_key       uuid NOT NULL,
    event_type       text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claim            uuid,
    last_status      integer,
    last_latency_ms  integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    replay           boolean NOT NULL DEFAULT false,
    replay_of        uuid
);
-- Fan-out inserts each (event, endpoint) once; a replay adds a row of its own.
CREATE UNIQUE INDEX webhook_deliveries_once_idx
    ON berqenas.webhook_deliveries (endpoint_id, event_id) WHERE NOT replay;
CREATE INDEX webhook_deliveries_due_idx
    ON berqenas.webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order_idx
    ON berqenas.webhook_deliveries (endpoint_id, tenant_key, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx
    ON berqenas.webhook_deliveries (endpoint_id, created_at);

-- Every attempt, for `GET /api/v1/webhooks/{id}/deliveries`.
CREATE TABLE berqenas.webhook_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES berqenas.webhook_deliveries (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    status      integer,
    latency_ms  integer NOT NULL,
    error       text
);
CREATE INDEX webhook_attempts_delivery_idx ON berqenas.webhook_attempts (delivery_id, id);
