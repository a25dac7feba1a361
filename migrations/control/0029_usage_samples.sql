-- The console's usage pictures (docs/console.md): each live tenant's disk bytes, open
-- connections and API calls of the last minute, sampled by the quota round every
-- --usage-sample-interval and kept for --usage-retention (older rows are pruned by
-- the same round).
CREATE TABLE berqenas.usage_samples (
    tenant_id   uuid NOT NULL REFERENCES berqenas.tenants (id) ON DELETE CASCADE,
    sampled_at  timestamptz NOT NULL,
    disk_bytes  bigint NOT NULL,
    connections integer NOT NULL,
    api_calls   integer NOT NULL,
    PRIMARY KEY (tenant_id, sampled_at)
);
-- The round asks when the last sample was taken and prunes by age.
CREATE INDEX usage_samples_sampled_at_idx ON berqenas.usage_samples (sampled_at);
