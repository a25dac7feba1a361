//! Reading the audit trail: filtered pages, newest first, and the chain check.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::IsolationLevel;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chain::{self, Verification};
use crate::platform::Platform;
use crate::problem::Problem;
pub use crate::store::audit::AuditEntry;
use crate::store::{audit as trail, tenants};
use crate::tenant::service::{Error, DEFAULT_PAGE, MAX_PAGE};

type Result<T, E = Error> = std::result::Result<T, E>;

/// A page of audit rows, newest first; pass `next_cursor` as `cursor` for older ones.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// The query parameters of `GET /api/v1/audit`, as given.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    /// A tenant name or id.
    pub tenant: Option<&'a str>,
    pub action: Option<&'a str>,
    /// RFC 3339 time, a date (midnight UTC), or a duration back from now (`24h`).
    pub since: Option<&'a str>,
    pub limit: Option<i64>,
    pub cursor: Option<&'a str>,
}

/// `since`: an RFC 3339 time, a date, or how long ago.
pub fn parse_since(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Problem> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    let ago = crate::duration::parse("since", v).map_err(|_| {
        Problem::bad_field(
            "since",
            format!("since {value:?} is neither a time (2025-01-31T12:00:00Z), a date (2025-01-31) nor a duration back from now (24h, 7d)"),
        )
    })?;
    Ok(now - chrono::Duration::from_std(ago).expect("bounded by duration::MAX"))
}

fn validate_action(action: &str) -> Result<(), Problem> {
    let ok = (1..=64).contains(&action.len())
        && action
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Problem::bad_field(
            "action",
            format!("action {action:?} is not an action name like tenant_suspended"),
        ))
    }
}

/// A page of the trail, newest first, filtered.
pub async fn page(p: &Platform, q: &AuditQuery<'_>) -> Result<AuditPage> {
    if let Some(a) = q.action {
        validate_action(a).map_err(Error::Rejected)?;
    }
    let since = q
        .since
        .map(|s| parse_since(s, Utc::now()))
        .transpose()
        .map_err(Error::Rejected)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::Rejected(Problem::bad_field(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        )));
    }
    let before = q
        .cursor
        .map(|c| c.parse::<i64>())
        .transpose()
        .map_err(|_| {
            Error::Rejected(Problem::bad_field(
                "cursor",
                "cursor is not one this server handed out",
            ))
        })?;
    let client = p.pool.get().await?;
    let tenant_id = match q.tenant {
        Some(t) => match t.parse::<Uuid>() {
            Ok(id) => Some(id),
            Err(_) => tenants::find(&client, t).await?.map(|t| t.id),
        },
        None => None,
    };
    let entries = trail::list(
        &client,
        &trail::Filter {
            tenant: q.tenant,
            tenant_id,
            action: q.action,
            since,
            before,
        },
        limit + 1,
    )
    .await?;
    // One row more than the page tells whether there is a next page (see tenants).
    let mut entries = entries;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_cursor = more
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}

/// `GET /api/v1/tenants/{name}/audit`: like [`page`] for one tenant; 404 when the name
/// is neither a tenant nor in the trail (a hard-deleted tenant's rows stay readable).
pub async fn tenant_page(p: &Platform, key: &str, q: &AuditQuery<'_>) -> Result<AuditPage> {
    let client = p.pool.get().await?;
    let known =
        tenants::find(&client, key).await?.is_some() || trail::mentions(&client, key).await?;
    drop(client);
    if !known {
        return Err(Error::not_found(key));
    }
    page(
        p,
        &AuditQuery {
            tenant: Some(key),
            ..q.clone()
        },
    )
    .await
}

/// Checks the whole chain in one consistent snapshot.
pub async fn verify(p: &Platform) -> Result<Verification> {
    let mut client = p.pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let v = chain::verify(&tx).await?;
    tx.commit().await?;
    if !v.ok {
        tracing::error!(broken = ?v.broken, "the audit chain is broken");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_a_date_or_a_duration() {
        let now = DateTime::parse_from_rfc3339("2025-03-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("2025-03-01T00:00:00+01:00", now).unwrap(),
            DateTime::parse_from_rfc3339("2025-02-28T23:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("2025-03-01", now).unwrap(),
            DateTime::parse_from_rfc3339("2025-03-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("24h", now).unwrap(),
            DateTime::parse_from_rfc3339("2025-03-09T12:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("yesterday", now).unwrap_err().field.as_deref(),
            Some("since")
        );
        assert!(validate_action("tenant_suspended").is_ok());
        assert!(validate_action("Robert'); DROP").is_err());
    }
}
