-- A soft delete also revokes what outside roles (an application's pool role) hold in
-- the tenant's login roles, as a suspension does; a restore grants it back.
ALTER TABLE berqenas.offboarding
    ADD COLUMN disabled_memberships jsonb NOT NULL DEFAULT '[]';
