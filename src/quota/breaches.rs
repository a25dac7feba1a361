//! `quota.exceeded` and `quota.recovered` for the quotas berqenas observes rather than
//! changes: connections at their limit (seen by the quota round) and the rate limits
//! (seen by the limiter as it refuses). Disk crossings are the disk enforcement's own
//! change (`disk::enforce`). A crossing is recorded in `quota_breaches` with its event,
//! under the tenant's name, so several servers announce each one once.

use std::collections::HashMap;

use uuid::Uuid;

use super::rate::RateLimits;
use crate::platform::Platform;
use crate::store::outbox::{
    self,
    data::{QuotaExceeded, QuotaRecovered, QuotaState},
};
use crate::store::{breaches, quotas, tenants};
use crate::tenant::service::Error;

/// A quota crossed one way or the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub tenant: Uuid,
    /// `connections`, `rate` or `realtime`.
    pub quota: &'static str,
    pub exceeded: bool,
    pub limit: i64,
    pub used: i64,
}

fn limit_name(quota: &str) -> &'static str {
    match quota {
        "connections" => "max_connections",
        "rate" => "api_calls_per_minute",
        _ => "realtime_events_per_minute",
    }
}

/// Records a crossing and its event, if it is news (one transaction, under the
/// tenant's name). Returns whether it was.
pub async fn record(p: &Platform, c: &Crossing) -> Result<bool, Error> {
    record_as(p, c, limit_name(c.quota)).await
}

/// [`record`], naming the limit (realtime has two: per minute and per hour).
pub async fn record_as(p: &Platform, c: &Crossing, limit_name: &str) -> Result<bool, Error> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let Some(t) = tenants::find(&tx, &c.tenant.to_string()).await? else {
        return Ok(false);
    };
    crate::tenant::service::lock_name(&tx, &t.name).await?;
    let news = if c.exceeded {
        breaches::exceed(&tx, t.id, c.quota).await?
    } else {
        breaches::recover(&tx, t.id, c.quota).await?
    };
    if news {
        let state = QuotaState {
            quota: c.quota.into(),
            limit_name: limit_name.into(),
            limit: c.limit,
            used: c.used,
        };
        if c.exceeded {
            outbox::emit(&tx, t.id, t.name.as_str(), &QuotaExceeded { state }).await?;
        } else {
            outbox::emit(&tx, t.id, t.name.as_str(), &QuotaRecovered { state }).await?;
        }
    }
    tx.commit().await?;
    Ok(news)
}

/// Records the crossings the rate limiter saw, on a task of its own: the request that
/// crossed is answered without waiting for it.
pub fn flush(p: &Platform, limits: &RateLimits) {
    let crossings = limits.take_crossings();
    if crossings.is_empty() {
        return;
    }
    let p = p.clone();
    tokio::spawn(async move {
        for c in crossings {
            if let Err(e) = record(&p, &c).await {
                tracing::warn!(tenant.id = %c.tenant, quota = c.quota, error = %e, "could not record a rate limit crossing");
            }
        }
    });
}

/// The quota round's look at connections: a tenant with a login role at its
/// `max_connections` (or, in database mode, all its sessions at it) is exceeded, the
/// next session refused; below it again, recovered. Returns the crossings recorded.
///
/// The limits of all the tenants seen are read in one statement, and only a tenant
/// whose standing differs from its mark is recorded (`record` looks again under the
/// tenant's name): a tenant with sessions below its limit, the usual case, costs
/// nothing more, where it cost a statement and a transaction of its own every round.
pub async fn connections_round(p: &Platform) -> Result<usize, Error> {
    let client = p.pool.get().await?;
    let mut seen = breaches::connection_use(&client).await?;
    // Tenants on other servers: one look at each server's sessions.
    seen.extend(super::placed::connections(p).await?);
    let ids: Vec<Uuid> = seen.iter().map(|u| u.tenant).collect();
    let limits: HashMap<Uuid, i64> = quotas::effective_of(&client, &ids)
        .await?
        .into_iter()
        .map(|(id, q)| (id, q.max_connections as i64))
        .collect();
    drop(client);
    let mut n = 0;
    for u in seen {
        let Some(&max) = limits.get(&u.tenant) else {
            continue;
        };
        let used = if u.database { u.total } else { u.busiest };
        let exceeded = used >= max;
        if exceeded == u.marked {
            continue;
        }
        let c = Crossing {
            tenant: u.tenant,
            quota: "connections",
            exceeded,
            limit: max,
            used,
        };
        if record(p, &c).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// The quota round's look at realtime events: a tenant whose current minute or hour
/// has reached its limit (the next event is refused, by SQL, in whatever session
/// publishes it) is exceeded; once a new window starts below it, recovered. Returns
/// the crossings recorded.
pub async fn realtime_round(p: &Platform) -> Result<usize, Error> {
    let standings = {
        let client = p.pool.get().await?;
        crate::store::realtime::standings(&client).await?
    };
    let mut n = 0;
    for s in standings {
        let c = Crossing {
            tenant: s.tenant,
            quota: "realtime",
            exceeded: s.at_limit,
            limit: s.limit,
            used: s.used,
        };
        if record_as(p, &c, s.limit_name).await? {
            n += 1;
        }
    }
    Ok(n)
}
