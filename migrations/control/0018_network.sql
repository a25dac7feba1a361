-- Network access per tenant (docs/network.md): a VPN subnet from the configured pool,
-- firewall allow rules, WireGuard peers, and the generation counter that tells the
-- renderer of pg_hba.conf and the VPN files whether the registry changed since it
-- last rendered.

-- PostgreSQL decides which subnet is free: two overlapping subnets cannot both be
-- committed, whatever the concurrency. NULLs (VPN off, or purged) never conflict.
ALTER TABLE berqenas.tenants
    ADD COLUMN vpn_subnet cidr,
    ADD COLUMN vpn_slot integer CHECK (vpn_slot >= 0),
    ADD CONSTRAINT tenants_vpn_subnet_excl EXCLUDE USING gist (vpn_subnet inet_ops WITH &&),
    ADD CONSTRAINT tenants_vpn_slot_with_subnet CHECK ((vpn_slot IS NULL) = (vpn_subnet IS NULL));

CREATE TABLE berqenas.firewall_rules (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    cidr        cidr NOT NULL,
    service     text NOT NULL CHECK (service IN ('postgres', 'api', 'all')),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, cidr, service)
);

CREATE TABLE berqenas.vpn_peers (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    public_key  text NOT NULL,
    address     inet NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

-- One row: `generation` moves with every committed change that alters what is
-- rendered (each renderer remembers the generation its last render read).
CREATE TABLE berqenas.network_state (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    generation bigint NOT NULL DEFAULT 1
);
INSERT INTO berqenas.network_state DEFAULT VALUES;
