//! The template tables: `template_migrations` (each tenant-template migration's
//! checksum, recorded the first time it is seen) and `template_database` (the version
//! the database-mode template database and the shared pool were built at). The caller
//! owns the transaction.

use deadpool_postgres::GenericClient;

use super::Result;

/// Every recorded template migration: (version, name), in order.
pub async fn recorded(c: &impl GenericClient) -> Result<Vec<(i32, String)>> {
    Ok(c.query(
        "SELECT version, name FROM berqenas.template_migrations ORDER BY version",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Records a migration's checksum unless one is recorded; returns the recorded one.
pub async fn record(
    c: &impl GenericClient,
    version: i32,
    name: &str,
    checksum: &str,
) -> Result<String> {
    Ok(c.query_one(
        "INSERT INTO berqenas.template_migrations (version, name, checksum) VALUES ($1, $2, $3)
             ON CONFLICT (version) DO UPDATE SET version = EXCLUDED.version
             RETURNING checksum",
        &[&version, &name, &checksum],
    )
    .await?
    .get(0))
}

/// What a built template was built at: (version, checksum).
pub async fn built(c: &impl GenericClient, name: &str) -> Result<Option<(i32, String)>> {
    Ok(c.query_opt(
        "SELECT version, checksum FROM berqenas.template_database WHERE name = $1",
        &[&name],
    )
    .await?
    .map(|r| (r.get(0), r.get(1))))
}

/// Like [`built`]'s version, holding the row until the transaction ends (`lock`).
pub async fn version(c: &impl GenericClient, name: &str, lock: bool) -> Result<Option<i32>> {
    let sql = if lock {
        "SELECT version FROM berqenas.template_database WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT version FROM berqenas.template_database WHERE name = $1"
    };
    Ok(c.query_opt(sql, &[&name]).await?.map(|r| r.get(0)))
}

pub async fn set_built(
    c: &impl GenericClient,
    name: &str,
    version: i32,
    checksum: &str,
) -> Result<()> {
    c.execute(
        "INSERT INTO berqenas.template_database (name, version, checksum) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET version = $2, checksum = $3",
        &[&name, &version, &checksum],
    )
    .await?;
    Ok(())
}
