//! The tenants whose login roles have sessions now, found from the sessions.

/// Each role with a session now that is a tenant's login role or one of its users'
/// (`id`: the tenant's, `role`, `n`: the role's sessions), for a `FROM`. Found from
/// the few session owners, each looked up by the index on `tenants.login_role` or on
/// `tenant_users.db_user` (the name's collation is the columns', or the index could
/// not be used), not by joining every tenant's roles to the sessions. That join read
/// the whole registry: every second in the watchdog (10 ms a pass at 10,000 tenants,
/// 1 ms this way), in each `/metrics` scrape (27 to 39 ms, 18 to 28 ms this way) and
/// in the quota round's look at connections (34 to 43 ms, 2.6 to 3.9 ms this way;
/// 10,231 tenants with 66 sessions open, `psql`). A role that is both a tenant's
/// login and one of its users' counts once for it.
pub const TENANT_SESSIONS: &str = "(SELECT l.id, s.role, s.n
       FROM (SELECT usename::text COLLATE \"default\" AS role, count(*) AS n
               FROM pg_catalog.pg_stat_activity WHERE usename IS NOT NULL GROUP BY usename) s
      CROSS JOIN LATERAL (
            SELECT t.id FROM berqenas.tenants t WHERE t.login_role = s.role
            UNION
            SELECT u.tenant_id FROM berqenas.tenant_users u WHERE u.db_user = s.role) l)";
