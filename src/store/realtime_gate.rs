//! The realtime gate inside a database-mode tenant's own database
//! (`realtime_gate.sql`): the limits the server copies there and the counters the
//! tenant's publishes are admitted against, in schema `berqenas_realtime`, owned by
//! the control role. Every function takes a client connected to the tenant's
//! database as the control role (a connection of its own, not the pool's).

use super::Result;

const INSTALL: &str = include_str!("realtime_gate.sql");

/// Installs (or re-installs) the gate and sets its limits, in one implicit
/// transaction (one simple-query batch). Idempotent: the quota round runs it for
/// every database-mode tenant, so a change the server could not copy at once
/// (it stopped right after the quota change committed) is copied within a round.
pub async fn sync(c: &tokio_postgres::Client, per_minute: i32, per_hour: i32) -> Result<()> {
    set_limits(c, INSTALL, per_minute, per_hour).await
}

/// Installs the gate with no limits yet (it refuses every event until they are
/// set): a warm pool member's database, whose claim sets them ([`set_limits`]).
pub async fn install(c: &tokio_postgres::Client) -> Result<()> {
    c.batch_execute(INSTALL).await?;
    Ok(())
}

/// Sets the limits of an installed gate; `before`: statements sent in the same
/// batch, ahead of it. Installing costs a fresh session's first catalog reads of
/// every object it replaces (5 ms of a database-mode claim); this is one row.
pub async fn set_limits(
    c: &tokio_postgres::Client,
    before: &str,
    per_minute: i32,
    per_hour: i32,
) -> Result<()> {
    c.batch_execute(&format!(
        "{before}\n\
         INSERT INTO berqenas_realtime.limits AS l (one, per_minute, per_hour) VALUES (true, {per_minute}, {per_hour})\n\
         ON CONFLICT (one) DO UPDATE SET per_minute = excluded.per_minute, per_hour = excluded.per_hour,\n\
             synced_at = now()\n\
           WHERE (l.per_minute, l.per_hour) IS DISTINCT FROM (excluded.per_minute, excluded.per_hour);"
    ))
    .await?;
    Ok(())
}

/// The gate's limits (per minute, per hour), if it is installed.
pub async fn limits(c: &tokio_postgres::Client) -> Result<Option<(i32, i32)>> {
    if !installed(c).await? {
        return Ok(None);
    }
    Ok(c.query_opt(
        "SELECT per_minute, per_hour FROM berqenas_realtime.limits",
        &[],
    )
    .await?
    .map(|r| (r.get(0), r.get(1))))
}

async fn installed(c: &tokio_postgres::Client) -> Result<bool> {
    Ok(c.query_one(
        "SELECT to_regclass('berqenas_realtime.counters') IS NOT NULL",
        &[],
    )
    .await?
    .get(0))
}

/// The counter rows as they stand: (window kind, window start, events).
pub async fn counters(
    c: &tokio_postgres::Client,
) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>, i64)>> {
    if !installed(c).await? {
        return Ok(vec![]);
    }
    Ok(c.query(
        "SELECT window_kind, window_start, events FROM berqenas_realtime.counters",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}

/// This minute's and this hour's counted events (0 for a window that moved on).
pub async fn counted(c: &tokio_postgres::Client) -> Result<(i64, i64)> {
    if !installed(c).await? {
        return Ok((0, 0));
    }
    let row = c
        .query_one(
            "SELECT coalesce(sum(events) FILTER (WHERE window_kind = 'minute'
                                 AND window_start = date_trunc('minute', now())), 0)::bigint,
                    coalesce(sum(events) FILTER (WHERE window_kind = 'hour'
                                 AND window_start = date_trunc('hour', now())), 0)::bigint
               FROM berqenas_realtime.counters",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Counts `n` events (reported through `POST .../usage`), all or none, in their own
/// transaction. `Ok(Err((message, retry_after_secs)))` when a limit refuses them;
/// `Ok(Ok(used this minute))` when counted.
pub async fn admit_n(
    c: &tokio_postgres::Client,
    n: i64,
) -> Result<std::result::Result<i64, (String, u64)>> {
    match c
        .query_one("SELECT berqenas_realtime.admit_n($1)", &[&n])
        .await
    {
        Ok(row) => Ok(Ok(row.get(0))),
        Err(e) => match super::realtime::refusal(&e) {
            Some(r) => Ok(Err(r)),
            None => Err(e.into()),
        },
    }
}
