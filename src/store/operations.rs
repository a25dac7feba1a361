//! SQL for the operation engine's tables: `operations` (one row per operation: kind,
//! tenant, input, state, lease, the process running it), `operation_steps` (its
//! journal: intent, outcome, state per step), `instances` (the processes), and the
//! tenant row's ownership columns (`owner_op`, `generation`). The caller owns the
//! transaction.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

type Result<T> = std::result::Result<T, tokio_postgres::Error>;

/// An operation row as the engine reads it back.
#[derive(Debug, Clone)]
pub struct OperationRow {
    pub id: Uuid,
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: String,
    pub state: String,
    pub phase: String,
    pub params: Value,
    pub instance_id: Option<Uuid>,
    /// An operator asked to abort it (see [`request_abort`]).
    pub abort_requested: bool,
    /// The steps its build listed for its kind, and its point of no return (`None`:
    /// begun before they were recorded).
    pub plan: Option<(Vec<String>, i32)>,
}

/// One step's journal row.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub seq: i32,
    pub name: String,
    pub state: String,
    pub intent: Option<Value>,
    pub outcome: Option<Value>,
}

const OPERATION: &str = "id, kind, tenant_id, tenant_name, state, phase, params, instance_id,
     abort_requested_at IS NOT NULL, steps, point_of_no_return";

fn operation(r: &tokio_postgres::Row) -> OperationRow {
    OperationRow {
        id: r.get(0),
        kind: r.get(1),
        tenant_id: r.get(2),
        tenant_name: r.get(3),
        state: r.get(4),
        phase: r.get(5),
        params: r.get(6),
        instance_id: r.get(7),
        abort_requested: r.get(8),
        plan: r
            .get::<_, Option<Vec<String>>>(9)
            .zip(r.get::<_, Option<i32>>(10)),
    }
}

pub async fn get(c: &impl GenericClient, id: Uuid) -> Result<Option<OperationRow>> {
    Ok(c.query_opt(
        &format!("SELECT {OPERATION} FROM berqenas.operations WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(operation))
}

/// The state of the operation that runs under an idempotency key, if any.
pub async fn state_by_idempotency_key(c: &impl GenericClient, key: &str) -> Result<Option<String>> {
    Ok(c.query_opt(
        "SELECT state FROM berqenas.operations WHERE idempotency_key = $1",
        &[&key],
    )
    .await?
    .map(|r| r.get(0)))
}

/// The operation's journal, in step order.
pub async fn steps(c: &impl GenericClient, id: Uuid) -> Result<Vec<StepRow>> {
    Ok(c.query(
        "SELECT seq, name, state, intent, outcome FROM berqenas.operation_steps
              WHERE operation_id = $1 ORDER BY seq",
        &[&id],
    )
    .await?
    .iter()
    .map(|r| StepRow {
        seq: r.get(0),
        name: r.get(1),
        state: r.get(2),
        intent: r.get(3),
        outcome: r.get(4),
    })
    .collect())
}

/// Writes (or rewrites) a step's journal row; `intent`/`outcome` `None` keep theirs.
pub async fn put_step(
    c: &impl GenericClient,
    id: Uuid,
    seq: i32,
    name: &str,
    state: &str,
    intent: Option<&Value>,
    outcome: Option<&Value>,
) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO berqenas.operation_steps (operation_id, seq, name, state, intent, outcome)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (operation_id, seq) DO UPDATE
                SET state = EXCLUDED.state, at = now(),
                    intent = coalesce(EXCLUDED.intent, berqenas.operation_steps.intent),
                    outcome = coalesce(EXCLUDED.outcome, berqenas.operation_steps.outcome)",
        )
        .await?;
    c.execute(&stmt, &[&id, &seq, &name, &state, &intent, &outcome])
        .await?;
    Ok(())
}

pub async fn set_phase(c: &impl GenericClient, id: Uuid, phase: &str) -> Result<()> {
    c.execute(
        "UPDATE berqenas.operations SET phase = $2 WHERE id = $1",
        &[&id, &phase],
    )
    .await?;
    Ok(())
}

/// Closes a running operation; returns (kind, seconds it took) if it was running.
pub async fn close(
    c: &impl GenericClient,
    id: Uuid,
    state: &str,
    error: Option<&str>,
    response: Option<&[u8]>,
) -> Result<Option<(String, f64)>> {
    let stmt = c
        .prepare_cached(
            "UPDATE berqenas.operations
                SET state = $2, error = $3, response = coalesce($4, response), finished_at = now(),
                    response_status = CASE WHEN $2 = 'succeeded' THEN 200 END
              WHERE id = $1 AND state = 'running'
             RETURNING kind, extract(epoch FROM clock_timestamp() - created_at)::float8",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&id, &state, &error, &response])
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Renews the leases of these operations, which this instance runs. Returns those an
/// operator asked to abort: the keeper's round trip carries the request back.
pub async fn renew(
    c: &impl GenericClient,
    instance: Uuid,
    ids: &[Uuid],
    secs: f64,
) -> Result<Vec<Uuid>> {
    Ok(c.query(
        "UPDATE berqenas.operations SET lease_until = now() + make_interval(secs => $3)
              WHERE id = ANY($2) AND instance_id = $1 AND state = 'running'
             RETURNING id, abort_requested_at IS NOT NULL",
        &[&instance, &ids, &secs],
    )
    .await?
    .iter()
    .filter(|r| r.get::<_, bool>(1))
    .map(|r| r.get(0))
    .collect())
}

/// A running operation as an abort request judges it: read under its row's lock,
/// so two requests, or a request and the settling of a dead operation, see one
/// another.
#[derive(Debug, Clone)]
pub struct AbortTarget {
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: String,
    pub state: String,
    pub phase: String,
    /// Its steps applied so far (they are applied in order).
    pub applied: usize,
}

pub async fn abort_target(tx: &impl GenericClient, id: Uuid) -> Result<Option<AbortTarget>> {
    Ok(tx
        .query_opt(
            "SELECT kind, tenant_id, tenant_name, state, phase,
                    (SELECT count(*) FROM berqenas.operation_steps s
                      WHERE s.operation_id = o.id AND s.state = 'applied')
               FROM berqenas.operations o WHERE o.id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .map(|r| AbortTarget {
            kind: r.get(0),
            tenant_id: r.get(1),
            tenant_name: r.get(2),
            state: r.get(3),
            phase: r.get(4),
            applied: r.get::<_, i64>(5) as usize,
        }))
}

/// Records an operator's abort request (the first one's time is kept).
pub async fn request_abort(tx: &impl GenericClient, id: Uuid) -> Result<()> {
    tx.execute(
        "UPDATE berqenas.operations SET abort_requested_at = coalesce(abort_requested_at, now())
          WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Takes over the oldest operation that is running but dead: its lease lapsed, or the
/// instance running it is gone. Another instance's reconciler skips it meanwhile.
pub async fn claim_dead(
    c: &impl GenericClient,
    instance: Uuid,
    kinds: &[&str],
    skip: &[Uuid],
    secs: f64,
) -> Result<Option<OperationRow>> {
    Ok(c
        .query_opt(
            &format!(
                "UPDATE berqenas.operations SET instance_id = $1, lease_until = now() + make_interval(secs => $4)
                  WHERE id = (
                        SELECT o.id FROM berqenas.operations o
                         WHERE o.state = 'running' AND o.kind = ANY($2) AND o.id <> ALL($3)
                           AND (o.lease_until < now()
                                OR o.instance_id IN (SELECT id FROM berqenas.instances WHERE stopped_at IS NOT NULL))
                         ORDER BY o.created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING {OPERATION}"
            ),
            &[&instance, &kinds, &skip, &secs],
        )
        .await?
        .as_ref()
        .map(operation))
}

/// Registers a process; the instances of the same identity still marked running are
/// its predecessors, dead for certain (one process per identity): they are stopped.
/// Returns how many were.
pub async fn register_instance(
    c: &impl GenericClient,
    id: Uuid,
    identity: &str,
    pid: i32,
) -> Result<u64> {
    let replaced = c
        .execute(
            "UPDATE berqenas.instances SET stopped_at = now()
              WHERE identity = $1 AND stopped_at IS NULL",
            &[&identity],
        )
        .await?;
    c.execute(
        "INSERT INTO berqenas.instances (id, identity, pid) VALUES ($1, $2, $3)",
        &[&id, &identity, &pid],
    )
    .await?;
    Ok(replaced)
}

pub async fn heartbeat(c: &impl GenericClient, id: Uuid) -> Result<()> {
    c.execute(
        "UPDATE berqenas.instances SET heartbeat_at = now() WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

pub async fn stop_instance(c: &impl GenericClient, id: Uuid) -> Result<()> {
    c.execute(
        "UPDATE berqenas.instances SET stopped_at = now() WHERE id = $1 AND stopped_at IS NULL",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Marks this instance as the one running the embedded cluster the control database
/// is in.
pub async fn mark_embedded(c: &impl GenericClient, id: Uuid) -> Result<()> {
    c.execute(
        "UPDATE berqenas.instances SET embedded = true WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// A live instance: not stopped, and heard from within the given seconds.
#[derive(Debug, Clone)]
pub struct LiveInstance {
    pub id: Uuid,
    pub identity: String,
    pub pid: i32,
    pub embedded: bool,
}

/// The live instances of other identities than `identity` (heard from within
/// `within_secs`), oldest first.
pub async fn live_instances(
    c: &impl GenericClient,
    identity: &str,
    within_secs: f64,
) -> Result<Vec<LiveInstance>> {
    Ok(c.query(
        "SELECT id, identity, pid, embedded FROM berqenas.instances
              WHERE stopped_at IS NULL AND identity <> $1
                AND heartbeat_at > now() - make_interval(secs => $2)
              ORDER BY started_at",
        &[&identity, &within_secs],
    )
    .await?
    .iter()
    .map(|r| LiveInstance {
        id: r.get(0),
        identity: r.get(1),
        pid: r.get(2),
        embedded: r.get(3),
    })
    .collect())
}

/// How long a change waits for another one on the same tenant name.
pub const NAME_WAIT: &str = "10s";

/// Takes the tenant-name advisory lock for the rest of the transaction, waiting at
/// most [`NAME_WAIT`] (then SQLSTATE 55P03, `lock_not_available`). One round trip: the
/// caller's lock timeout is read (the subquery runs first), the bounded wait set, the
/// lock taken and the timeout put back, in select-list order.
pub async fn lock_name(c: &impl GenericClient, tenant_name: &str) -> Result<()> {
    let stmt = prepare_lock_name(c).await?;
    lock_name_prepared(c, &stmt, tenant_name).await
}

/// [`lock_name`]'s statement, prepared (cached per connection). A caller that
/// pipelines the lock behind other requests prepares it first: a statement still to
/// be described would wait for that round trip, and the requests polled after it
/// would go out before it.
pub async fn prepare_lock_name(c: &impl GenericClient) -> Result<tokio_postgres::Statement> {
    c.prepare_cached(&format!(
        "SELECT pg_catalog.set_config('lock_timeout', '{NAME_WAIT}', true),
                pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0)),
                pg_catalog.set_config('lock_timeout', b.v, true)
           FROM (SELECT pg_catalog.current_setting('lock_timeout') AS v OFFSET 0) b"
    ))
    .await
}

/// [`lock_name`] with its statement from [`prepare_lock_name`]: the request goes out
/// when the future is first polled.
pub async fn lock_name_prepared(
    c: &impl GenericClient,
    stmt: &tokio_postgres::Statement,
    tenant_name: &str,
) -> Result<()> {
    c.execute(stmt, &[&format!("berqenas.tenant:{tenant_name}")])
        .await?;
    Ok(())
}

/// Who owns a tenant now: (owner operation, its kind, whether it is running, generation).
#[derive(Debug, Clone)]
pub struct Ownership {
    pub owner: Option<Uuid>,
    pub owner_kind: Option<String>,
    pub running: bool,
    pub generation: i64,
}

/// The tenant's ownership, its row locked for the rest of the transaction (the caller
/// holds the tenant's name lock first: one lock order everywhere).
pub async fn lock_ownership(c: &impl GenericClient, tenant: Uuid) -> Result<Option<Ownership>> {
    let stmt = c
        .prepare_cached(
            "SELECT t.owner_op, o.kind, coalesce(o.state = 'running', false), t.generation
               FROM berqenas.tenants t LEFT JOIN berqenas.operations o ON o.id = t.owner_op
              WHERE t.id = $1 FOR UPDATE OF t",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&tenant]).await?.map(|r| Ownership {
        owner: r.get(0),
        owner_kind: r.get(1),
        running: r.get(2),
        generation: r.get(3),
    }))
}

/// Makes `op` the tenant's owner; returns the new generation.
pub async fn take_ownership(c: &impl GenericClient, tenant: Uuid, op: Uuid) -> Result<i64> {
    let stmt = c
        .prepare_cached(
            "UPDATE berqenas.tenants SET owner_op = $2, generation = generation + 1
              WHERE id = $1 RETURNING generation",
        )
        .await?;
    Ok(c.query_one(&stmt, &[&tenant, &op]).await?.get(0))
}

/// Gives the tenant up, if `op` still owns it.
pub async fn release_ownership(c: &impl GenericClient, tenant: Uuid, op: Uuid) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "UPDATE berqenas.tenants SET owner_op = NULL WHERE id = $1 AND owner_op = $2",
        )
        .await?;
    c.execute(&stmt, &[&tenant, &op]).await?;
    Ok(())
}

/// Forgets idempotency keys after a day, as clients are told; the operation stays.
pub async fn expire_idempotency_keys(c: &impl GenericClient) -> Result<u64> {
    c.execute(
        "UPDATE berqenas.operations SET idempotency_key = NULL, response = NULL
          WHERE idempotency_key IS NOT NULL AND created_at < now() - interval '24 hours'",
        &[],
    )
    .await
}

/// An operation as the operations API shows it: the row, and when anything of it last
/// moved (a step, or its close).
#[derive(Debug, Clone)]
pub struct OperationInfo {
    pub id: Uuid,
    pub kind: String,
    pub tenant_id: Option<Uuid>,
    pub tenant_name: String,
    pub state: String,
    pub phase: String,
    /// What the engine recorded as the failure: meant for the client (see
    /// `ops::engine`), never a database's own text.
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub abort_requested_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The steps its build listed for its kind (`None`: begun before they were
    /// recorded, or a one-transaction kind).
    pub steps: Option<Vec<String>>,
}

/// One journal row, with when it was last written.
#[derive(Debug, Clone)]
pub struct StepInfo {
    pub operation_id: Uuid,
    pub seq: i32,
    pub name: String,
    pub state: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub intent: Option<Value>,
    pub outcome: Option<Value>,
}

const INFO: &str =
    "o.id, o.kind, o.tenant_id, o.tenant_name, o.state, o.phase, o.error, o.created_at,
     greatest(o.created_at, o.finished_at,
              (SELECT max(s.at) FROM berqenas.operation_steps s WHERE s.operation_id = o.id)),
     o.finished_at, o.abort_requested_at, o.steps";

fn info(r: &tokio_postgres::Row) -> OperationInfo {
    OperationInfo {
        id: r.get(0),
        kind: r.get(1),
        tenant_id: r.get(2),
        tenant_name: r.get(3),
        state: r.get(4),
        phase: r.get(5),
        error: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
        finished_at: r.get(9),
        abort_requested_at: r.get(10),
        steps: r.get(11),
    }
}

pub async fn find_info(c: &impl GenericClient, id: Uuid) -> Result<Option<OperationInfo>> {
    Ok(c.query_opt(
        &format!("SELECT {INFO} FROM berqenas.operations o WHERE o.id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(info))
}

/// Operations newest first (ids are UUIDv7), of one tenant (by name, or by id) and in
/// one state if given, older than `before` (the cursor).
pub async fn list_info(
    c: &impl GenericClient,
    tenant: Option<&str>,
    tenant_id: Option<Uuid>,
    state: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OperationInfo>> {
    Ok(c.query(
        &format!(
            "SELECT {INFO} FROM berqenas.operations o
              WHERE (($1::text IS NULL AND $2::uuid IS NULL) OR o.tenant_name = $1 OR o.tenant_id = $2)
                AND ($3::text IS NULL OR o.state = $3)
                AND ($4::uuid IS NULL OR o.id < $4)
              ORDER BY o.id DESC LIMIT $5"
        ),
        &[&tenant, &tenant_id, &state, &before, &limit],
    )
    .await?
    .iter()
    .map(info)
    .collect())
}

/// The journals of these operations, each in step order.
pub async fn steps_of(c: &impl GenericClient, ids: &[Uuid]) -> Result<Vec<StepInfo>> {
    Ok(c.query(
        "SELECT operation_id, seq, name, state, at, intent, outcome FROM berqenas.operation_steps
          WHERE operation_id = ANY($1) ORDER BY operation_id, seq",
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| StepInfo {
        operation_id: r.get(0),
        seq: r.get(1),
        name: r.get(2),
        state: r.get(3),
        at: r.get(4),
        intent: r.get(5),
        outcome: r.get(6),
    })
    .collect())
}
