//! What tenants on servers other than `default` use, measured where they live: one
//! statement per server and round (never one per tenant), for the disk round
//! ([`sizes`]) and the look at connections ([`connections`]).
//!
//! Sizes are those of `disk::measure` on `default`: a schema's tables, materialized
//! views and sequences (`pg_total_relation_size`), a database's size less that of the
//! server's template database, or (shared mode) a tenant's share of that server's
//! pool, plus (schema and shared modes) the temporary tables its logins' sessions hold
//! there, as on `default`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::platform::Platform;
use crate::problem::{Kind, Problem};
use crate::store::breaches::ConnectionUse;
use crate::store::tenants::{self as registry, Placed};
use crate::tenant::service::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Per tenant, its database's size (less the template database's) or its schema's
/// relations' (`pg::schema_relations`).
static SIZES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.id, (CASE WHEN s.db THEN
               greatest(pg_database_size(d.oid) - coalesce(
                   (SELECT pg_database_size(x.oid) FROM pg_database x WHERE x.datname = $4), 0), 0)
             ELSE coalesce((SELECT sum(pg_total_relation_size(r.oid)) FROM {} r
                             WHERE r.schema = n.oid), 0)
           END)::bigint
      FROM unnest($1::uuid[], $2::bool[], $3::text[]) AS s(id, db, name)
      LEFT JOIN pg_database d ON s.db AND d.datname = s.name
      LEFT JOIN pg_namespace n ON NOT s.db AND n.nspname = s.name
     WHERE d.oid IS NOT NULL OR n.oid IS NOT NULL",
        crate::pg::schema_relations::SCHEMA_RELATIONS
    )
});

/// Temporary relations owned by these logins, in the server's database: where a
/// schema-mode tenant's sessions make them (a database-mode tenant's are in its
/// database's size already).
static TEMP_RELATIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.owner, t.oid FROM {} t WHERE t.owner = ANY($1)",
        crate::pg::temp_relations::TEMP_RELATIONS.as_str()
    )
});

/// The platform as seen from `server` (opened on first use).
pub async fn view(p: &Platform, server: &str) -> Result<Platform> {
    p.view_of(server)
        .await
        .map_err(|e| unavailable(server, &e.to_string()))
}

fn unavailable(server: &str, reason: &str) -> Error {
    Error::Rejected(Problem::new(
        Kind::Unavailable,
        "server_unavailable",
        format!("server {server:?} cannot be reached: {reason}"),
    ))
}

/// The live placed tenants (or just `only`), by server.
async fn by_server(p: &Platform, only: Option<Uuid>) -> Result<BTreeMap<String, Vec<Placed>>> {
    let mut out: BTreeMap<String, Vec<Placed>> = BTreeMap::new();
    for t in registry::live_placed(&p.pool.get().await?, only).await? {
        out.entry(t.server.clone()).or_default().push(t);
    }
    Ok(out)
}

/// Sizes of the live tenants on other servers (or just `only`): (tenant, bytes). A
/// server that cannot be measured is logged and left out of a round (measuring just
/// `only`, the error is returned).
pub async fn sizes(p: &Platform, only: Option<Uuid>) -> Result<Vec<(Uuid, i64)>> {
    let mut sizes = Vec::new();
    for (server, tenants) in by_server(p, only).await? {
        match sizes_on(p, &server, &tenants).await {
            Ok(s) => sizes.extend(s),
            Err(e) if only.is_none() => {
                tracing::warn!(server = %server, error = %e, "measuring the tenants of a server failed; retrying next round");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(sizes)
}

async fn sizes_on(p: &Platform, server: &str, tenants: &[Placed]) -> Result<Vec<(Uuid, i64)>> {
    let view = view(p, server).await?;
    let template = crate::isolation::database::template_db(&view.endpoint.database)
        .as_str()
        .to_string();
    // A shared-mode tenant's size is its share of the pool's, measured below.
    let own: Vec<&Placed> = tenants.iter().filter(|t| !t.shared).collect();
    let ids: Vec<Uuid> = own.iter().map(|t| t.id).collect();
    let db: Vec<bool> = own.iter().map(|t| t.database_mode).collect();
    let names: Vec<&str> = own.iter().map(|t| t.object.as_str()).collect();
    let mut client = view.pool.get().await?;
    let mut tx = client.transaction().await?;
    tx.batch_execute(crate::quota::disk::ROUND_TIMEOUTS).await?;
    let owner: std::collections::HashMap<&str, Uuid> = tenants
        .iter()
        .filter(|t| !t.database_mode)
        .flat_map(|t| t.logins.iter().map(move |l| (l.as_str(), t.id)))
        .collect();
    let logins: Vec<&str> = owner.keys().copied().collect();
    // Both statements pipelined: one round trip.
    let (sizes_params, temp_params): (&[&(dyn ToSql + Sync)], &[&(dyn ToSql + Sync)]) =
        (&[&ids, &db, &names, &template], &[&logins]);
    let (rows, temp_rows) = tokio::try_join!(
        tx.query(SIZES.as_str(), sizes_params),
        tx.query(TEMP_RELATIONS.as_str(), temp_params),
    )?;
    let mut sizes: Vec<(Uuid, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let relations = temp_rows
        .iter()
        .filter_map(|r| Some((*owner.get(r.get::<_, &str>(0))?, r.get::<_, u32>(1))))
        .collect();
    let temp = crate::quota::disk::size_temp(&mut tx, relations).await?;
    tx.commit().await?;
    if tenants.iter().any(|t| t.shared) {
        let shares = crate::quota::disk::shared_shares(&mut client).await?;
        sizes.extend(tenants.iter().filter(|t| t.shared).map(|t| {
            (
                t.id,
                shares.get(&t.id).copied().unwrap_or(0.0).round() as i64,
            )
        }));
    }
    for (id, bytes) in sizes.iter_mut() {
        *bytes += temp.get(id).copied().unwrap_or(0);
    }
    Ok(sizes)
}

/// Connection use of the live tenants on other servers that have a session there or
/// are marked exceeded, as `store::breaches::connection_use` answers for `default`.
pub async fn connections(p: &Platform) -> Result<Vec<ConnectionUse>> {
    let mut out = Vec::new();
    for (server, tenants) in by_server(p, None).await? {
        match sessions_on(p, &server, &tenants).await {
            Ok(per_login) => {
                for t in &tenants {
                    let counts: Vec<i64> = t
                        .logins
                        .iter()
                        .map(|l| per_login.get(l).copied().unwrap_or(0))
                        .collect();
                    let total: i64 = counts.iter().sum();
                    let busiest = counts.iter().copied().max().unwrap_or(0);
                    if total > 0 || t.connections_exceeded {
                        out.push(ConnectionUse {
                            tenant: t.id,
                            busiest,
                            total,
                            database: t.database_mode,
                            marked: t.connections_exceeded,
                        });
                    }
                }
            }
            Err(e) => {
                tracing::warn!(server = %server, error = %e, "looking at the sessions of a server failed; retrying next round");
            }
        }
    }
    Ok(out)
}

/// Open sessions of each tenant login on `server` (one statement).
pub async fn sessions_on(
    p: &Platform,
    server: &str,
    tenants: &[Placed],
) -> Result<std::collections::HashMap<String, i64>> {
    let view = view(p, server).await?;
    let logins: Vec<&str> = tenants
        .iter()
        .flat_map(|t| t.logins.iter().map(|l| l.as_str()))
        .collect();
    let rows = view
        .pool
        .get()
        .await?
        .query(
            "SELECT usename::text, count(*) FROM pg_stat_activity
              WHERE usename = ANY($1) AND backend_type = 'client backend' GROUP BY usename",
            &[&logins],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Open sessions of every live placed tenant, for the metrics: (tenant's name,
/// sessions).
pub async fn sessions(p: &Platform) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for (server, tenants) in by_server(p, None).await? {
        match sessions_on(p, &server, &tenants).await {
            Ok(per_login) => out.extend(tenants.iter().map(|t| {
                let n = t
                    .logins
                    .iter()
                    .map(|l| per_login.get(l).copied().unwrap_or(0))
                    .sum();
                (t.name.clone(), n)
            })),
            Err(e) => {
                tracing::warn!(server = %server, error = %e, "counting the sessions of a server failed")
            }
        }
    }
    Ok(out)
}

/// Open sessions of the tenant's logins (its own and its users') on its server.
pub async fn open_sessions(p: &Platform, t: &crate::tenant::Tenant) -> Result<i64> {
    let logins = crate::tenant::access::login_roles(&p.pool.get().await?, t).await?;
    let view = view(p, &t.server).await?;
    let n = view
        .pool
        .get()
        .await?
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1)",
            &[&logins],
        )
        .await?
        .get(0);
    Ok(n)
}
