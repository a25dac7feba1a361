//! The warm pool (docs/warm_pool.md): unclaimed tenants prepared in the background,
//! so that a create is a claim (a rename) instead of the DDL of a new tenant.
//!
//! - `warm_pool.refill`: one member made, in one transaction with its pool row and its
//!   operation row (a [`Kind::single`]): a crash leaves the member whole or absent.
//! - `warm_pool.recycle`: one stale member (its template version is not the current
//!   one) dropped, in one transaction with its pool row.
//! - The claim is part of `tenant.create`'s own transaction ([`claim`], then
//!   [`provision`]): the member's row is deleted with `FOR UPDATE SKIP LOCKED` in the
//!   create's transaction, so two creates never get one member, and a create that rolls
//!   back gives it back.
//!
//! Refills are low priority: one member at a time, one connection, none while the
//! connection pool has requests waiting or only one connection left, and (in `serve`)
//! none during a burst of creates unless the pool is down to a quarter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Transaction;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{failed, Error, Runtime};
use crate::isolation::warm::{self, Mode};
use crate::names::Slug;
use crate::ops::{self, Kind, Run, StepError};
use crate::store::tenants::Isolation;
use crate::store::warm_pool::{self as store, Member, Version, DEFAULT_SERVER as DEFAULT};
use crate::tenant::create::{self as domain, Provisioned, Validated};
use crate::tenant::{service, shared_mode};

pub const REFILL: &str = "warm_pool.refill";
pub const RECYCLE: &str = "warm_pool.recycle";
pub use super::warm_pool_database::{RECYCLE as RECYCLE_DATABASE, REFILL as REFILL_DATABASE};

/// How long the refiller waits between rounds.
const ROUND: Duration = Duration::from_secs(1);
/// The pause between two members: claims get the connections in between.
const BETWEEN_MEMBERS: Duration = Duration::from_millis(5);

pub fn kinds() -> Vec<Kind<Runtime>> {
    let mut kinds = vec![Kind::single(REFILL), Kind::single(RECYCLE)];
    kinds.extend(super::warm_pool_database::kinds());
    kinds.extend(super::warm_pool_placed::kinds());
    kinds
}

/// `--warm-pool schema=50,database=10,shared=50`: the low-water mark per mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    pub schema: i64,
    pub database: i64,
    pub shared: i64,
}

impl Targets {
    pub fn is_off(&self) -> bool {
        self.schema == 0 && self.database == 0 && self.shared == 0
    }

    fn of(&self, mode: Mode) -> i64 {
        match mode {
            Mode::Schema => self.schema,
            Mode::Shared => self.shared,
            Mode::Database => self.database,
        }
    }
}

impl std::str::FromStr for Targets {
    type Err = String;

    /// `mode=count` pairs, comma-separated; a mode left out has no pool.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut t = Targets::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (mode, n) = part.split_once('=').ok_or_else(|| {
                format!("--warm-pool: expected mode=count (e.g. schema=50), got {part:?}")
            })?;
            let n: i64 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| (0..=10_000).contains(n))
                .ok_or_else(|| {
                    format!("--warm-pool: {mode}'s count must be a whole number from 0 to 10000, got {n:?}")
                })?;
            match mode.trim() {
                "schema" => t.schema = n,
                "database" => t.database = n,
                "shared" => t.shared = n,
                other => {
                    return Err(format!(
                        "--warm-pool: mode must be schema, database or shared, got {other:?}"
                    ))
                }
            }
        }
        Ok(t)
    }
}

/// The template version a member of `mode` must be at to be claimed: the template's
/// latest (schema mode), or the shared pool's tables' (shared mode).
fn version_of(rt: &Runtime, mode: Mode) -> Version<'static> {
    match mode {
        Mode::Schema | Mode::Database => Version::Exactly(rt.template.latest_version()),
        Mode::Shared => Version::Built(shared_mode::POOL_ROW),
    }
}

async fn current_version(
    rt: &Runtime,
    c: &impl deadpool_postgres::GenericClient,
    mode: Mode,
) -> Result<i32, service::Error> {
    match version_of(rt, mode) {
        Version::Exactly(v) => Ok(v),
        Version::Built(_) => shared_mode::pool_version(c).await,
    }
}

/// A create's claim, in its transaction: a member of the create's mode at the current
/// template version, or `None` (no pool, an empty pool): the create then makes the
/// tenant from scratch. Pipelined with the create's first statements (database mode:
/// with its `register` step's).
pub async fn claim(
    rt: &Runtime,
    tx: &Transaction<'_>,
    v: &Validated,
) -> Result<Option<Member>, service::Error> {
    let mode = Mode::from(v.isolation);
    Ok(store::claim(tx, DEFAULT, v.isolation, version_of(rt, mode)).await?)
}

/// The create's one dispatch point: the claimed member renamed to the tenant, or the
/// tenant made from scratch.
pub async fn provision(
    rt: &Runtime,
    tx: &Transaction<'_>,
    v: &Validated,
    pre: domain::Prechecked,
    claimed: Option<Member>,
) -> Result<Provisioned, service::Error> {
    match claimed {
        Some(m) => {
            tracing::debug!(tenant.name = %v.slug, member = %m.key, "claimed a warm pool member");
            domain::provision_claimed(&rt.platform, tx, v, pre, &m).await
        }
        None => domain::provision(&rt.platform, tx, v, pre).await,
    }
}

/// The refusal of a key that is not a member's.
pub(super) fn bad_key() -> crate::problem::Problem {
    crate::problem::Problem::bad_field("key", "a warm pool key is 20 lower-case hex digits")
}

/// A member's names from its key (a step's params), or the refusal.
pub(super) fn member_of(key: &str) -> Result<Slug, StepError> {
    Slug::warm_member(key).ok_or_else(|| StepError::Rejected(bad_key()))
}

/// A fresh member key: 20 random hex digits.
pub fn new_key() -> String {
    Uuid::new_v4().simple().to_string()[12..].to_string()
}

/// A member's login password, given at its refill: its SCRAM verifier (for the
/// member's role) and the password sealed as the registry keeps it (for its pool row,
/// then its tenant's row).
pub(super) async fn member_password(rt: &Runtime) -> Result<(String, Vec<u8>), service::Error> {
    let (password, verifier) = crate::secrets::new_password();
    let sealed = rt.platform.key.seal(&service::seal_password(&password)?);
    let verifier = verifier
        .await
        .expect("computing a SCRAM verifier does not panic");
    Ok((verifier, sealed))
}

/// `warm_pool.refill`: one member of `mode` named by `key`, unless the pool already
/// holds `target` current members. Returns the member made.
pub async fn refill_one(
    rt: &Runtime,
    mode: Mode,
    key: &str,
    target: i64,
) -> Result<Option<Member>, Error> {
    let member = Slug::warm_member(key).ok_or_else(|| Error::Rejected(bad_key()))?;
    if mode == Mode::Database {
        return super::warm_pool_database::refill_one(rt, key, target).await;
    }
    let isolation = Isolation::from(mode);
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    store::lock_refill(&tx, DEFAULT, isolation)
        .await
        .map_err(service::Error::from)?;
    let version = current_version(rt, &tx, mode).await?;
    if store::count(&tx, DEFAULT, isolation, version)
        .await
        .map_err(service::Error::from)?
        >= target
    {
        return Ok(None);
    }
    let (verifier, credentials) = member_password(rt).await?;
    let m = Member {
        id: Uuid::now_v7(),
        key: key.to_string(),
        isolation,
        template_version: version,
        server: DEFAULT.to_string(),
        credentials: Some(credentials),
    };
    let mut sql = warm::member_sql(
        mode,
        &member,
        &m.id.to_string(),
        &rt.template.full_sql(),
        !rt.caps.superuser,
    );
    sql.push_str(&warm::member_password_sql(&member, &verifier));
    tx.batch_execute(&sql).await?;
    // The least-privilege check a create runs, run here: a claim changes no privilege.
    crate::pg::hardening::check(&tx, &member.fixed_role_names())
        .await
        .map_err(service::Error::from)?;
    store::insert(&tx, &m).await.map_err(service::Error::from)?;
    ops::record_done(&tx, Uuid::now_v7(), REFILL, m.id, member.as_str()).await?;
    rt.engine.commit(tx, REFILL).await?;
    Ok(Some(m))
}

/// `warm_pool.recycle`: drops one member of `mode` whose template version is not the
/// current one (`only`: that member, if it is stale). Returns it, or `None` when none
/// is stale.
pub async fn recycle_one(
    rt: &Runtime,
    mode: Mode,
    only: Option<&str>,
) -> Result<Option<Member>, Error> {
    if mode == Mode::Database {
        // Its database cannot be dropped in a transaction: steps of the engine.
        return super::warm_pool_database::recycle_one(rt, only).await;
    }
    let isolation = Isolation::from(mode);
    let mut client = rt.pool.get().await?;
    let tx = client.transaction().await?;
    let version = current_version(rt, &tx, mode).await?;
    let Some(m) = store::take_stale(&tx, DEFAULT, isolation, Some(version), only)
        .await
        .map_err(service::Error::from)?
    else {
        return Ok(None);
    };
    let member = Slug::warm_member(&m.key).expect("the table's CHECK keeps keys 20 hex digits");
    tx.batch_execute(&warm::drop_sql(mode, &member, &m.id.to_string()))
        .await?;
    ops::record_done(&tx, Uuid::now_v7(), RECYCLE, m.id, member.as_str()).await?;
    rt.engine.commit(tx, RECYCLE).await?;
    Ok(Some(m))
}

// The parts of a recycle that take its member in steps of the engine (the database
// pool's, `warm_pool_database`, and other servers', `warm_pool_placed`).

/// A recycle kind: `take` (the member's row deleted, with the step's journal row),
/// then `drop` (its objects dropped, the operation closed).
pub(super) fn recycle_kind(
    name: &'static str,
    take: ops::StepFn<Runtime>,
    drop: ops::StepFn<Runtime>,
) -> Kind<Runtime> {
    let step = |name, reaches_out, apply| ops::Step {
        name,
        reaches_out,
        apply,
        compensate: None,
        skip: None,
    };
    Kind {
        name,
        steps: vec![step("take", false, take), step("drop", true, drop)],
        // Once its row is gone the member is nobody's: the drop is finished.
        point_of_no_return: 1,
    }
}

/// Runs a refill of `kind` (`params` journaled) for the member `id` named by `key`:
/// the member, if the operation made it (none when the pool was full).
pub(super) async fn run_refill(
    rt: &Runtime,
    kind: &'static str,
    params: Value,
    (id, key): (Uuid, &str),
    (server, isolation): (&str, Isolation),
) -> Result<Option<Member>, Error> {
    let new = ops::NewOp {
        kind,
        tenant_id: None,
        tenant_name: &format!("wp--{key}"),
        params,
        idempotency: None,
    };
    let made = matches!(rt.engine.run(rt, new).await?, ops::Done::Finished(o) if o["made"] == true);
    Ok(made.then(|| Member {
        id,
        key: key.to_string(),
        isolation,
        template_version: rt.template.latest_version(),
        server: server.to_string(),
        credentials: None,
    }))
}

/// Runs a recycle of `kind` (`params` journaled) on the pool of `isolation` on
/// `server`: the member it took, or `None` when there was none to take.
pub(super) async fn run_recycle(
    rt: &Runtime,
    kind: &'static str,
    params: Value,
    (server, isolation): (&str, Isolation),
) -> Result<Option<Member>, Error> {
    let new = ops::NewOp {
        kind,
        tenant_id: None,
        tenant_name: "wp--recycle",
        params,
        idempotency: None,
    };
    Ok(taken_member(
        rt.engine.run(rt, new).await?,
        server,
        isolation,
    ))
}

/// The member a recycle operation took, from its outcome (`None`: none was stale).
fn taken_member(done: ops::Done, server: &str, isolation: Isolation) -> Option<Member> {
    let taken = match done {
        ops::Done::Finished(outcome) => outcome,
        ops::Done::Replay(_) => Value::Null,
    };
    let id = taken["id"].as_str().and_then(|id| id.parse::<Uuid>().ok());
    Some(Member {
        id: id?,
        key: taken["key"].as_str()?.to_string(),
        isolation,
        template_version: taken["template_version"].as_i64().unwrap_or_default() as i32,
        server: server.to_string(),
        credentials: None,
    })
}

/// A recycle's `take`: one member's row deleted (no claim can get it from then on),
/// in one transaction with the step's journal row; its outcome names the member.
pub(super) async fn take_in(
    rt: &Runtime,
    run: &mut Run,
    (server, isolation): (&str, Isolation),
    current: Option<i32>,
    only: Option<&str>,
) -> Result<Value, StepError> {
    let mut client = rt.pool.get().await.map_err(failed)?;
    let tx = client.transaction().await.map_err(failed)?;
    let taken = store::take_stale(&tx, server, isolation, current, only)
        .await
        .map_err(failed)?;
    let outcome = match taken {
        Some(m) => json!({"key": m.key, "id": m.id, "template_version": m.template_version}),
        None => json!({"key": null}),
    };
    run.applied_in(&tx, &outcome).await?;
    tx.commit().await.map_err(failed)?;
    Ok(outcome)
}

/// Closes a recycle with `outcome` (what `take` took).
pub(super) async fn finish(
    rt: &Runtime,
    run: &mut Run,
    outcome: Value,
) -> Result<Value, StepError> {
    let mut client = rt.pool.get().await.map_err(failed)?;
    let tx = client.transaction().await.map_err(failed)?;
    run.finish_in(&tx, &outcome, None).await?;
    tx.commit().await.map_err(failed)?;
    Ok(outcome)
}

/// Whether claims (and everything else) need the connections now: requests are
/// waiting for one, or the pool is full with at most one idle.
fn busy(rt: &Runtime) -> bool {
    pool_busy(&rt.pool)
}

fn pool_busy(pool: &deadpool_postgres::Pool) -> bool {
    let s = pool.status();
    s.waiting > 0 || (s.size >= s.max_size && s.available <= 1)
}

/// [`busy`], or the connections to `server` are wanted by its tenants' creates.
async fn server_busy(rt: &Runtime, server: &str) -> bool {
    busy(rt)
        || match super::servers::opened(&rt.platform, server).await {
            Ok(s) => pool_busy(&s.pool),
            Err(_) => true,
        }
}

/// The process's clock for [`create_started`], in milliseconds.
static CLOCK: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);
/// When the last create started, on [`CLOCK`] (+1, so 0 means never).
static LAST_CREATE: AtomicU64 = AtomicU64::new(0);
/// Creates closer together than this are a burst: the refiller waits for its end.
const BURST_GAP: Duration = Duration::from_millis(200);

fn clock_ms() -> u64 {
    CLOCK.elapsed().as_millis() as u64 + 1
}

/// Noted at the start of every create, so that the refiller can keep out of a burst.
pub fn create_started() {
    LAST_CREATE.store(clock_ms(), Ordering::Relaxed);
}

/// Whether creates are arriving now. A member costs the CPU of a create made from
/// scratch, on the cores that serve the claims: made during a burst, it slowed each
/// claim by a fifth (a 4.3 ms claim took 5.8 ms, docs/warm_pool.md).
pub(super) fn creates_arriving() -> bool {
    let last = LAST_CREATE.load(Ordering::Relaxed);
    last != 0 && clock_ms().saturating_sub(last) < BURST_GAP.as_millis() as u64
}

/// How a round paces its refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Make every member missing now.
    Now,
    /// Make none while creates are arriving, unless the mode's pool is down to a
    /// quarter of its target: the next round (a second later) goes on.
    AroundCreates,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub made: usize,
    pub recycled: usize,
}

/// One round: every stale member dropped, then each pooled mode refilled to its target
/// one member at a time, yielding whenever the connections are wanted elsewhere.
pub async fn round(rt: &Runtime, targets: Targets) -> Result<Round, Error> {
    round_paced(rt, targets, Pace::Now).await
}

/// [`round`], paced.
pub async fn round_paced(rt: &Runtime, targets: Targets, pace: Pace) -> Result<Round, Error> {
    let mut done = Round::default();
    for mode in [Mode::Schema, Mode::Shared, Mode::Database] {
        let stale = {
            let c = rt.pool.get().await?;
            let version = current_version(rt, &c, mode).await?;
            store::any_stale(&c, DEFAULT, Isolation::from(mode), version)
                .await
                .map_err(service::Error::from)?
        };
        if stale {
            while recycle_one(rt, mode, None).await?.is_some() {
                done.recycled += 1;
            }
        }
        let target = targets.of(mode);
        while target > 0 && !busy(rt) {
            if pace == Pace::AroundCreates && creates_arriving() && !low(rt, mode, target).await? {
                break;
            }
            if refill_one(rt, mode, &new_key(), target).await?.is_none() {
                break;
            }
            done.made += 1;
            tokio::time::sleep(BETWEEN_MEMBERS).await;
        }
    }
    placed_round(rt, targets, pace, &mut done).await?;
    Ok(done)
}

/// The schema- and database-mode pools of the other servers
/// (workflows::warm_pool_placed): stale members recycled, then each server that takes
/// new tenants refilled to the mode's target, one member at a time, while neither
/// the control database's connections nor that server's are wanted and no burst of
/// creates is arriving. A server that fails is logged and skipped this round.
async fn placed_round(
    rt: &Runtime,
    targets: Targets,
    pace: Pace,
    done: &mut Round,
) -> Result<(), Error> {
    use super::warm_pool_placed::{self as placed, Which};
    let version = rt.template.latest_version();
    for (server, placeable) in placed::servers(rt).await? {
        for isolation in placed::MODES {
            let target = targets.of(isolation.into());
            let tended = async {
                let c = rt.pool.get().await?;
                let stale = store::any_stale(&c, &server, isolation, version)
                    .await
                    .map_err(service::Error::from)?;
                drop(c);
                if stale {
                    while placed::recycle_one(rt, &server, isolation, Which::Stale(None))
                        .await?
                        .is_some()
                    {
                        done.recycled += 1;
                    }
                }
                while placeable && target > 0 && !server_busy(rt, &server).await {
                    if pace == Pace::AroundCreates && creates_arriving() {
                        break;
                    }
                    if placed::refill_one(rt, &server, isolation, &new_key(), target)
                        .await?
                        .is_none()
                    {
                        break;
                    }
                    done.made += 1;
                    tokio::time::sleep(BETWEEN_MEMBERS).await;
                }
                Ok::<_, Error>(())
            };
            if let Err(e) = tended.await {
                tracing::warn!(server = %server, isolation = isolation.as_str(), error = %e,
                    "warm pool of a server not tended this round");
            }
        }
    }
    Ok(())
}

/// Whether the pool of `mode` is down to a quarter of its target.
async fn low(rt: &Runtime, mode: Mode, target: i64) -> Result<bool, Error> {
    let c = rt.pool.get().await?;
    let version = current_version(rt, &c, mode).await?;
    let ready = store::count(&c, DEFAULT, Isolation::from(mode), version)
        .await
        .map_err(service::Error::from)?;
    Ok(ready * 4 <= target)
}

/// `serve --warm-pool`: refills the pool to its targets, every second, around the
/// creates ([`Pace::AroundCreates`]).
pub async fn run_forever(rt: Arc<Runtime>, targets: Targets) {
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match round_paced(&rt, targets, Pace::AroundCreates).await {
            Ok(r) if r.made + r.recycled > 0 => {
                tracing::debug!(made = r.made, recycled = r.recycled, "warm pool round")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "warm pool round failed; retrying next round"),
        }
        if targets.database > 0 {
            let held = super::warm_pool_holds::top_up(&rt, targets.database, Pace::AroundCreates);
            if let Err(e) = held.await {
                tracing::warn!(error = %e, "no sessions held ahead this round");
            }
        }
    }
}

/// Members per server, mode and template version, for `status`.
pub async fn counts(rt: &Runtime) -> Result<Vec<store::Counted>, service::Error> {
    let c = rt.pool.get().await?;
    Ok(store::counts(&c).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_the_flag_reads() {
        let t: Targets = "schema=50,database=10,shared=50".parse().unwrap();
        assert_eq!(
            t,
            Targets {
                schema: 50,
                database: 10,
                shared: 50
            }
        );
        assert!("".parse::<Targets>().unwrap().is_off());
        let e = "schema=lots".parse::<Targets>().unwrap_err();
        assert!(e.contains("schema's count"), "{e}");
        let e = "vault=3".parse::<Targets>().unwrap_err();
        assert!(e.contains("schema, database or shared"), "{e}");
        assert!("schema".parse::<Targets>().is_err());
        assert!("schema=-1".parse::<Targets>().is_err());
    }

    #[test]
    fn keys_are_member_keys() {
        for _ in 0..100 {
            assert!(Slug::warm_member(&new_key()).is_some());
        }
    }
}
