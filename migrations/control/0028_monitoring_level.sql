-- Per-tenant monitoring (docs/monitoring.md): which alert rules a tenant gets.
-- basic: high-error-rate, db-connection-limit; standard: those and backup-failed;
-- enterprise: those and sla-breach (seed 001). A plan sets the level of its tenants;
-- a tenant may override it (NULL: its plan's).
ALTER TABLE berqenas.plans
    ADD COLUMN monitoring_level text NOT NULL DEFAULT 'standard'
        CHECK (monitoring_level IN ('basic', 'standard', 'enterprise'));
UPDATE berqenas.plans SET monitoring_level = CASE name
    WHEN 'free' THEN 'basic'
    WHEN 'enterprise' THEN 'enterprise'
    WHEN 'custom' THEN 'enterprise'
    ELSE 'standard' END;

ALTER TABLE berqenas.tenants
    ADD COLUMN monitoring_level text
        CHECK (monitoring_level IN ('basic', 'standard', 'enterprise'));
