//! Where a tenant's events are, and the SQL the server runs there with its own role:
//! reading new events, pruning old ones, publishing a table's changes.

use uuid::Uuid;

use super::{Event, Invalid};
use crate::isolation::shared::{POOL_OWNER, POOL_SCHEMA};
use crate::pg::{Ident, Literal};
use crate::store::tenants::{Isolation, Tenant};

/// The tenant's event table: in the control database (`database: None`) or its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub tenant: Uuid,
    pub database: Option<Ident>,
    pub schema: Ident,
    /// Shared mode: the pool's table holds every tenant's rows; read this tenant's.
    pub shared: bool,
    owner: Ident,
}

/// The most events one read returns.
pub const BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Connect(#[from] crate::pg::PgError),
    #[error(transparent)]
    Gate(#[from] Box<super::gate::Error>),
}

impl From<super::gate::Error> for Error {
    fn from(e: super::gate::Error) -> Self {
        Self::Gate(Box::new(e))
    }
}

/// A row of [`Place::read_sql`]: its tag and the event.
pub fn event(r: &tokio_postgres::Row) -> (usize, Event) {
    let tag: i32 = r.get(0);
    let payload: String = r.get(3);
    (
        tag as usize,
        Event {
            id: r.get(1),
            channel: r.get(2),
            payload: serde_json::value::RawValue::from_string(payload).unwrap_or_else(|_| {
                serde_json::value::RawValue::from_string("null".into()).expect("valid")
            }),
            created_at: r.get(4),
        },
    )
}

/// Reads several control-database tenants' new events in one query: `(place, after)`
/// pairs in, each one's events (at most [`BATCH`], id order) out, in the same order.
pub async fn read_many(
    c: &tokio_postgres::Client,
    wanted: &[(&Place, i64)],
) -> Result<Vec<Vec<Event>>, Error> {
    let mut out: Vec<Vec<Event>> = wanted.iter().map(|_| Vec::new()).collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let sql = wanted
        .iter()
        .enumerate()
        .map(|(i, (p, after))| p.read_sql(i, *after))
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n");
    for r in c.query(&sql, &[]).await? {
        let (tag, e) = event(&r);
        if let Some(v) = out.get_mut(tag) {
            v.push(e);
        }
    }
    // UNION ALL keeps no order across branches; each branch's own is by id.
    for v in &mut out {
        v.sort_by_key(|e| e.id);
    }
    Ok(out)
}

impl Place {
    pub fn of(t: &Tenant) -> Self {
        let (database, schema, shared, owner) = match t.isolation {
            Isolation::Schema => (
                None,
                t.schema.clone().unwrap_or_else(|| t.name.schema()),
                false,
                t.owner_role.clone(),
            ),
            Isolation::Database => (
                Some(t.database.clone()),
                t.name.schema(),
                false,
                t.owner_role.clone(),
            ),
            Isolation::Shared => (
                None,
                Ident::new(POOL_SCHEMA).expect("static name"),
                true,
                Ident::new(POOL_OWNER).expect("static name"),
            ),
        };
        Self {
            tenant: t.id,
            database,
            schema,
            shared,
            owner,
        }
    }

    fn tenant_clause(&self) -> String {
        if self.shared {
            format!(
                " AND tenant_id = {}::uuid",
                Literal(&self.tenant.to_string())
            )
        } else {
            String::new()
        }
    }

    /// The query of the tenant's events after `after`, in id order, at most [`BATCH`],
    /// each row led by `tag` (so several tenants' can be read in one UNION ALL).
    pub fn read_sql(&self, tag: usize, after: i64) -> String {
        format!(
            "(SELECT {tag}::int4, id, channel, payload::text, created_at FROM {}.realtime_events
              WHERE id > ({after})::int8{} ORDER BY id LIMIT {BATCH})",
            self.schema,
            self.tenant_clause()
        )
    }

    /// The tenant's events after `after`, in id order, at most [`BATCH`].
    pub async fn read(&self, c: &tokio_postgres::Client, after: i64) -> Result<Vec<Event>, Error> {
        let rows = c.query(&self.read_sql(0, after), &[]).await?;
        Ok(rows.iter().map(|r| event(r).1).collect())
    }

    /// The tenant's latest event id (0: none).
    pub async fn latest(&self, c: &tokio_postgres::Client) -> Result<i64, Error> {
        let sql = format!(
            "SELECT coalesce(max(id), 0) FROM {}.realtime_events WHERE true{}",
            self.schema,
            self.tenant_clause()
        );
        Ok(c.query_one(&sql, &[]).await?.get(0))
    }

    /// Deletes at most `limit` of the tenant's events older than `days` (the plan's
    /// retention window), oldest first; returns how many.
    pub async fn prune(
        &self,
        c: &tokio_postgres::Client,
        days: i32,
        limit: i64,
    ) -> Result<u64, Error> {
        let sql = format!(
            "DELETE FROM {s}.realtime_events WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM {s}.realtime_events
                  WHERE created_at < now() - make_interval(days => $1){t}
                  ORDER BY created_at LIMIT $2))",
            s = self.schema,
            t = self.tenant_clause()
        );
        Ok(c.execute(&sql, &[&days, &limit]).await?)
    }

    /// Publishes `table`'s inserts, updates and deletes on channel `table.<name>`: a
    /// trigger on the table calling the template's `realtime_table_changes`, made as
    /// the table's owner (the tenant's owner role; in shared mode the pool's, and the
    /// listing row says which tenant asked). One transaction; run again, it changes
    /// nothing. An unknown table is refused naming the field, with nothing changed.
    /// Runs in the caller's transaction (which commits it, with its audit row when
    /// the table is in the control database).
    pub async fn publish_table(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        table: &str,
    ) -> Result<(), Error> {
        super::check_table(table)?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&self.schema.as_str(), &table],
            )
            .await?
            .is_some();
        if !exists {
            return Err(Error::Invalid(Invalid {
                field: "table",
                message: format!("the tenant has no table {table:?}"),
            }));
        }
        let t = Ident::new(table).map_err(|e| {
            Error::Invalid(Invalid {
                field: "table",
                message: e.to_string(),
            })
        })?;
        let (schema, owner) = (&self.schema, &self.owner);
        let listing = if self.shared {
            format!(
                "INSERT INTO {schema}.realtime_tables (table_name, tenant_id) VALUES ({}, {}::uuid)
                 ON CONFLICT ON CONSTRAINT realtime_tables_one DO NOTHING;\n",
                Literal(table),
                Literal(&self.tenant.to_string())
            )
        } else {
            format!(
                "INSERT INTO {schema}.realtime_tables (table_name) VALUES ({})
                 ON CONFLICT ON CONSTRAINT realtime_tables_one DO NOTHING;\n",
                Literal(table)
            )
        };
        tx.batch_execute(&format!(
            "SET LOCAL ROLE {owner};\n\
             CREATE OR REPLACE TRIGGER realtime_publish AFTER INSERT OR UPDATE OR DELETE ON {schema}.{t}\n\
                 FOR EACH ROW EXECUTE FUNCTION {schema}.realtime_table_changes();\n\
             {listing}\
             RESET ROLE;\n"
        ))
        .await?;
        Ok(())
    }
}
