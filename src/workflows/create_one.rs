//! `tenant.create` in schema and shared mode: one transaction holds the roles, the
//! schema (or pool rows), the template, the registry row, the API key, the backup
//! policy, the configuration, the event, the audit row and the operation row, so a
//! crash leaves all or nothing (a [`crate::ops::Kind::single`]).
//!
//! A database-mode create comes here first too: if it claims a warm pool member, the
//! claim is this one transaction (the member's own work inside its database runs on a
//! session of its own beside what the create makes and records, and is over, its
//! session gone, before the database is renamed, with the audit row, in a round trip
//! of its own: `tenant::database_claim`); if not (no member, or onboarding steps to
//! run), it rolls back and runs in steps (`tenant.create.database`).
//!
//! Its statements are pipelined in four round trips after `BEGIN` (docs/warm_pool.md,
//! "Where a create's time goes"): what it reads (the operation row, the onboarding
//! steps, a warm pool member, the name lock, the name and the plan), what it makes
//! (the DDL or the claim, the least-privilege check, the registry row), what it
//! records (the key, the policy, the configuration, the event, the operation closed,
//! the audit row last: its chain lock is held until the commit), then `COMMIT`.
//! Statements on one connection run in the order they are queued, and once one fails
//! the rest fail with the aborted transaction: the first error in queue order is the
//! one reported, as when they ran one by one.

use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::create::{remember_rejection, seal_response, settled, CREATE};
use super::{create_trace, Error, Runtime};
use crate::names::Slug;
use crate::ops::{self, Idempotency, NewOperation, StoredResponse};
use crate::tenant::create::{self as domain, CreatedTenant, Validated};
use crate::tenant::{database_claim, service, Isolation};

/// The create of a schema- or shared-mode tenant on the default server; `v` has its
/// isolation settled. Runs staged (`create_staged`) when onboarding steps match.
pub(super) async fn create(
    rt: &Runtime,
    v: &Validated,
    idem: Option<&Idempotency>,
    actor: &str,
    announce: bool,
    mut trace: Option<create_trace::Trace>,
) -> Result<CreatedTenant, Error> {
    let p = &rt.platform;
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    create_trace::mark(&mut trace, "begin");
    let op_id = Uuid::now_v7();
    let op = NewOperation {
        id: op_id,
        kind: CREATE,
        tenant_id: None,
        tenant_name: v.slug.as_str(),
        idempotency: idem,
        params: None,
        instance: Some(rt.engine.instance()),
        plan: None,
    };
    // 1. What it reads, and the name lock: one round trip.
    let (begun, staging, claimed, locked, pre) = tokio::join!(
        ops::begin(&tx, &op),
        super::create_staged::staging(&tx, v),
        super::warm_pool::claim(rt, &tx, v),
        service::lock_name(&tx, &v.slug),
        domain::precheck(&tx, v),
    );
    create_trace::mark(&mut trace, "read");
    if let Some(answer) = settled(p, begun?) {
        return answer;
    }
    let staged = staging.map_err(service::Error::from)?;
    let database = v.isolation == Isolation::Database;
    // Database mode here only claims: a new database is made in steps, as are the
    // onboarding steps' creates.
    if database && (staged || matches!(claimed, Ok(None))) {
        tx.rollback().await?;
        drop(client);
        return super::create::create_database(rt, v, idem, actor, announce).await;
    }
    if staged {
        tx.rollback().await?;
        drop(client);
        return super::create_staged::create(rt, v, idem, actor, announce).await;
    }
    let made = async {
        let claimed = claimed?;
        let is_claim = claimed.is_some();
        locked?;
        let pre = pre?;
        let member_db = match &claimed {
            Some(m) if database => Some(
                Slug::warm_member(&m.key)
                    .ok_or_else(|| Error::Rejected(super::warm_pool::bad_key()))?,
            ),
            _ => None,
        };
        let rename_database = member_db.as_ref().map(|m| pre.rename_database_sql(p, v, m));
        let limits = pre.realtime_limits();
        // A database-mode claim audits after its database's rename (4.).
        let audit_now = member_db.is_none();
        // 2. What it makes (the DDL or the claim's renames, the check, the registry
        // row), then 3. what it records, the audit row last; a database-mode member's
        // own work in its database meanwhile, its session's end awaited beside them.
        let control = async {
            let mut made = super::warm_pool::provision(rt, &tx, v, pre, claimed).await?;
            create_trace::mark(&mut trace, "make");
            if v.vpn_enabled {
                let t = &mut made.created.tenant;
                let subnet = crate::network::pool::allocate(&tx, &p.network.pool, t.id).await?;
                t.vpn_subnet = Some(subnet.to_string());
            }
            let t = &made.created.tenant;
            let sealed = seal_response(
                p,
                &StoredResponse::Success(
                    serde_json::to_value(&made.created).map_err(service::Error::from)?,
                ),
            )?;
            let (key, policy, config, event, closed, audited) = tokio::join!(
                domain::store_key(&tx, &made),
                crate::backup::policy::apply_at_create(
                    &tx,
                    t.id,
                    &made.plan,
                    v.backup_schedule.as_deref()
                ),
                crate::tenantconfig::create_default(&tx, t.id, &made.plan, actor),
                async {
                    if announce {
                        domain::announce_created(&tx, t, made.key.clone(), None).await
                    } else {
                        Ok(())
                    }
                },
                ops::succeed(
                    &tx,
                    op_id,
                    t.id,
                    &["provision"],
                    idem.map(|_| sealed.as_slice())
                ),
                async {
                    match audit_now {
                        true => domain::audit_created(&tx, &made, actor, op_id).await,
                        false => Ok(()),
                    }
                },
            );
            key?;
            policy.map_err(Error::from)?;
            config?;
            event?;
            closed?;
            audited?;
            create_trace::mark(&mut trace, "record");
            Ok::<_, Error>(made)
        };
        let (made, inside) = tokio::join!(control, async {
            match &member_db {
                Some(m) => claim_inside(rt, &tx, m, v, limits).await.map(Some),
                None => Ok(None),
            }
        });
        let made = made?;
        if let Some(parts) = inside? {
            create_trace::inside(&mut trace, &parts);
        }
        // 4. A database-mode member's database renamed (nobody is in it any more),
        // then its audit row.
        if let Some(sql) = &rename_database {
            let (renamed, audited) = tokio::join!(
                async { tx.batch_execute(sql).await.map_err(|e| taken(e, &v.slug)) },
                domain::audit_created(&tx, &made, actor, op_id),
            );
            renamed?;
            audited?;
            create_trace::mark(&mut trace, "rename");
        }
        // After the audit row: one lock order (the chain's head, then the network's).
        let network = if v.vpn_enabled {
            super::network::touch(rt, &tx, &made.created.tenant, false).await?
        } else {
            None
        };
        Ok::<_, Error>((made, network, is_claim))
    }
    .await;
    match made {
        Ok((made, network, is_claim)) => {
            let created = made.created;
            rt.engine.commit(tx, CREATE).await?;
            drop(client);
            create_trace::mark(&mut trace, "commit");
            super::network::follow(rt, network).await;
            tracing::info!(tenant.name = %created.tenant.name, tenant.id = %created.tenant.id, "tenant created");
            crate::metrics::tenant_created();
            create_trace::finish(trace, created.tenant.name.as_str(), is_claim);
            Ok(created)
        }
        Err(e) => {
            tx.rollback().await?;
            remember_rejection(rt, idem, v.slug.as_str(), e).await
        }
    }
}

/// A claimed database-mode member's work inside its database, under its own name
/// (`tenant::database_claim`), on the session held ahead there if there is one
/// (`warm_pool_holds`), which is gone when this returns; how long
/// its connection, its work and its close took (for the create trace).
async fn claim_inside(
    rt: &Runtime,
    tx: &Transaction<'_>,
    member: &Slug,
    v: &Validated,
    limits: (i32, i32),
) -> Result<[(&'static str, Duration); 3], Error> {
    let p = &rt.platform;
    let t0 = Instant::now();
    let session = match rt.holds.take(member) {
        Some(held) => held,
        None => database_claim::open(p, member).await?,
    };
    let t1 = Instant::now();
    let done = async {
        database_claim::prepare(&session.client, member, &v.slug, limits).await?;
        super::pooler::prepare_in(p, &session.client, member.schema().as_str())
            .await
            .map_err(|e| Error::from(service::Error::from(e)))
    }
    .await;
    let t2 = Instant::now();
    // Out of the database once the activity view says so, or its socket ends.
    let left = async {
        let _ = database_claim::left(tx, member).await;
    };
    session.close(left).await;
    done?;
    Ok([
        ("connect", t1 - t0),
        ("work", t2 - t1),
        ("close", t2.elapsed()),
    ])
}

/// A database of the tenant's name that is not in the registry: the name is taken.
fn taken(e: tokio_postgres::Error, slug: &Slug) -> Error {
    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
        return service::taken_name(slug).into();
    }
    service::Error::from(e).into()
}
