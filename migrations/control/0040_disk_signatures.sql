-- A schema-mode tenant's size as the disk round last measured it, without its
-- temporary tables, and the signature of its relations it was measured at
-- (src/quota/disk/unchanged.rs). A process that starts, or an instance that takes the
-- round over, measures only the schemas whose signature moved since, not every one
-- (9 s at 10,000 tenants, beside whatever else a start brings, such as a migration).
ALTER TABLE berqenas.disk_usage
    ADD COLUMN schema_bytes bigint,
    ADD COLUMN schema_signature uuid;
