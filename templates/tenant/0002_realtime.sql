-- Realtime (issue 15): the tenant's event table, its publish function, and the
-- trigger function that publishes a table's changes. Runs as the tenant's owner role
-- (in shared mode as the pool's owner; the table then gets tenant_id and row-level
-- security like every other pool table, and its unique constraints become per tenant).
--
-- Order: a subscriber resumes with "the events after id N", so one tenant's events
-- must commit in id order. The BEFORE INSERT trigger takes the tenant's row in
-- realtime_lock (held to commit) and only then draws the id, so two transactions of
-- one tenant never commit out of order and no event is ever skipped.
--
-- Names are bound at creation (BEGIN ATOMIC) or taken from TG_TABLE_SCHEMA, never
-- from the caller's search_path (a database-mode clone renames the schema).

CREATE SEQUENCE realtime_events_id_seq;

CREATE TABLE realtime_events (
    id bigint NOT NULL CONSTRAINT realtime_events_id UNIQUE,
    channel text NOT NULL CONSTRAINT realtime_channel_name
        CHECK (length(channel) <= 128 AND channel ~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$'),
    payload jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT realtime_payload_size CHECK (octet_length(payload::text) <= 65536)
);
CREATE INDEX realtime_events_created_at ON realtime_events (created_at);

-- One row per tenant; its lock orders the tenant's publishes.
CREATE TABLE realtime_lock (
    k boolean NOT NULL DEFAULT true CONSTRAINT realtime_lock_one UNIQUE,
    n bigint NOT NULL DEFAULT 0
);

-- The tables whose changes are published (POST /api/v1/tenants/{name}/realtime/tables).
CREATE TABLE realtime_tables (
    table_name text NOT NULL CONSTRAINT realtime_tables_one UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The id, drawn with the owner's right on the sequence (tenants hold no grant on it).
CREATE FUNCTION realtime_next_id() RETURNS bigint LANGUAGE sql SECURITY DEFINER
BEGIN ATOMIC
    SELECT nextval('realtime_events_id_seq');
END;

CREATE FUNCTION realtime_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A restore (the table's owner, or a member of it, writing rows with their ids)
    -- keeps them; only tenants' publishes are ordered, counted and numbered here.
    IF NEW.id IS NOT NULL AND pg_catalog.pg_has_role(
            (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), 'USAGE') THEN
        RETURN NEW;
    END IF;
    EXECUTE pg_catalog.format('INSERT INTO %I.realtime_lock AS l (k) VALUES (true)
                    ON CONFLICT ON CONSTRAINT realtime_lock_one DO UPDATE SET n = l.n + 1',
                   TG_TABLE_SCHEMA);
    -- The quota: limits and counters are the control plane's, out of the tenant's
    -- reach (berqenas_realtime.admit, in the control database).
    IF pg_catalog.to_regproc('berqenas_realtime.admit') IS NOT NULL THEN
        PERFORM berqenas_realtime.admit();
    END IF;
    EXECUTE pg_catalog.format('SELECT %I.realtime_next_id()', TG_TABLE_SCHEMA) INTO NEW.id;
    NEW.created_at := pg_catalog.now();
    RETURN NEW;
END $$;

CREATE FUNCTION realtime_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'realtime events cannot be changed once published; delete them instead'
        USING ERRCODE = '55000';
END $$;

-- The wake-up: an empty notification on one channel shared by everyone. It says only
-- that some tenant published; the server reads the rows itself, with its own role.
CREATE FUNCTION realtime_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('berqenas_realtime', '');
    RETURN NULL;
END $$;

CREATE TRIGGER realtime_gate BEFORE INSERT ON realtime_events
    FOR EACH ROW EXECUTE FUNCTION realtime_gate();
CREATE TRIGGER realtime_immutable BEFORE UPDATE ON realtime_events
    FOR EACH ROW EXECUTE FUNCTION realtime_immutable();
CREATE TRIGGER realtime_wake AFTER INSERT ON realtime_events
    FOR EACH STATEMENT EXECUTE FUNCTION realtime_wake();

-- SELECT realtime_publish('orders', '{"id": 1}'): publishes, returns the event's id.
CREATE FUNCTION realtime_publish(channel text, payload jsonb) RETURNS bigint LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO realtime_events (channel, payload) VALUES (channel, payload) RETURNING id;
END;

-- A published table's changes, on channel table.<name>: {op, table, record, old}. Only
-- for tables listed in realtime_tables (in shared mode: by this tenant).
CREATE FUNCTION realtime_table_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    listed boolean;
    body jsonb;
BEGIN
    EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %I.realtime_tables WHERE table_name = $1)',
                              TG_TABLE_SCHEMA) INTO listed USING TG_TABLE_NAME;
    IF NOT listed THEN
        RETURN NULL;
    END IF;
    body := pg_catalog.jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME,
        'record', CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END,
        'old', CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END);
    IF pg_catalog.octet_length(body::text) > 60000 THEN
        body := pg_catalog.jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'truncated', true);
    END IF;
    EXECUTE pg_catalog.format('INSERT INTO %I.realtime_events (channel, payload) VALUES ($1, $2)',
                              TG_TABLE_SCHEMA) USING 'table.' || TG_TABLE_NAME, body;
    RETURN NULL;
END $$;
