//! Least privilege, enforced and checked. At start berqenas takes from PUBLIC what
//! PostgreSQL gives it by default (CONNECT and TEMP on every database, CREATE on
//! `public`, the functions that create and write large objects); then, at start and
//! after every provisioning, it checks that no tenant role holds an elevated attribute
//! or a `pg_*` membership and that none can reach template1. A violation is an error,
//! never a warning. [`close_databases`] runs again in every worker round.

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::{predefined_roles, Ident};

#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    #[error("least-privilege check failed: {}", .0.join("; "))]
    Violations(Vec<String>),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// Takes PUBLIC's default privileges away. Statements the connected role may not run
/// (template1 belongs to the bootstrap superuser) are skipped here; the check that
/// follows then fails with the exact privilege that is left.
///
/// Only what is still granted is revoked, so a restart rewrites no catalog row.
/// Servers of one control database take turns (an advisory lock); servers of two
/// control databases in one cluster cannot, because advisory locks belong to a
/// database while template1's row is shared by the cluster, so a collision there
/// ("tuple concurrently updated") is retried.
pub async fn secure_defaults(
    client: &mut deadpool_postgres::Client,
    database: &Ident,
) -> Result<(), tokio_postgres::Error> {
    let mut attempt = 0;
    loop {
        match secure_defaults_once(client, database).await {
            Err(e) if attempt < COLLISION_RETRIES && is_catalog_collision(&e) => {
                attempt += 1;
                tracing::debug!(attempt, error = %e, "catalog row changed concurrently; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

const COLLISION_RETRIES: u64 = 8;

/// Runs `sql` in a transaction of its own on `c`, and again (a few times, briefly
/// apart) when another session changed one of the catalog rows it writes at the same
/// moment. A freshly cloned database is one: PUBLIC may reach it until its
/// configuration revokes that, so the role check's [`close_databases`] may be
/// revoking on the same row.
pub async fn transaction_retrying(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<(), tokio_postgres::Error> {
    let mut attempt = 0;
    loop {
        match c.batch_execute(&format!("BEGIN;\n{sql}\nCOMMIT;")).await {
            Err(e) if attempt < COLLISION_RETRIES && is_catalog_collision(&e) => {
                c.batch_execute("ROLLBACK").await?;
                attempt += 1;
                tracing::debug!(attempt, error = %e, "catalog row changed concurrently; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// PostgreSQL reports two concurrent GRANT/REVOKE on one catalog row as an internal
/// error rather than a serialization failure.
fn is_catalog_collision(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        d.code() == &SqlState::INTERNAL_ERROR && d.message().starts_with("tuple concurrently")
    })
}

async fn secure_defaults_once(
    client: &mut deadpool_postgres::Client,
    database: &Ident,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    let hub = connect_role();
    tx.batch_execute(&super::ensure_nologin_role_sql(&hub))
        .await?;
    let db = database.as_str();
    let mut steps = vec![
        (
            public_has_database(db),
            format!("REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC"),
        ),
        (
            public_has_database("template1"),
            "REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC".to_string(),
        ),
        (
            "SELECT has_schema_privilege('public', 'public', 'CREATE')".to_string(),
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
        ),
    ];
    steps.extend(advisory_lock_steps());
    steps.extend(large_object_steps());
    // Each step: a query telling whether it is still needed, then the statement.
    for (needed, sql) in steps {
        if !tx.query_one(&needed, &[]).await?.get::<_, bool>(0) {
            continue;
        }
        tx.batch_execute("SAVEPOINT hardening").await?;
        match tx.batch_execute(&sql).await {
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                tracing::warn!(statement = %sql, "not permitted to tighten this default");
                tx.batch_execute("ROLLBACK TO SAVEPOINT hardening").await?;
            }
            other => other?,
        }
    }
    // After the revokes: until then the hub role's CONNECT may come from PUBLIC.
    let temp = temp_role();
    tx.batch_execute(&super::ensure_nologin_role_sql(&temp))
        .await?;
    let (hub_lacks, hub_has_temp, temp_lacks): (bool, bool, bool) = {
        let r = tx
            .query_one(
                "SELECT NOT has_database_privilege($1, $3, 'CONNECT'),
                        EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
                                 WHERE d.datname = $3 AND a.grantee = $1::regrole AND a.privilege_type = 'TEMPORARY'),
                        NOT has_database_privilege($2, $3, 'TEMPORARY')",
                &[&hub.as_str(), &temp.as_str(), &db],
            )
            .await?;
        (r.get(0), r.get(1), r.get(2))
    };
    if hub_lacks {
        tx.batch_execute(&format!("GRANT CONNECT ON DATABASE {database} TO {hub}"))
            .await?;
    }
    if temp_lacks {
        tx.batch_execute(&format!("GRANT TEMPORARY ON DATABASE {database} TO {temp}"))
            .await?;
    }
    if hub_has_temp {
        // Releases before TEMP had a role of its own: every tenant role that reached
        // TEMP through the hub gets the TEMP role (what a disk block takes away).
        tx.batch_execute(&format!(
            "REVOKE TEMPORARY ON DATABASE {database} FROM {hub};\n\
             DO $berqenas$ DECLARE r record; BEGIN\n\
               FOR r IN SELECT m.rolname FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member\n\
                         WHERE am.roleid = {hub_lit}::regrole AND NOT pg_has_role(m.oid, {temp_lit}::regrole, 'MEMBER') LOOP\n\
                 EXECUTE format('GRANT %I TO %I', {temp_lit}, r.rolname);\n\
               END LOOP;\n\
             END $berqenas$;",
            hub_lit = super::Literal(hub.as_str()),
            temp_lit = super::Literal(temp.as_str()),
        ))
        .await?;
    }
    tx.commit().await
}

/// The functions that create or write large objects. A large object belongs to no
/// schema, so neither a schema's privileges nor a disk block can stop one; tenants
/// (PUBLIC) get none of them, in every database they reach.
pub const LARGE_OBJECT_WRITERS: &[&str] = &[
    "lo_creat(integer)",
    "lo_create(oid)",
    "lo_from_bytea(oid, bytea)",
    "lo_import(text)",
    "lo_import(text, oid)",
    "lowrite(integer, bytea)",
    "lo_put(oid, bigint, bytea)",
    "lo_truncate(integer, integer)",
    "lo_truncate64(integer, bigint)",
];

fn large_object_steps() -> Vec<(String, String)> {
    LARGE_OBJECT_WRITERS
        .iter()
        .map(|f| {
            let f = format!("pg_catalog.{f}");
            let lit = super::Literal(&f);
            (
                format!("SELECT has_function_privilege('public', {lit}, 'EXECUTE')"),
                format!("REVOKE EXECUTE ON FUNCTION {f} FROM PUBLIC"),
            )
        })
        .collect()
}

/// What a tenant's database (and the template it is cloned from) has had taken from
/// PUBLIC: raised when a release takes more (see `tenants.hardening_level`).
pub const DATABASE_LEVEL: i32 = 1;

/// The statements that take the large-object writers from PUBLIC (a tenant's own
/// database, its template).
pub fn revoke_large_objects_sql() -> String {
    LARGE_OBJECT_WRITERS
        .iter()
        .map(|f| format!("REVOKE EXECUTE ON FUNCTION pg_catalog.{f} FROM PUBLIC;\n"))
        .collect()
}

/// Takes CONNECT and TEMPORARY from PUBLIC on every database that still grants them
/// (`postgres`, an operator's own, one created since): PUBLIC includes every tenant
/// role, and a database a tenant can reach is one where it can keep temporary tables
/// and large objects outside its quota, or talk to other tenants with NOTIFY. Tenants
/// reach only their own database (database mode) or the control database, through
/// the roles that hold CONNECT there. Returns the databases closed; those the
/// connected role may not change are returned as errors, named.
pub async fn close_databases(
    c: &impl GenericClient,
) -> Result<(Vec<String>, Vec<String>), tokio_postgres::Error> {
    let open: Vec<String> = c
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database
              WHERE datallowconn AND (has_database_privilege('public', oid, 'CONNECT')
                                      OR has_database_privilege('public', oid, 'TEMPORARY'))
              ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (mut closed, mut refused) = (Vec::new(), Vec::new());
    for db in open {
        let ident = Ident::new(db.clone()).expect("catalog names are identifiers");
        match c
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {ident} FROM PUBLIC"
            ))
            .await
        {
            Ok(()) => {
                tracing::warn!(database = %db, "took CONNECT and TEMPORARY on this database from PUBLIC: tenant roles must not reach it (grant CONNECT to the roles that need it)");
                closed.push(db);
            }
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => refused.push(db),
            // Another control plane of this cluster closed it at the same moment.
            Err(e) if is_catalog_collision(&e) => closed.push(db),
            Err(e) => return Err(e),
        }
    }
    Ok((closed, refused))
}

/// A query telling whether PUBLIC still has CONNECT or TEMPORARY on a database.
fn public_has_database(db: &str) -> String {
    let db = super::Literal(db);
    format!(
        "SELECT has_database_privilege('public', {db}, 'CONNECT')
                OR has_database_privilege('public', {db}, 'TEMPORARY')"
    )
}

/// Advisory locks belong to a database, and schema- and shared-mode tenants share the
/// control database: a tenant taking the control plane's lock keys could stall the
/// worker or another tenant's operations. So in the control database only the control
/// role may take advisory locks (releasing them stays open to all).
fn advisory_lock_steps() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for try_ in ["", "try_"] {
        for xact in ["", "xact_"] {
            for shared in ["", "_shared"] {
                for args in ["bigint", "integer, integer"] {
                    let f = format!("pg_catalog.pg_{try_}advisory_{xact}lock{shared}({args})");
                    let lit = super::Literal(&f);
                    out.push((
                        format!("SELECT has_function_privilege('public', {lit}, 'EXECUTE')"),
                        format!("REVOKE EXECUTE ON FUNCTION {f} FROM PUBLIC"),
                    ));
                    out.push((
                        format!(
                            "SELECT NOT has_function_privilege(current_user, {lit}, 'EXECUTE')"
                        ),
                        format!("GRANT EXECUTE ON FUNCTION {f} TO CURRENT_USER"),
                    ));
                }
            }
        }
    }
    out
}

/// The one role holding CONNECT and TEMP on the database schema-mode tenants live in;
/// every tenant role is a member. Granting on the database per tenant would rewrite
/// its one catalog row on every create, and concurrent creates would collide.
pub const CONNECT_ROLE: &str = "berqenas_tenant_connect";

pub fn connect_role() -> Ident {
    Ident::new(CONNECT_ROLE).expect("a valid identifier")
}

/// The one role holding TEMPORARY on that database; every schema- and shared-mode
/// tenant role is a member until a disk block takes the membership away.
pub const TEMP_ROLE: &str = "berqenas_tenant_temp";

pub fn temp_role() -> Ident {
    Ident::new(TEMP_ROLE).expect("a valid identifier")
}

/// Any constant; only servers tightening defaults at the same time contend for it.
const LOCK: i64 = 0x6265_7271_6861_7264; // "berqhard"

/// Checks the given tenant roles and the current database's PUBLIC privileges.
pub async fn check(c: &impl GenericClient, roles: &[String]) -> Result<(), HardeningError> {
    checked(&Cached(c), roles).await
}

/// [`check`] on a plain connection (a tenant database, outside the pool).
pub async fn check_client(
    c: &tokio_postgres::Client,
    roles: &[String],
) -> Result<(), HardeningError> {
    checked(c, roles).await
}

/// Up to this many roles (a create's six, a user's one) are checked by asking about
/// each; more (every tenant role, at start) by reading every `pg_*` membership.
const FEW_ROLES: usize = 64;

async fn checked(c: &impl Queries, roles: &[String]) -> Result<(), HardeningError> {
    if roles.len() > FEW_ROLES {
        return verdict(&c.rows(&CHECK_ALL, &[&roles]).await?);
    }
    let run = |predefined: predefined_roles::Predefined| async move {
        let names: &[String] = &predefined.names;
        let rows = c.rows(&CHECK_FEW, &[&roles, &names]).await?;
        let covered = rows
            .iter()
            .find_map(|r| r.get::<_, Option<i32>>(2))
            .is_some_and(|major| predefined.covers(major));
        Ok::<_, tokio_postgres::Error>((rows, covered))
    };
    let (rows, covered) = run(predefined_roles::known()).await?;
    if covered {
        return verdict(&rows);
    }
    // A version not read yet (or none, on the process's first check): read it, again.
    let predefined = predefined_roles::remember_read(&c.row(predefined_roles::READ).await?);
    verdict(&run(predefined).await?.0)
}

/// What the check runs its statements on: a pooled connection (statements prepared
/// once per connection) or a plain one.
trait Queries {
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>;
    async fn row(&self, sql: &str) -> Result<tokio_postgres::Row, tokio_postgres::Error>;
}

struct Cached<'a, C>(&'a C);

impl<C: GenericClient> Queries for Cached<'_, C> {
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let stmt = self.0.prepare_cached(sql).await?;
        self.0.query(&stmt, params).await
    }
    async fn row(&self, sql: &str) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        self.0.query_one(sql, &[]).await
    }
}

impl Queries for tokio_postgres::Client {
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.query(sql, params).await
    }
    async fn row(&self, sql: &str) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        self.query_one(sql, &[]).await
    }
}

static CHECK_ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH RECURSIVE {MEMBERSHIPS_OF_ALL}, {TEMPLATE1_CONNECT} {}",
        verdict_sql(
            "pg_roles r JOIN unnest($1::text[]) AS n(name) ON r.rolname = n.name",
            "(r.oid IN (SELECT role FROM template1_connect)
              OR EXISTS (SELECT 1 FROM template1_connect WHERE role = 0))",
            "m.roles",
            "LEFT JOIN (SELECT member, array_agg('member of ' || pg_role ORDER BY pg_role) AS roles
                          FROM member_of GROUP BY member) m ON m.member = r.oid",
        )
    )
});

// A create's few roles ($1): `pg_has_role` of each against each predefined role ($2,
// src/pg/predefined_roles.rs; a dozen or so). PostgreSQL walks up from the role once
// and keeps the answer for the next calls on it. Nothing here scans a catalog: the
// roles are found by name in the index, the predefined ones are given, so a create
// costs the same at 60,000 roles as at 60 whatever the statistics say. (Finding the
// predefined roles by `rolname LIKE 'pg\_%'` here scanned `pg_authid` whole, once
// or once per role, when the control database's statistics were stale: 0.76 and
// 2.24 ms per create at 5,400 roles.) A superuser is a member of every role: its
// `SUPERUSER` says it all. The last row (PUBLIC's) also says which major version the
// check ran on, a version whose names it must have been given.
static CHECK_FEW: LazyLock<String> = LazyLock::new(|| {
    verdict_sql(
        "pg_roles r",
        "has_database_privilege(r.oid, 'template1', 'CONNECT')",
        "CASE WHEN r.rolsuper THEN NULL ELSE ARRAY(
             SELECT 'member of ' || g FROM unnest($2::text[]) AS g
              WHERE pg_has_role(r.oid, to_regrole(g), 'MEMBER') ORDER BY g) END",
        "WHERE r.rolname = ANY($1::text[])",
    )
});

// Every tenant role (at start): every `pg_*` membership read down once, transitively,
// and hash-joined to the roles (0.25 s at 60,000 roles; walking up from each of them
// took seconds, and asking `pg_has_role` of each was quadratic: 400 s).
const MEMBERSHIPS_OF_ALL: &str = "member_of(member, pg_role) AS (
                 SELECT am.member, g.rolname::text FROM pg_auth_members am
                   JOIN pg_roles g ON g.oid = am.roleid WHERE g.rolname LIKE 'pg\\_%'
                 UNION
                 SELECT am.member, m.pg_role FROM pg_auth_members am
                   JOIN member_of m ON am.roleid = m.member)";

// Every tenant role (at start): who may connect to template1, read down once from its
// ACL (the owner, the grantees, and their members that inherit; 0 is PUBLIC), as
// `has_database_privilege` decides it. Asking that per role cost minutes at 60,000
// roles: each call caches the role's memberships as a catalog list, and PostgreSQL
// 15 looks a list up by walking every cached one.
const TEMPLATE1_CONNECT: &str = "template1_connect(role) AS (
                 SELECT a.grantee FROM pg_database d,
                        aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                  WHERE d.datname = 'template1' AND a.privilege_type = 'CONNECT'
                 UNION
                 SELECT d.datdba FROM pg_database d WHERE d.datname = 'template1'
                 UNION
                 SELECT am.member FROM pg_auth_members am
                   JOIN template1_connect c ON am.roleid = c.role
                   JOIN pg_roles m ON m.oid = am.member AND m.rolinherit)";

/// The check's select: of the roles `roles` names (`r`), with `template1_connect` the
/// expression telling whether role `r` may connect to template1, `memberships` the
/// `member of ...` array of `r` (or NULL), and `rest` the joins and the filter after
/// `FROM {roles}`. Its third column is NULL but in PUBLIC's row: the server's major
/// version.
fn verdict_sql(roles: &str, template1_connect: &str, memberships: &str, rest: &str) -> String {
    VERDICT_SQL
        .replace("{roles}", roles)
        .replace("{template1_connect}", template1_connect)
        .replace("{memberships}", memberships)
        .replace("{rest}", rest)
}

const VERDICT_SQL: &str = "
             SELECT r.rolname::text,
                    array_remove(ARRAY[
                        CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
                        CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                        CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
                        CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                        CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
                        CASE WHEN {template1_connect} THEN 'CONNECT on template1' END
                    ], NULL)
                    || coalesce({memberships}, '{}'),
                    NULL::int4
               FROM {roles}
               {rest}
             UNION ALL
             SELECT 'PUBLIC', array_remove(ARRAY[
                        CASE WHEN has_schema_privilege('public', 'public', 'CREATE') THEN 'CREATE on schema public' END,
                        CASE WHEN has_database_privilege('public', current_database(), 'CONNECT')
                             THEN 'CONNECT on database ' || current_database() END
                    ], NULL),
                    current_setting('server_version_num')::int4 / 10000";

fn verdict(rows: &[tokio_postgres::Row]) -> Result<(), HardeningError> {
    let violations: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let found: Vec<String> = r.get(1);
            (!found.is_empty())
                .then(|| format!("{} has {}", r.get::<_, String>(0), found.join(", ")))
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(HardeningError::Violations(violations))
    }
}
