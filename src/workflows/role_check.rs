//! The worker's role check on every server (`tenant::integrity`): `default`'s in one
//! snapshot, then each other server where tenants live. A tenant whose roles on another
//! server had more than berqenas gives is suspended there by an operation
//! (`tenant.suspend.placed`, cause `security_violation`): no transaction spans the
//! registry and that server.

use super::{Error, Runtime};
use crate::store::tenants;
use crate::tenant::integrity::{self, Report};

/// One round. A server that cannot be reached is skipped (logged) and looked at again
/// next round; the others are still checked.
pub async fn round(rt: &Runtime) -> Result<Report, Error> {
    let mut report = integrity::run_once(&rt.platform).await?;
    let servers = tenants::other_servers_with_roles(&rt.pool.get().await?)
        .await
        .map_err(crate::tenant::service::Error::from)?;
    for server in servers {
        let view = match super::servers::opened(&rt.platform, &server).await {
            Ok(s) => rt.platform.on(&s),
            Err(e) => {
                tracing::warn!(server, error = %e, "role check: server unreachable; next round");
                continue;
            }
        };
        let (found, violations) = match integrity::check_server(&rt.platform, &view, &server).await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(server, error = %e, "role check of a server failed; next round");
                continue;
            }
        };
        report.violations.extend(found.violations);
        report.drift.extend(found.drift);
        for v in violations {
            let t = crate::tenant::service::get(rt, &v.tenant.to_string()).await?;
            // Taken away already; a tenant no longer in use (suspended meanwhile) or busy
            // keeps it taken away, and the audit row says what was found.
            match super::on_server::suspend_for_violation(rt, &t, &v.what).await {
                Ok(_) => report.suspended.push(v.name.to_string()),
                Err(e) => {
                    tracing::warn!(tenant.name = %v.name, server, error = %e, "role check: the tenant could not be suspended there")
                }
            }
        }
    }
    Ok(report)
}
