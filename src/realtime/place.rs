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

    /// The tenant's events after `after`, in id order, at most [`BATCH`].
    pub async fn read(&self, c: &tokio_postgres::Client, after: i64) -> Result<Vec<Event>, Error> {
        let sql = format!(
            "SELECT id, channel, payload::text, created_at FROM {}.realtime_events
              WHERE id > $1{} ORDER BY id LIMIT {BATCH}",
            self.schema,
            self.tenant_clause()
        );
        let rows = c.query(&sql, &[&after]).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let payload: String = r.get(2);
                Event {
                    id: r.get(0),
                    channel: r.get(1),
                    payload: serde_json::value::RawValue::from_string(payload).unwrap_or_else(
                        |_| serde_json::value::RawValue::from_string("null".into()).expect("valid"),
                    ),
                    created_at: r.get(3),
                }
            })
            .collect())
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

    /// Deletes the tenant's events older than `days` (the plan's retention window);
    /// returns how many.
    pub async fn prune(&self, c: &tokio_postgres::Client, days: i32) -> Result<u64, Error> {
        let sql = format!(
            "DELETE FROM {}.realtime_events
              WHERE created_at < now() - make_interval(days => $1){}",
            self.schema,
            self.tenant_clause()
        );
        Ok(c.execute(&sql, &[&days]).await?)
    }

    /// Publishes `table`'s inserts, updates and deletes on channel `table.<name>`: a
    /// trigger on the table calling the template's `realtime_table_changes`, made as
    /// the table's owner (the tenant's owner role; in shared mode the pool's, and the
    /// listing row says which tenant asked). One transaction; run again, it changes
    /// nothing. An unknown table is refused naming the field, with nothing changed.
    pub async fn publish_table(
        &self,
        c: &mut tokio_postgres::Client,
        table: &str,
    ) -> Result<(), Error> {
        super::check_table(table)?;
        let tx = c.transaction().await?;
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
        tx.commit().await?;
        Ok(())
    }
}
