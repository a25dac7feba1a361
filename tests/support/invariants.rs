//! What must hold of a cluster once every operation is settled, whatever was killed
//! where: no operation still running; no tenant role, schema or database without its
//! registry row, and none of a live tenant missing; no throw-away role or scratch
//! database left; every active tenant logs in with the credentials the API hands out.
#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::Value;

const ROLES: [&str; 6] = [
    "owner",
    "user",
    "tenant_admin",
    "application_manager",
    "developer",
    "auditor",
];

/// A tenant as the registry holds it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub name: String,
    pub status: String,
    pub isolation: String,
    pub users: Vec<String>,
}

fn stem(name: &str) -> String {
    format!("tenant_{}", name.replace('-', "_"))
}

pub async fn registry(pg: &tokio_postgres::Client) -> Vec<Registered> {
    pg.query(
        "SELECT t.name, t.status, t.isolation,
                coalesce(array_agg(u.db_user) FILTER (WHERE u.db_user IS NOT NULL), '{}')
           FROM berqenas.tenants t LEFT JOIN berqenas.tenant_users u ON u.tenant_id = t.id
          GROUP BY t.id ORDER BY t.name",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| Registered {
        name: r.get(0),
        status: r.get(1),
        isolation: r.get(2),
        users: r.get(3),
    })
    .collect()
}

/// Every violation found (empty: all holds). `only`: tenants whose names start with
/// this (tests sharing a cluster check their own).
pub async fn violations(pg: &tokio_postgres::Client, only: &str) -> Vec<String> {
    let mut out = Vec::new();
    let running: Vec<String> = pg
        .query(
            "SELECT kind || ' ' || tenant_name FROM berqenas.operations
              WHERE state = 'running' AND tenant_name LIKE $1 || '%'",
            &[&only],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for r in running {
        out.push(format!("operation still running: {r}"));
    }
    let tenants = registry(pg).await;
    // Tenants on another server (docs/servers.md) have nothing in this cluster.
    let elsewhere: Vec<String> = pg
        .query(
            "SELECT name FROM berqenas.tenants WHERE server <> 'default'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mine: Vec<&Registered> = tenants
        .iter()
        .filter(|t| t.name.starts_with(only) && !elsewhere.contains(&t.name))
        .collect();
    let prefix = stem(only);
    let like = format!("{}%", prefix.replace('_', "\\_"));
    // Roles.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for t in &mine {
        if matches!(t.status.as_str(), "purged" | "failed") {
            continue;
        }
        for r in ROLES {
            expected.insert(format!("{}_{r}", stem(&t.name)));
        }
        expected.extend(t.users.iter().cloned());
    }
    let existing: BTreeSet<String> = pg
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1",
            &[&like],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for r in existing.difference(&expected) {
        out.push(format!("role without a registry row: {r}"));
    }
    for r in expected.difference(&existing) {
        out.push(format!("role of a live tenant missing: {r}"));
    }
    // Schemas of schema-mode tenants, databases of database-mode tenants.
    let live = |mode: &str| -> BTreeSet<String> {
        mine.iter()
            .filter(|t| t.isolation == mode && !matches!(t.status.as_str(), "purged" | "failed"))
            .map(|t| stem(&t.name))
            .collect()
    };
    let schemas: BTreeSet<String> = pg
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
            &[&like],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for s in schemas.difference(&live("schema")) {
        out.push(format!("schema without a live schema-mode tenant: {s}"));
    }
    for s in live("schema").difference(&schemas) {
        out.push(format!("schema of a live tenant missing: {s}"));
    }
    let databases: BTreeSet<String> = pg
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
            &[&like],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for d in databases.difference(&live("database")) {
        out.push(format!("database without a live database-mode tenant: {d}"));
    }
    for d in live("database").difference(&databases) {
        out.push(format!("database of a live tenant missing: {d}"));
    }
    out
}

/// Throw-away roles, scratch databases and set-aside schemas left in the whole
/// cluster (for a test that has the cluster to itself, once nothing runs).
pub async fn scratch_left(pg: &tokio_postgres::Client) -> Vec<String> {
    pg.query(
        "SELECT rolname::text FROM pg_roles WHERE rolname ~ '^berqenas_(restore|migrate|verify)_[0-9a-f]{12}$'
         UNION ALL SELECT datname::text FROM pg_database WHERE datname ~ '^berqenas_(restore|verify)_[0-9a-f]{12}$'
         UNION ALL SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^tenant_.*_[rd][0-9a-f]{8}$'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| format!("scratch object left: {}", r.get::<_, String>(0)))
    .collect()
}

/// Connects with the credentials the API hands out for a tenant and runs a query.
pub async fn logs_in(credentials: &Value) -> Result<(), String> {
    let dsn = credentials["dsn"].as_str().ok_or("no dsn")?;
    let (c, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(d) => d.message().to_string(),
            None => e.to_string(),
        })?;
    tokio::spawn(conn);
    c.simple_query("SELECT count(*) FROM applications")
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
