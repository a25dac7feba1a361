//! A shared-mode tenant moved from one server's pool into another's (docs/moves.md
//! "Out of and into shared mode"): the copy passes `tenant.move.shared` runs when
//! both sides are pools. Its rows leave the source pool's tables and land in the
//! target pool's tables of the same names, `tenant_id` kept, in the same two passes
//! as a move out of or into a pool (`moving_catch_up`): the bulk while it writes,
//! then what changed since with its writes blocked. Both pools are at the tenant's
//! template version (the request's check), so their tables are the same; should the
//! target lack a table or column the source has, the copy fails before it begins
//! (and the move is undone), rather than leave rows behind.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use uuid::Uuid;

use super::moving::{connect_db, Error, Result};
use super::moving_catch_up::{Pool, Table};
use super::moving_shared::{
    caught_up, first_pass, forward_sequences, ident, one_database, publish_tables, tenant_literal,
    Ends,
};
use crate::isolation::pool_catalog::pool_tables;
use crate::isolation::shared::{POOL_OWNER, POOL_SCHEMA};
use crate::platform::Platform;

/// Both pools' databases and each table of the target pool the source pool has too,
/// parents first. `from`, `to`: the two servers' views.
async fn between(from: &Platform, to: &Platform, tenant: Uuid) -> Result<Ends> {
    let (from_db, to_db) = (&from.endpoint.database, &to.endpoint.database);
    // Two servers registered on one database would be one pool: clearing the target's
    // rows of the tenant would clear the source's.
    if one_database(from, from_db, to, to_db) {
        return Err(Error::Tool {
            program: "move".into(),
            detail: "the two servers' pools are one database".into(),
        });
    }
    let (src, dst) = (
        connect_db(from, from_db).await?,
        connect_db(to, to_db).await?,
    );
    let theirs: BTreeMap<String, Vec<String>> = pool_tables(&src)
        .await?
        .into_iter()
        .map(|t| (t.name, t.columns))
        .collect();
    let ours = pool_tables(&dst).await?;
    // Rows the target pool has no table or column for would be left behind: refused,
    // before anything is copied (the two pools at one version have the same tables).
    let lacking: Vec<String> = theirs
        .iter()
        .flat_map(
            |(name, columns)| match ours.iter().find(|t| &t.name == name) {
                None => vec![name.clone()],
                Some(t) => columns
                    .iter()
                    .filter(|c| !t.columns.contains(c))
                    .map(|c| format!("{name}.{c}"))
                    .collect(),
            },
        )
        .collect();
    if !lacking.is_empty() {
        return Err(Error::Tool {
            program: "move".into(),
            detail: format!(
                "the target server's pool has no room for {}",
                lacking.join(", ")
            ),
        });
    }
    let pool = ident(POOL_SCHEMA)?;
    let mut tables = Vec::new();
    for t in ours {
        let Some(have) = theirs.get(&t.name) else {
            continue;
        };
        let qualified = format!("{pool}.{}", ident(&t.name)?);
        tables.push(Table {
            columns: t
                .columns
                .iter()
                .filter(|c| have.contains(c))
                .map(|c| ident(c))
                .collect::<Result<Vec<_>>>()?,
            source: qualified.clone(),
            target: qualified,
            name: t.name,
            tenant: tenant_literal(tenant),
            pool: Pool::Both,
        });
    }
    Ok(Ends {
        src,
        dst,
        same: false,
        tables,
    })
}

/// The first pass, the tenant still writing: its rows of every pool table into the
/// target pool's, in place of any of its id there (a pass run again starts over;
/// before the move there were none). One transaction on the target, triggers off.
/// Returns what `moving_shared::precopy_rows` returns.
pub async fn precopy(from: &Platform, to: &Platform, tenant: Uuid) -> Result<Value> {
    let started = Instant::now();
    first_pass(between(from, to, tenant).await?, started).await
}

/// The second pass, the tenant's writes blocked: what changed since [`precopy`]
/// (`since`; all of it again without), the target pool's sequences past the
/// source's (never back), and the realtime trigger on each pool table the tenant
/// publishes there. One transaction on the target pool's database, triggers off.
pub async fn copy(
    from: &Platform,
    to: &Platform,
    tenant: Uuid,
    since: Option<i64>,
) -> Result<Value> {
    let started = Instant::now();
    let mut ends = between(from, to, tenant).await?;
    let tx = ends.dst.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await?;
    let rows = caught_up(&ends.src, &tx, ends.same, &ends.tables, since).await?;
    let sequences = forward_sequences(&ends.src, POOL_SCHEMA, &tx).await?;
    let (pool, owner) = (ident(POOL_SCHEMA)?, ident(POOL_OWNER)?);
    let published = publish_tables(&ends.src, &tx, tenant, (&owner, &pool)).await?;
    tx.commit().await?;
    Ok(json!({
        "rows": rows, "sequences": sequences, "realtime_tables": published,
        "ms": started.elapsed().as_millis() as u64,
    }))
}
