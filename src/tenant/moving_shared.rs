//! A shared-mode tenant moving into schema or database mode on its server, and back
//! (docs/moves.md "Out of and into shared mode"): the parts the `tenant.move.shared`
//! operation runs as steps. Logical replication cannot carry pool rows into a tenant
//! schema (a subscription maps tables by their qualified names, and PostgreSQL 15's
//! row filters on published updates may name only replica-identity columns), so the
//! rows are copied in two passes (`moving_catch_up`): the bulk while the tenant
//! writes, then what changed since with its writes blocked. Every part is
//! idempotent: a step runs again after a crash.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use uuid::Uuid;

use super::moving::{connect_db, database_on, Result};
use super::moving_catch_up::{self as catch_up, Table};
use super::{database_mode, Isolation, Slug};
use crate::isolation::pool_catalog::pool_tables;
use crate::isolation::shared::{self, POOL_LOGIN, POOL_OWNER, POOL_SCHEMA};
use crate::names::roles::DefaultRole;
use crate::pg::{hardening, Ident, Literal};
use crate::platform::Platform;

pub(super) fn ident(s: &str) -> Result<Ident> {
    Ok(Ident::new(s.to_string())?)
}

/// The target made as a create in `mode` makes it on `server` (`view`), the tenant's
/// roles there already: schema mode, its schema in the server's own database with the
/// template; database mode, the server's template database cloned and configured
/// (`tenant.create.database`; on a server other than `default`, the template database
/// made current first, as a placed create makes it).
pub async fn make_target(
    control: &Platform,
    view: &Platform,
    server: &str,
    slug: &Slug,
    mode: Isolation,
    connection_limit: i32,
) -> Result<()> {
    if mode == Isolation::Database {
        if !database_mode::database_exists(view, slug)
            .await
            .map_err(made)?
        {
            if server == crate::store::servers::DEFAULT {
                database_mode::clone(view, slug, connection_limit).await
            } else {
                database_mode::clone_current_on(control, view, server, slug, connection_limit).await
            }
            .map_err(made)?;
        }
        return database_mode::configure(view, slug).await.map_err(made);
    }
    if super::moving::data_exists(view, slug, Isolation::Schema).await? {
        return Ok(());
    }
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    tx.batch_execute(&crate::isolation::schema::schema_sql(
        slug,
        &view.template.full_sql(),
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Both ends of a copy out of the pool: the pool's database, the target's, whether
/// they are one, and each pool table as copied into the tenant's schema.
pub(super) struct Ends {
    pub src: tokio_postgres::Client,
    pub dst: tokio_postgres::Client,
    pub same: bool,
    pub tables: Vec<Table>,
}

/// Whether two databases, each on the server of its view, are one.
pub(super) fn one_database(a: &Platform, a_db: &str, b: &Platform, b_db: &str) -> bool {
    a.endpoint.host == b.endpoint.host && a.endpoint.port == b.endpoint.port && a_db == b_db
}

/// `pool`: the pool's server; `to`: the target's (the same one, or another).
async fn out_of_pool(
    pool: &Platform,
    to: &Platform,
    slug: &Slug,
    tenant: Uuid,
    mode: Isolation,
) -> Result<Ends> {
    let pool_db = pool.endpoint.database.clone();
    let target_db = super::moving::database_on(to, slug, mode);
    let same = one_database(pool, &pool_db, to, &target_db);
    let (src, dst) = (
        connect_db(pool, &pool_db).await?,
        connect_db(to, &target_db).await?,
    );
    let (pool, schema) = (ident(POOL_SCHEMA)?, slug.schema());
    let tables = pool_tables(&src)
        .await?
        .iter()
        .map(|t| {
            Ok(Table {
                name: t.name.clone(),
                source: format!("{pool}.{}", ident(&t.name)?),
                target: format!("{schema}.{}", ident(&t.name)?),
                columns: t.columns.iter().map(|c| ident(c)).collect::<Result<_>>()?,
                tenant: tenant_literal(tenant),
                pool: catch_up::Pool::Source,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Ends {
        src,
        dst,
        same,
        tables,
    })
}

pub(super) fn tenant_literal(tenant: Uuid) -> String {
    format!("{}::uuid", Literal(&tenant.to_string()))
}

/// The copy's first pass, out of the pool, while the tenant still writes: its rows of
/// every pool table into the target's tables of the same names (`tenant_id` dropped
/// on the way), with their ids, into tables emptied first (a pass run again starts
/// over). One transaction on the target, its triggers off (the rows are restored,
/// not published again). Returns rows per table, the milliseconds and `since`, what
/// [`copy_rows`] needs to copy only what changed after.
pub async fn precopy_rows(
    pool: &Platform,
    to: &Platform,
    slug: &Slug,
    tenant: Uuid,
    mode: Isolation,
) -> Result<Value> {
    let started = Instant::now();
    first_pass(out_of_pool(pool, to, slug, tenant, mode).await?, started).await
}

/// The first pass between `ends` (either way): `since` read on the source, then every
/// table refilled in one transaction on the target, its triggers off. Then, the
/// writes still on, what changed during that copy is caught up in a second
/// transaction, deletions included, and `since` read again before it: the pass with
/// the writes blocked has only what changed during this catch-up left to do, and
/// reads every key of a table only if the tenant deleted rows in that short while.
pub(super) async fn first_pass(mut ends: Ends, started: Instant) -> Result<Value> {
    let since = catch_up::since(&ends.src).await?;
    let tx = ends.dst.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await?;
    let counts = refill(&ends.src, &tx, ends.same, &ends.tables).await?;
    tx.commit().await?;
    let bulk_ms = started.elapsed().as_millis() as u64;
    let again = catch_up::since(&ends.src).await?;
    let tx = ends.dst.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await?;
    let caught = caught_up(&ends.src, &tx, ends.same, &ends.tables, Some(since)).await?;
    tx.commit().await?;
    Ok(json!({
        "rows": counts, "caught_up": caught, "since": again, "bulk_ms": bulk_ms,
        "ms": started.elapsed().as_millis() as u64,
    }))
}

/// Every table's rows of the tenant in the target replaced by the source's.
async fn refill(
    src: &tokio_postgres::Client,
    tx: &tokio_postgres::Transaction<'_>,
    same: bool,
    tables: &[Table],
) -> Result<serde_json::Map<String, Value>> {
    for t in tables.iter().rev() {
        tx.batch_execute(&t.clear_sql()).await?;
    }
    let mut counts = serde_json::Map::new();
    for t in tables {
        counts.insert(
            t.name.clone(),
            json!(catch_up::bulk(src, tx, same, t).await?),
        );
    }
    Ok(counts)
}

/// Every table caught up after the first pass (`since` its outcome's), or, with none,
/// refilled whole.
pub(super) async fn caught_up(
    src: &tokio_postgres::Client,
    tx: &tokio_postgres::Transaction<'_>,
    same: bool,
    tables: &[Table],
    since: Option<i64>,
) -> Result<Value> {
    let Some(since) = since else {
        return Ok(Value::Object(refill(src, tx, same, tables).await?));
    };
    let mut caught = serde_json::Map::new();
    for (n, t) in tables.iter().enumerate() {
        let c = catch_up::catch_up(src, tx, same, t, since, n).await?;
        caught.insert(
            t.name.clone(),
            serde_json::to_value(c).expect("plain fields"),
        );
    }
    Ok(Value::Object(caught))
}

/// The copy's second pass out of the pool, the tenant's writes blocked: what changed
/// since [`precopy_rows`] (`since`; all of it again without), then the sequences the
/// template shares with the pool (the realtime event ids go on from the pool's, never
/// back) and the realtime triggers of the tables the tenant publishes. One
/// transaction on the target, its triggers off. Returns what it did per table and the
/// milliseconds.
pub async fn copy_rows(
    pool: &Platform,
    to: &Platform,
    slug: &Slug,
    tenant: Uuid,
    mode: Isolation,
    since: Option<i64>,
) -> Result<Value> {
    let started = Instant::now();
    let mut ends = out_of_pool(pool, to, slug, tenant, mode).await?;
    let schema = slug.schema();
    let tx = ends.dst.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await?;
    let rows = caught_up(&ends.src, &tx, ends.same, &ends.tables, since).await?;
    let sequences = copy_sequences(&ends.src, &tx, &schema).await?;
    let owner = slug.owner_role();
    let published = publish_tables(&ends.src, &tx, tenant, (&owner, &schema)).await?;
    tx.commit().await?;
    Ok(json!({
        "rows": rows, "sequences": sequences, "realtime_tables": published,
        "ms": started.elapsed().as_millis() as u64,
    }))
}

/// The target's sequences set to the pool's sequences of the same names.
async fn copy_sequences(
    src: &tokio_postgres::Client,
    tx: &tokio_postgres::Transaction<'_>,
    schema: &Ident,
) -> Result<usize> {
    let names: Vec<String> = tx
        .query(
            "SELECT sequencename::text FROM pg_catalog.pg_sequences WHERE schemaname = $1",
            &[&schema.as_str()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut n = 0;
    for name in names {
        let Some(r) = src
            .query_opt(
                "SELECT last_value, NOT (last_value IS NULL) FROM pg_catalog.pg_sequences
                  WHERE schemaname = $1 AND sequencename = $2",
                &[&POOL_SCHEMA, &name],
            )
            .await?
        else {
            continue;
        };
        let Some(last) = r.get::<_, Option<i64>>(0) else {
            continue;
        };
        let qualified = format!("{schema}.{}", ident(&name)?);
        tx.execute(
            "SELECT pg_catalog.setval($1::text::regclass, $2, true)",
            &[&qualified, &last],
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

/// The realtime trigger (as the template's `realtime_table_changes` is attached when a
/// tenant publishes a table) on each table the tenant listed in the pool on `src`,
/// made in `schema` (the tenant's, or another server's pool) as `owner` (its owner
/// role, or that pool's). Returns how many.
pub(super) async fn publish_tables(
    src: &tokio_postgres::Client,
    tx: &tokio_postgres::Transaction<'_>,
    tenant: Uuid,
    (owner, schema): (&Ident, &Ident),
) -> Result<usize> {
    let listed = src
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = 'realtime_tables'",
            &[&POOL_SCHEMA],
        )
        .await?
        .is_some();
    if !listed {
        return Ok(0);
    }
    let tables: Vec<String> = src
        .query(
            &format!(
                "SELECT table_name FROM {}.realtime_tables WHERE tenant_id = $1",
                ident(POOL_SCHEMA)?
            ),
            &[&tenant],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.batch_execute(&publish_triggers_sql(owner, schema, &tables)?)
        .await?;
    Ok(tables.len())
}

/// The tenant's roles leave the pool (past the point of no return, logins still
/// off): memberships of the pool roles revoked, member rows deleted (the pool shows
/// them nothing from now on), every login role's `search_path` the tenant schema.
/// `users`: its users' login roles. On a server the tenant comes to from another's
/// pool (its roles copied there with their settings), the same, its pool roles
/// there only if it has a pool. One transaction; idempotent.
pub async fn leave_pool(
    view: &Platform,
    slug: &Slug,
    tenant: Uuid,
    users: &[String],
) -> Result<()> {
    let (schema, login) = (slug.schema(), slug.login_role());
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    let pooled = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&POOL_LOGIN],
        )
        .await?
        .is_some();
    let mut sql = String::new();
    if pooled {
        sql.push_str(&format!("REVOKE {} FROM {login};\n", ident(POOL_LOGIN)?));
        for role in DefaultRole::ALL {
            sql.push_str(&format!(
                "REVOKE {} FROM {};\n",
                shared::pool_role(role),
                slug.group_role(role)
            ));
        }
        sql.push_str(&format!(
            "SET LOCAL ROLE {};\nDELETE FROM {}.members WHERE tenant_id = {}::uuid;\nRESET ROLE;\n",
            ident(POOL_OWNER)?,
            ident(POOL_SCHEMA)?,
            Literal(&tenant.to_string())
        ));
    }
    sql.push_str(&format!("ALTER ROLE {login} SET search_path = {schema};\n"));
    for u in users {
        sql.push_str(&format!(
            "ALTER ROLE {} SET search_path = {schema};\n",
            ident(u)?
        ));
    }
    tx.batch_execute(&sql).await?;
    tx.commit().await?;
    Ok(())
}

/// The tenant's rows deleted from every pool table, children first, and its member
/// rows. Idempotent.
pub async fn purge_pool_rows(view: &Platform, tenant: Uuid) -> Result<()> {
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    let tables: Vec<String> = pool_tables(&*tx)
        .await?
        .into_iter()
        .rev()
        .map(|t| t.name)
        .collect();
    // Triggers off: a table the tenant published would publish the deletes into the
    // pool's events, as the pool's owner, who is no tenant.
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await?;
    tx.batch_execute(&shared::purge_rows_sql(&tables, &tenant.to_string()))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The tenant's rows still in the pool, all tables together (the retire step's
/// outcome; a test's check).
pub async fn pool_rows(view: &Platform, tenant: Uuid) -> Result<i64> {
    let c = view.pool.get().await?;
    let mut n = 0;
    for t in pool_tables(&**c).await? {
        let sql = format!(
            "SELECT count(*) FROM {}.{} WHERE tenant_id = $1",
            ident(POOL_SCHEMA)?,
            ident(&t.name)?
        );
        n += c.query_one(&sql, &[&tenant]).await?.get::<_, i64>(0);
    }
    Ok(n)
}

/// The columns of each table of `schema` (tables only, in column order).
async fn columns(
    c: &impl tokio_postgres::GenericClient,
    schema: &str,
) -> Result<BTreeMap<String, Vec<String>>> {
    let rows = c
        .query(
            "SELECT c.relname::text, a.attname::text
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname, a.attnum",
            &[&schema],
        )
        .await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

/// What the tenant's schema (in `mode`, on `view`'s server) has that the pool on
/// `pool`'s server has not: relations other than the pool's tables (`t`), columns of
/// those or of another type (`t.c type`), and any other object (`index t.i`,
/// `function f`, `trigger t.g`...; see `isolation::schema_objects`). Shared mode has no
/// room for them, and the source schema goes at `retire`: a move into it is refused
/// while any is there.
pub async fn extras(
    view: &Platform,
    pool: &Platform,
    slug: &Slug,
    mode: Isolation,
) -> Result<Vec<String>> {
    let database = database_on(view, slug, mode);
    let (tenant, pool) = tokio::join!(
        connect_db(view, &database),
        connect_db(pool, &pool.endpoint.database),
    );
    let (tenant, pool) = (tenant?, pool?);
    let schema = slug.schema();
    let missing = crate::isolation::schema_objects::missing_from(
        (&tenant, schema.as_str()),
        (&pool, POOL_SCHEMA),
    )
    .await?;
    // The realtime trigger of a table the tenant publishes is made again on the
    // pool's table by the copy (`copy_into_pool`): the pool has it once any of its
    // tenants publishes that table, and lacks it before, which is no loss.
    let listed = if tenant
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = 'realtime_tables'",
            &[&schema.as_str()],
        )
        .await?
        .is_some()
    {
        tenant
            .query(
                &format!("SELECT table_name::text FROM {schema}.realtime_tables"),
                &[],
            )
            .await?
            .iter()
            .map(|r| format!("trigger {}.realtime_publish", r.get::<_, String>(0)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(missing
        .into_iter()
        .filter(|l| !listed.contains(l))
        .collect())
}

/// Both ends of a copy into the pool: the tenant's database, the pool's, whether
/// they are one, each pool table the tenant's schema has as copied into the pool
/// (the columns both have: one the template dropped since stays out, one it added
/// takes its default), and the tenant's columns per table.
/// `view`: the tenant's server; `pool`: the pool's (the same one, or another).
async fn into_pool(
    view: &Platform,
    pool_view: &Platform,
    slug: &Slug,
    tenant: Uuid,
    from: Isolation,
) -> Result<(Ends, BTreeMap<String, Vec<String>>)> {
    let pool_db = pool_view.endpoint.database.clone();
    let src_db = database_on(view, slug, from);
    let (src, dst) = (
        connect_db(view, &src_db).await?,
        connect_db(pool_view, &pool_db).await?,
    );
    let (pool, schema) = (ident(POOL_SCHEMA)?, slug.schema());
    let theirs = columns(&src, schema.as_str()).await?;
    let mut tables = Vec::new();
    for t in pool_tables(&dst).await? {
        let Some(have) = theirs.get(&t.name) else {
            continue;
        };
        let cols = t
            .columns
            .iter()
            .filter(|c| have.contains(c))
            .map(|c| ident(c))
            .collect::<Result<Vec<_>>>()?;
        tables.push(Table {
            source: format!("{schema}.{}", ident(&t.name)?),
            target: format!("{pool}.{}", ident(&t.name)?),
            name: t.name,
            columns: cols,
            tenant: tenant_literal(tenant),
            pool: catch_up::Pool::Target,
        });
    }
    let ends = Ends {
        src,
        dst,
        same: one_database(view, &src_db, pool_view, &pool_db),
        tables,
    };
    Ok((ends, theirs))
}

/// The copy's first pass into the pool, while the tenant still writes: its rows from
/// its schema (in `from` mode), `tenant_id` added, parents first, with their ids, in
/// place of any rows of its id there (a pass run again starts over; before the move
/// it had none). One transaction on the pool's database, triggers off. Returns rows
/// per table, the milliseconds and `since` (see [`precopy_rows`]).
pub async fn precopy_into_pool(
    view: &Platform,
    pool: &Platform,
    slug: &Slug,
    tenant: Uuid,
    from: Isolation,
) -> Result<Value> {
    let started = Instant::now();
    first_pass(into_pool(view, pool, slug, tenant, from).await?.0, started).await
}

/// The copy's second pass into the pool, the tenant's writes blocked: what changed
/// since [`precopy_into_pool`] (all of it again without `since`); the pool's
/// sequences go past the tenant's (never back); the realtime trigger on each pool
/// table the tenant publishes. One transaction on the pool's database, triggers off.
/// Returns what it did per table and the milliseconds.
pub async fn copy_into_pool(
    view: &Platform,
    pool: &Platform,
    slug: &Slug,
    tenant: Uuid,
    from: Isolation,
    since: Option<i64>,
) -> Result<Value> {
    let started = Instant::now();
    let (mut ends, theirs) = into_pool(view, pool, slug, tenant, from).await?;
    let schema = slug.schema();
    let (pool, owner) = (ident(POOL_SCHEMA)?, ident(POOL_OWNER)?);
    let tx = ends.dst.transaction().await?;
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await?;
    let rows = caught_up(&ends.src, &tx, ends.same, &ends.tables, since).await?;
    let src = &ends.src;
    let sequences = forward_sequences(src, schema.as_str(), &tx).await?;
    let listed: Vec<String> = if theirs.contains_key("realtime_tables") {
        src.query(
            &format!("SELECT table_name FROM {schema}.realtime_tables"),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        Vec::new()
    };
    tx.batch_execute(&publish_triggers_sql(&owner, &pool, &listed)?)
        .await?;
    tx.commit().await?;
    Ok(json!({
        "rows": rows, "sequences": sequences, "realtime_tables": listed.len(),
        "ms": started.elapsed().as_millis() as u64,
    }))
}

/// The pool's sequences (in `tx`, on the pool's database) set past those of the same
/// names in `schema` on `src`, where they are behind: they serve every tenant of the
/// pool, so they only go forward. Returns how many moved.
pub(super) async fn forward_sequences(
    src: &tokio_postgres::Client,
    schema: &str,
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<usize> {
    let pool = ident(POOL_SCHEMA)?;
    let mut sequences = 0;
    for r in src
        .query(
            "SELECT sequencename::text, last_value FROM pg_catalog.pg_sequences
              WHERE schemaname = $1 AND last_value IS NOT NULL",
            &[&schema],
        )
        .await?
    {
        let (name, last): (String, i64) = (r.get(0), r.get(1));
        let qualified = format!("{pool}.{}", ident(&name)?);
        let n = tx
            .execute(
                "SELECT pg_catalog.setval($1::text::regclass, $2, true) FROM pg_catalog.pg_sequences
                  WHERE schemaname = $3 AND sequencename = $4 AND coalesce(last_value, 0) < $2",
                &[&qualified, &last, &POOL_SCHEMA, &name],
            )
            .await?;
        sequences += n as usize;
    }
    Ok(sequences)
}

/// The tenant's roles join the pool as a shared-mode create makes them (past the
/// point of no return, logins still off): `berqenas_shared_login` for its login, the
/// pool group roles for its group roles, CONNECT/TEMP through the server's roles,
/// member rows for every role (its users' too), `search_path` the pool. One
/// transaction; idempotent.
pub async fn join_pool(view: &Platform, slug: &Slug, tenant: Uuid, users: &[String]) -> Result<()> {
    let (pool, login) = (ident(POOL_SCHEMA)?, slug.login_role());
    let hub = format!("{}, {}", hardening::connect_role(), hardening::temp_role());
    let mut sql = format!("GRANT {}, {hub} TO {login};\n", ident(POOL_LOGIN)?);
    let mut mapped = vec![login.clone(), slug.owner_role()];
    for role in DefaultRole::ALL {
        let g = slug.group_role(role);
        sql.push_str(&format!(
            "GRANT {}, {hub} TO {g};\n",
            shared::pool_role(role)
        ));
        mapped.push(g);
    }
    sql.push_str(&format!("ALTER ROLE {login} SET search_path = {pool};\n"));
    for u in users {
        let u = ident(u)?;
        sql.push_str(&format!("ALTER ROLE {u} SET search_path = {pool};\n"));
        mapped.push(u);
    }
    let rows: Vec<String> = mapped
        .iter()
        .map(|r| {
            format!(
                "({}, {}::uuid)",
                Literal(r.as_str()),
                Literal(&tenant.to_string())
            )
        })
        .collect();
    sql.push_str(&format!(
        "INSERT INTO {pool}.members (role, tenant_id) VALUES {} ON CONFLICT (role) DO NOTHING;\n",
        rows.join(", ")
    ));
    let mut c = view.pool.get().await?;
    let tx = c.transaction().await?;
    tx.batch_execute(&sql).await?;
    tx.commit().await?;
    Ok(())
}

/// The realtime trigger on each table the tenant listed for publishing
/// (`realtime_tables`), made again in the schema the rows moved into, as its owner.
fn publish_triggers_sql(owner: &Ident, schema: &Ident, tables: &[String]) -> Result<String> {
    let mut sql = format!("SET LOCAL ROLE {owner};\n");
    for t in tables {
        sql.push_str(&format!(
            "CREATE OR REPLACE TRIGGER realtime_publish AFTER INSERT OR UPDATE OR DELETE ON {schema}.{}\n\
                 FOR EACH ROW EXECUTE FUNCTION {schema}.realtime_table_changes();\n",
            ident(t)?
        ));
    }
    sql.push_str("RESET ROLE;\n");
    Ok(sql)
}

fn made(e: super::service::Error) -> super::moving::Error {
    super::moving::Error::Tool {
        program: "database mode".into(),
        detail: e.to_string(),
    }
}
