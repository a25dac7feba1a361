//! The role check of tenants on a server other than `default`.
//!
//! The registry lives on `default` and the roles on the tenant's server: no one
//! snapshot covers both, so what a first look finds may be a change half made (an
//! operation between its server step and its record). Each tenant that looks wrong is
//! therefore judged again, under its name lock and only when no operation owns it,
//! from the registry as it is then and a fresh read of the catalog there: only what
//! still holds is taken away or put back.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{
    catalog, count_violations, issues, page, page_size, password_back_locked, settings_back_locked,
    take_away, unchanged, Page, Report, Result, ROUND_LOCK,
};
use crate::names::Slug;
use crate::platform::Platform;
use crate::store::tenants::{self, WithRoles};
use crate::{audit, store};

/// A tenant whose roles on another server had more than berqenas gives: taken away
/// there and audited; the workflow suspends it (an operation on that server).
#[derive(Debug, Clone)]
pub struct Violation {
    pub tenant: Uuid,
    pub name: Slug,
    /// "role had ..." per role, as on `default`.
    pub what: Vec<String>,
}

/// One round over the tenants on `server` (`there`: the platform as seen from it; `p`:
/// the control database's).
pub async fn check_server(
    p: &Platform,
    there: &Platform,
    server: &str,
) -> Result<(Report, Vec<Violation>)> {
    let mut turn = p.pool.get().await?;
    let turn = turn.transaction().await?;
    turn.execute("SELECT pg_advisory_xact_lock($1)", &[&ROUND_LOCK])
        .await?;
    let mut report = Report::default();
    let mut violations = Vec::new();
    let before = unchanged::read(
        &p.pool.get().await?,
        &there.pool.get().await?,
        there.caps.superuser,
    )
    .await?;
    if !unchanged::may_skip(p, there, server, &before) {
        for id in suspects(p, there, server).await? {
            if let Some(v) = judge(p, there, server, id, &mut report).await? {
                violations.push(v);
            }
        }
        unchanged::read_all(p, there, server, before);
        report.roles_read = true;
    }
    turn.commit().await?;
    Ok((report, violations))
}

/// The tenants whose roles on `server` look wrong at a first look, a page at a time.
async fn suspects(p: &Platform, there: &Platform, server: &str) -> Result<BTreeSet<Uuid>> {
    let mut suspects = BTreeSet::new();
    let mut after = Uuid::nil();
    loop {
        let which = WithRoles::Page {
            after,
            limit: page_size(),
        };
        let started = std::time::Instant::now();
        let client = p.pool.get().await?;
        let Page {
            tenants,
            expected,
            known,
            next,
        } = page(there.caps.superuser, &client, server, which).await?;
        drop(client);
        let names: Vec<&str> = expected.iter().map(|e| e.role.as_str()).collect();
        let found = catalog(there, &there.pool.get().await?, &names).await?;
        suspects.extend(
            expected
                .iter()
                .filter(|e| {
                    found.get(&e.role).is_some_and(|f| {
                        let i = issues(e, f, &known, tenants[e.tenant].id);
                        !i.bad.is_empty() || i.settings || i.password
                    })
                })
                .map(|e| tenants[e.tenant].id),
        );
        match next {
            Some(last) => after = last,
            None => return Ok(suspects),
        }
        super::pause_after(started).await;
    }
}

/// Judges one tenant again under its name lock; takes away and puts back what still
/// holds. `Some` when it had more than berqenas gives.
async fn judge(
    p: &Platform,
    there: &Platform,
    server: &str,
    id: Uuid,
    report: &mut Report,
) -> Result<Option<Violation>> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let Some(first) = tenants::with_roles(&tx, server, WithRoles::One(id))
        .await?
        .0
        .pop()
    else {
        return Ok(None);
    };
    super::super::service::lock_name(&tx, &first.name).await?;
    let owned = store::operations::lock_ownership(&tx, id)
        .await?
        .is_some_and(|o| o.owner.is_some() && o.running);
    if owned {
        return Ok(None); // an operation is at work on it: the next round looks again
    }
    let Page {
        tenants: live,
        expected,
        known,
        ..
    } = page(there.caps.superuser, &tx, server, WithRoles::One(id)).await?;
    let Some(t) = live.first() else {
        return Ok(None); // moved, purged or gone meanwhile
    };
    let names: Vec<&str> = expected.iter().map(|e| e.role.as_str()).collect();
    let on_server = there.pool.get().await?;
    let found = catalog(there, &on_server, &names).await?;
    let mut what = Vec::new();
    for e in &expected {
        let Some(f) = found.get(&e.role) else {
            continue;
        };
        let i = issues(e, f, &known, t.id);
        if !i.bad.is_empty() {
            take_away(there, &e.role, f, &i.extra, !e.login).await?;
            count_violations(report, &e.role, &i.bad);
            tracing::error!(tenant.name = %t.name, role = %e.role, server, found = ?i.bad, "security violation: a tenant role had more than berqenas gives; taken away, tenant to be suspended");
            what.push(format!("{} had {}", e.role, i.bad.join(", ")));
        }
        if i.settings && settings_back_locked(there.caps.superuser, &tx, &on_server, t, e).await? {
            report.drift.push((e.role.clone(), "settings".into()));
        }
        if i.password && password_back_locked(p, &tx, &on_server, t, e).await? {
            report.drift.push((e.role.clone(), "password".into()));
        }
    }
    if !what.is_empty() {
        audit::record(
            &tx,
            &audit::Entry {
                actor: "berqenas",
                action: "tenant_security_violation",
                tenant_id: Some(t.id),
                tenant_name: Some(&t.name),
                operation_id: None,
                details: serde_json::json!({"found": what, "taken_away": true, "server": server}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok((!what.is_empty()).then(|| Violation {
        tenant: t.id,
        name: t.name.clone(),
        what,
    }))
}
