//! The parts of `tenant.move` (`move_tenant`) a move between isolation modes
//! (issue 18 item 4, docs/moves.md) changes: what the target is (a database made as
//! `tenant.create.database` makes it, or a schema in the server's own database),
//! what is published (the tenant schema, whichever side is a database), the roles
//! (the same ones when the move stays on its server: neither made nor dropped), the
//! roles' reach of the server's database, and the registry's mode; and what follows
//! the tenant at `login` when its place changes (the disk block a non-default pool
//! reads, the servers' network rules). The steps, their order, failpoints and undoing
//! are `move_tenant`'s.

use serde_json::Value;

use super::move_tenant::{Params, Sides};
use super::{failed, Runtime};
use crate::ops::{Object, StepError};
use crate::pg::logical::Tables;
use crate::pg::Ident;
use crate::tenant::{moving, moving_mode, moving_shared, Isolation};

impl Params {
    /// The mode the tenant has after the move.
    pub(crate) fn target(&self) -> Isolation {
        self.to_isolation.unwrap_or(self.isolation)
    }

    /// Whether the move changes the tenant's isolation mode.
    pub(crate) fn mode_move(&self) -> bool {
        self.target() != self.isolation
    }

    /// Whether source and target are one server (a mode move only).
    pub(crate) fn same_server(&self) -> bool {
        self.from == self.to
    }

    /// The roles the move makes on the target and drops from the source: none when
    /// it stays on its server (the cluster's roles are the tenant's on both sides).
    pub(crate) fn own_roles(&self) -> &[String] {
        if self.same_server() {
            &[]
        } else {
            &self.roles
        }
    }

    /// [`Params::own_roles`] as the `prepare` intent declares them.
    pub(crate) fn own_role_objects(&self) -> Vec<Object> {
        self.own_roles()
            .iter()
            .map(|r| Object {
                kind: "role".into(),
                name: r.clone(),
                database: None,
                scratch: false,
            })
            .collect()
    }

    /// What is published and whose sequences are copied: the whole database only
    /// when a database-mode tenant stays in database mode; else its schema.
    pub(crate) fn published<'a>(&self, schema: &'a Ident) -> (Tables<'a>, Option<&'a Ident>) {
        if self.isolation == Isolation::Database && self.target() == Isolation::Database {
            (Tables::All, None)
        } else {
            (Tables::Schema(schema), Some(schema))
        }
    }
}

/// The target of a mode move, made and filled with the source's definition
/// (`prepare`, after the intent is journaled). Roles come first when the target is
/// another server (the same names and password verifiers, NOLOGIN), then the
/// database or schema, then the roles' settings for the target's database.
pub(crate) async fn prepare_target(p: &Runtime, s: &Sides) -> Result<(), StepError> {
    let (slug, roles) = (&s.params.name, s.params.own_roles());
    if !roles.is_empty() {
        moving::copy_roles(&s.src, &s.dst, roles, None, &s.dst_db)
            .await
            .map_err(StepError::failed)?;
    }
    match s.params.target() {
        Isolation::Database => {
            let limit = max_connections(p, s.params.tenant_id).await?;
            moving_mode::make_database(&s.src, &s.src_db, &s.dst, slug, limit)
                .await
                .map_err(StepError::failed)?;
        }
        _ => moving_mode::make_schema(&s.src, &s.src_db, &s.dst, &s.dst_db, slug)
            .await
            .map_err(StepError::failed)?,
    }
    // Settings the roles have in the source database, for the target's (made now).
    if !roles.is_empty() {
        moving::copy_roles(&s.src, &s.dst, roles, Some(&s.src_db), &s.dst_db)
            .await
            .map_err(StepError::failed)?;
    }
    Ok(())
}

/// The tenant's connection limit, for the database a mode move makes.
pub(super) async fn max_connections(p: &Runtime, tenant: uuid::Uuid) -> Result<i32, StepError> {
    let c = p.pool.get().await.map_err(failed)?;
    crate::store::quotas::effective(&c, tenant)
        .await
        .map_err(failed)?
        .map(|q| q.max_connections)
        .ok_or_else(|| StepError::Fenced("the tenant's quotas are gone".into()))
}

/// At `login` (past the point of no return, before the logins come back): the
/// roles reach the target server's database as the new mode has it. Idempotent.
pub(crate) async fn follow_mode(p: &Runtime, s: &Sides) -> Result<(), StepError> {
    let (from_pool, into) = (
        s.params.isolation == Isolation::Shared,
        s.params.target() == Isolation::Shared,
    );
    if from_pool || into {
        let fixed: Vec<String> = s.params.name.fixed_role_names();
        let users: Vec<String> = s
            .params
            .roles
            .iter()
            .filter(|r| !fixed.contains(r))
            .cloned()
            .collect();
        let (slug, id) = (&s.params.name, s.params.tenant_id);
        // From one server's pool into another's, its roles there (copied with their
        // pool memberships) join that pool; those it left go at `retire`.
        if into {
            moving_shared::join_pool(&s.dst, slug, id, &users).await
        } else {
            moving_shared::leave_pool(&s.dst, slug, id, &users).await
        }
        .map_err(StepError::failed)?;
        if from_pool {
            local_block(p, s, false).await?;
        }
        if into {
            local_block(p, s, true).await?;
        }
    }
    if s.params.mode_move() {
        moving_mode::grant_reach(&s.dst, &s.params.name, s.params.target())
            .await
            .map_err(StepError::failed)?;
    }
    Ok(())
}

/// A pool on a server other than `default` reads a tenant's disk block from a table
/// of its own server (`quota_guard::LOCAL_FLAGS`), which the quota round writes for its
/// shared-mode tenants only: a tenant leaving such a pool leaves no block behind there
/// (a stale one would refuse its writes were it to come back), and one joining such a
/// pool brings the registry's. On `default` the pool reads the registry itself.
async fn local_block(p: &Runtime, s: &Sides, joined: bool) -> Result<(), StepError> {
    use crate::store::servers::DEFAULT;
    let (server, view) = if joined {
        (&s.params.to, &s.dst)
    } else {
        (&s.params.from, &s.src)
    };
    if server == DEFAULT {
        return Ok(());
    }
    let blocked = joined && {
        let c = p.pool.get().await.map_err(failed)?;
        crate::store::quotas::disk_usage(&c, s.params.tenant_id)
            .await
            .map_err(failed)?
            .is_some_and(|u| u.writes_blocked)
    };
    let c = view.pool.get().await.map_err(failed)?;
    crate::isolation::quota_guard::set_local_block(&c, s.params.tenant_id, blocked)
        .await
        .map_err(failed)
}

/// At `login` of a move that changed server, before the logins come back: each
/// server's pg_hba.conf lists the tenants that live there (docs/network.md), so a
/// restricted tenant's lines are rendered again, now on the target (and gone from the
/// source). Without it the target would let the tenant in from anywhere until some
/// later change rendered the files. A render that fails is logged and retried by the
/// reconciler, as after any change (`network::follow`); an unrestricted tenant costs
/// one statement.
pub(crate) async fn follow_network(p: &Runtime, params: &Params) -> Result<(), StepError> {
    let begun = {
        let mut c = p.pool.get().await.map_err(failed)?;
        let tx = c.transaction().await.map_err(failed)?;
        let t = crate::store::tenants::get(&tx, params.tenant_id)
            .await
            .map_err(failed)?;
        let begun = super::network::touch(p, &tx, &t, false)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        begun
    };
    super::network::follow(p, begun).await;
    Ok(())
}

/// The registry's new place (and mode) in the `switch` transaction.
pub(crate) async fn switch_registry(
    tx: &deadpool_postgres::Transaction<'_>,
    params: &Params,
    dst_db: &str,
) -> Result<Value, StepError> {
    if params.mode_move() {
        crate::store::servers::move_tenant_mode(
            tx,
            params.tenant_id,
            &params.to,
            dst_db,
            params.target().as_str(),
            // Shared mode's schema is the pool's.
            match params.target() {
                Isolation::Shared => crate::isolation::shared::POOL_SCHEMA.to_string(),
                _ => params.name.schema().as_str().to_string(),
            }
            .as_str(),
        )
        .await
        .map_err(failed)?;
    } else {
        crate::store::servers::move_tenant(tx, params.tenant_id, &params.to, dst_db)
            .await
            .map_err(failed)?;
    }
    Ok(serde_json::json!({
        "server": params.to, "database": dst_db, "isolation": params.target().as_str(),
    }))
}
