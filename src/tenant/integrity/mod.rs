//! Every worker round: each tenant's roles are still what berqenas made them.
//!
//! - **Violations** (something berqenas never gives and a tenant cannot give itself:
//!   SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS, LOGIN on a group or
//!   owner role, a membership in any role but the ones its mode grants) are taken
//!   away, counted in `berqenas_security_violations_total`, logged as an error, audited
//!   (`tenant_security_violation`) and suspend the tenant: whatever got it there ran
//!   with more than the tenant's rights.
//! - **Drift** (what PostgreSQL lets a login role change about itself: its password,
//!   its `ALTER ROLE ... SET` defaults) is put back, audited
//!   (`tenant_role_drift_corrected`): the credentials berqenas hands out keep working,
//!   and the tenant's timeouts and search path stay the ones its quotas set.
//! - On a server other than `default` ([`check_server`]) the same checks run against
//!   that server's catalog; no snapshot spans it and the registry, so each tenant that
//!   looks wrong is judged again under its name lock, never while an operation works
//!   on it, and the workflow suspends it (an operation there).
//! - A round reads the roles only when something they are judged by moved since the
//!   last round that read them, and at least every [`SKIPPED_AT_MOST`] + 1 rounds
//!   (`unchanged`).
//! - PUBLIC is kept out of every database ([`hardening::close_databases`]) and out of
//!   the large-object writers in the control database; database-mode tenants' own
//!   databases are brought to the current hardening level, a few per round.

mod placed;
mod unchanged;

pub use placed::{check_server, Violation};
pub use unchanged::SKIPPED_AT_MOST;

use crate::secrets::ExposeSecret;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::roles::DefaultRole;
use super::service::Error;
use super::{suspension, Isolation, Status};
use crate::isolation::shared;
use crate::pg::session_lock::SessionLock;
use crate::pg::{hardening, Ident, Literal};
use crate::platform::Platform;
use crate::store::servers::DEFAULT;
use crate::store::{quotas, tenants, users};
use crate::{audit, metrics};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Tenants checked per snapshot (1,000 unless a test sets it). A round holds one
/// page's roles and catalog rows at a time, not every tenant's: at 10,000 tenants
/// (60,000 roles) the whole round's peaked near 60 MB above the server's usual
/// footprint every round (docs/scale.md).
static PAGE: AtomicI64 = AtomicI64::new(1000);

fn page_size() -> i64 {
    PAGE.load(Ordering::Relaxed)
}

/// Sets the page size of every later round in this process (for the tests: a small
/// page makes a few tenants span several pages).
#[doc(hidden)]
pub fn set_page_size(tenants: i64) {
    PAGE.store(tenants.max(1), Ordering::Relaxed);
}

/// After a page, a pause as long as the page took (at most [`MAX_PAUSE`]): a round
/// keeps at most about half a core busy. All at once, the pages of 10,000 tenants held
/// a backend for half a second, and with the disk round beside it both cores: the
/// API's requests meanwhile waited up to 24 ms (p99 over 5 s of `GET`s at 5,000/s,
/// against 3 ms between rounds; docs/scale.md).
pub(super) async fn pause_after(page_started: std::time::Instant) {
    tokio::time::sleep(page_started.elapsed().min(MAX_PAUSE)).await;
}

const MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// Tenant databases brought to the current hardening level per round.
const DATABASES_PER_ROUND: i64 = 20;

/// What one round found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// (role, what it had) for every violation taken away.
    pub violations: Vec<(String, String)>,
    /// Tenants suspended for a violation.
    pub suspended: Vec<String>,
    /// (role, what was put back: `password` or `settings`).
    pub drift: Vec<(String, String)>,
    /// Databases PUBLIC could reach, closed.
    pub databases_closed: Vec<String>,
    /// Tenant databases brought to the current hardening level.
    pub databases_hardened: usize,
    /// Whether the round read every tenant's roles (on `default`, or the server of
    /// [`check_server`]); `false`: nothing they are judged by had changed since the
    /// last round that did (`unchanged`).
    pub roles_read: bool,
}

/// A role berqenas made for a tenant, and what it may hold.
struct Expected {
    tenant: usize,
    role: String,
    login: bool,
    /// Roles it may be a member of.
    member_of: Vec<String>,
    /// Its `ALTER ROLE ... SET` defaults (login roles), as PostgreSQL stores them.
    settings: Option<Vec<(String, String)>>,
    /// A user's id (the sealed password lives on that row); `None`: the tenant's.
    user: Option<Uuid>,
}

use crate::store::tenants::{LiveRoles as Live, WithRoles};

/// A page of tenants as the registry has them.
struct Page {
    tenants: Vec<Live>,
    /// Their roles, with what each may hold.
    expected: Vec<Expected>,
    /// The verifier hashes berqenas last saw for their login roles.
    known: Known,
    /// The next page's `after` (see [`tenants::with_roles`]); `None` after the last.
    next: Option<Uuid>,
}

/// Any constant; rounds of several servers take turns (two putting back the same
/// role's settings at once would collide on its catalog row).
const ROUND_LOCK: i64 = 0x6265_7271_696e_7467; // "berqintg"

pub async fn run_once(p: &Platform) -> Result<Report> {
    let _turn = SessionLock::take(&p.config, "berqenas-role-check-lock", ROUND_LOCK).await?;
    round(p).await
}

async fn round(p: &Platform) -> Result<Report> {
    let mut report = Report::default();
    let client = p.pool.get().await?;
    let (closed, refused) = hardening::close_databases(&client).await?;
    report.databases_closed = closed;
    if !refused.is_empty() {
        tracing::warn!(databases = ?refused, "PUBLIC can connect to these databases and berqenas may not change that: tenant roles can reach them (a DBA must REVOKE CONNECT, TEMPORARY ... FROM PUBLIC)");
    }
    if p.caps.superuser {
        close_large_objects(&client).await?;
    }
    let before = unchanged::read(&client, &client, p.caps.superuser).await?;
    drop(client);
    if !unchanged::may_skip(p, p, DEFAULT, &before) {
        check_roles(p, &mut report).await?;
        unchanged::read_all(p, p, DEFAULT, before);
        report.roles_read = true;
    }
    if p.caps.superuser {
        report.databases_hardened = harden_databases(p).await?;
    }
    Ok(report)
}

/// Takes the large-object writers from PUBLIC in the control database again, should
/// anything have given them back.
async fn close_large_objects(c: &impl GenericClient) -> Result<()> {
    let fns: Vec<String> = hardening::LARGE_OBJECT_WRITERS
        .iter()
        .map(|f| format!("pg_catalog.{f}"))
        .collect();
    let open: i64 = c
        .query_one(
            "SELECT count(*) FROM unnest($1::text[]) f WHERE has_function_privilege('public', f::regprocedure, 'EXECUTE')",
            &[&fns],
        )
        .await?
        .get(0);
    if open > 0 {
        tracing::warn!("PUBLIC could create large objects in the control database again: revoked");
        c.batch_execute(&hardening::revoke_large_objects_sql())
            .await?;
    }
    Ok(())
}

/// The tenants on `server` that have roles (`which` of them): every role of theirs,
/// with what its mode grants it, and their verifier hashes; `superuser`: whether
/// berqenas is superuser there (the limits it sets). What the page's tenants have is
/// read in one round trip after them.
async fn page(
    superuser: bool,
    c: &impl GenericClient,
    server: &str,
    which: WithRoles,
) -> Result<Page> {
    let (tenants, next) = tenants::with_roles(c, server, which).await?;
    let ids: Vec<Uuid> = tenants.iter().map(|t| t.id).collect();
    let (quotas, logins, verifiers) = tokio::try_join!(
        quotas::effective_of(c, &ids),
        users::logins_of(c, &ids),
        tenants::verifier_hashes_of(c, &ids),
    )?;
    let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let quotas: HashMap<Uuid, crate::isolation::RoleLimits> = quotas
        .into_iter()
        .map(|(id, q)| (id, q.role_limits(superuser)))
        .collect();
    let hub = hardening::CONNECT_ROLE.to_string();
    let temp = hardening::TEMP_ROLE.to_string();
    let settings_of = |t: &Live| -> Option<Vec<(String, String)>> {
        expected_settings(quotas.get(&t.id)?, t.schema.as_ref()?.as_str()).into()
    };
    let mut out = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        let slug = &t.name;
        let reach = |extra: Option<String>| -> Vec<String> {
            match t.isolation {
                Isolation::Database => vec![],
                _ => std::iter::once(hub.clone())
                    .chain(std::iter::once(temp.clone()))
                    .chain(extra)
                    .collect(),
            }
        };
        out.push(Expected {
            tenant: i,
            role: slug.owner_role().as_str().to_string(),
            login: false,
            member_of: vec![],
            settings: Some(vec![]),
            user: None,
        });
        for role in DefaultRole::ALL {
            let pool = (t.isolation == Isolation::Shared)
                .then(|| shared::pool_role(role).as_str().to_string());
            out.push(Expected {
                tenant: i,
                role: slug.group_role(role).as_str().to_string(),
                login: false,
                member_of: reach(pool),
                settings: Some(vec![]),
                user: None,
            });
        }
        let pool_login = (t.isolation == Isolation::Shared).then(|| shared::POOL_LOGIN.to_string());
        out.push(Expected {
            tenant: i,
            role: slug.login_role().as_str().to_string(),
            login: true,
            member_of: reach(pool_login),
            settings: settings_of(t),
            user: None,
        });
    }
    for (tenant_id, user_id, db_user, role) in logins {
        let Some(&i) = index.get(&tenant_id) else {
            continue;
        };
        let slug = &tenants[i].name;
        let group = role;
        out.push(Expected {
            tenant: i,
            role: db_user.as_str().to_string(),
            login: true,
            member_of: vec![slug.group_role(group).as_str().to_string()],
            settings: settings_of(&tenants[i]),
            user: Some(user_id),
        });
    }
    Ok(Page {
        tenants,
        expected: out,
        known: verifiers.into_iter().collect(),
        next,
    })
}

/// A login role's `ALTER ROLE ... SET` defaults as berqenas makes them, sorted.
fn expected_settings(limits: &crate::isolation::RoleLimits, schema: &str) -> Vec<(String, String)> {
    let mut s = vec![
        (
            "idle_in_transaction_session_timeout".to_string(),
            limits.idle_in_transaction_timeout_ms.to_string(),
        ),
        ("search_path".to_string(), schema.to_string()),
        (
            "statement_timeout".to_string(),
            limits.statement_timeout_ms.to_string(),
        ),
    ];
    if let Some(kb) = limits.temp_file_limit_kb {
        s.push(("temp_file_limit".to_string(), kb.to_string()));
    }
    s.sort();
    s
}

/// A role's defaults in the catalog: (everywhere, sorted; whether any are per database).
async fn settings_now(c: &impl GenericClient, role: &str) -> Result<(Vec<(String, String)>, bool)> {
    let rows = c
        .query(
            "SELECT s.setdatabase::int, s.setconfig FROM pg_catalog.pg_db_role_setting s
              WHERE s.setrole = $1::text::regrole",
            &[&role],
        )
        .await?;
    let mut all: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.get::<_, i32>(0) == 0)
        .flat_map(|r| {
            r.get::<_, Vec<String>>(1)
                .into_iter()
                .map(|x| normalize(&x))
        })
        .collect();
    all.sort();
    Ok((all, rows.iter().any(|r| r.get::<_, i32>(0) != 0)))
}

/// What the catalog says of one role.
struct Found {
    attributes: Vec<&'static str>,
    can_login: bool,
    member_of: Vec<String>,
    settings: Vec<(i32, Vec<String>)>,
    verifier: Option<String>,
}

/// What the catalog says of `roles`, each looked up once (a page's worth of names: by
/// index, 3 to 4 µs a name at 60,000 roles). A role's settings come with it, one row per
/// database they are for; its verifier only where berqenas is superuser (reading
/// `pg_authid`), and from `pg_roles` elsewhere. The names of the roles it is a member
/// of come from the role cache (`pg_get_userbyid`): joining `pg_roles`, a view that
/// joins the settings again, took a fifth more of the page's time.
async fn catalog(
    p: &Platform,
    c: &impl GenericClient,
    roles: &[&str],
) -> Result<HashMap<String, Found>> {
    let (table, verifier) = match p.caps.superuser {
        true => ("pg_catalog.pg_authid", "r.rolpassword"),
        false => ("pg_catalog.pg_roles", "NULL::text"),
    };
    let sql = format!(
        "WITH r AS (
           SELECT r.oid, r.rolname::text AS name, r.rolsuper, r.rolcreatedb, r.rolcreaterole,
                  r.rolreplication, r.rolbypassrls, r.rolcanlogin,
                  ARRAY(SELECT pg_catalog.pg_get_userbyid(am.roleid)::text
                          FROM pg_catalog.pg_auth_members am
                         WHERE am.member = r.oid ORDER BY 1) AS member_of,
                  {verifier} AS verifier
             FROM {table} r WHERE r.rolname = ANY($1))
         SELECT r.name, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication,
                r.rolbypassrls, r.rolcanlogin, r.member_of, r.verifier,
                s.setdatabase::int, s.setconfig
           FROM r LEFT JOIN pg_catalog.pg_db_role_setting s ON s.setrole = r.oid"
    );
    let mut found: HashMap<String, Found> = HashMap::new();
    for r in c.query(&sql, &[&roles]).await? {
        let f = found.entry(r.get(0)).or_insert_with(|| {
            let flags = [
                ("SUPERUSER", r.get::<_, bool>(1)),
                ("CREATEDB", r.get(2)),
                ("CREATEROLE", r.get(3)),
                ("REPLICATION", r.get(4)),
                ("BYPASSRLS", r.get(5)),
            ];
            Found {
                attributes: flags.iter().filter(|f| f.1).map(|f| f.0).collect(),
                can_login: r.get(6),
                member_of: r.get(7),
                settings: vec![],
                verifier: r.get(8),
            }
        });
        if let Some(db) = r.get::<_, Option<i32>>(9) {
            f.settings.push((db, r.get(10)));
        }
    }
    Ok(found)
}

/// A setting as `ALTER ROLE ... SET` stores it, with the quotes PostgreSQL adds
/// around identifiers that need them taken off.
fn normalize(setting: &str) -> (String, String) {
    let (k, v) = setting.split_once('=').unwrap_or((setting, ""));
    (k.to_string(), v.trim_matches('"').replace("\"\"", "\""))
}

async fn check_roles(p: &Platform, report: &mut Report) -> Result<()> {
    let mut after = Uuid::nil();
    loop {
        let page = WithRoles::Page {
            after,
            limit: page_size(),
        };
        let started = std::time::Instant::now();
        let Some(last) = check_page(p, page, report).await? else {
            return Ok(());
        };
        after = last;
        pause_after(started).await;
    }
}

/// One page of `default`'s tenants; the last tenant's id, or `None` after the last
/// page.
async fn check_page(p: &Platform, which: WithRoles, report: &mut Report) -> Result<Option<Uuid>> {
    let mut client = p.pool.get().await?;
    // One snapshot: the page's registry rows and their roles in the catalog as of the
    // same moment.
    let snapshot = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let Page {
        tenants,
        expected,
        known,
        next,
    } = page(p.caps.superuser, &snapshot, DEFAULT, which).await?;
    let names: Vec<&str> = expected.iter().map(|e| e.role.as_str()).collect();
    let found = catalog(p, &snapshot, &names).await?;
    snapshot.commit().await?;
    drop(client);
    let mut violating: HashMap<usize, Vec<String>> = HashMap::new();
    for e in &expected {
        let Some(f) = found.get(&e.role) else {
            continue; // dropped meanwhile, or never made: not this check's business
        };
        let t = &tenants[e.tenant];
        let i = issues(e, f, &known, t.id);
        if !i.bad.is_empty() {
            take_away(p, &e.role, f, &i.extra, !e.login).await?;
            count_violations(report, &e.role, &i.bad);
            tracing::error!(tenant.name = %t.name, role = %e.role, found = ?i.bad, "security violation: a tenant role had more than berqenas gives; taken away, tenant suspended");
            violating.entry(e.tenant).or_default().push(format!(
                "{} had {}",
                e.role,
                i.bad.join(", ")
            ));
        }
        if i.settings && put_settings_back(p, t, e).await? {
            report.drift.push((e.role.clone(), "settings".into()));
        }
        if i.password && check_password(p, t, e).await? {
            report.drift.push((e.role.clone(), "password".into()));
        }
    }
    for (i, what) in violating {
        let t = &tenants[i];
        if suspend_for(p, t, &what).await? {
            report.suspended.push(t.name.to_string());
        }
    }
    Ok(next)
}

type Known = HashMap<(Uuid, Option<Uuid>), Option<Vec<u8>>>;

/// What is wrong with one role: what it has that berqenas never gives (`bad`, of which
/// `extra` are the memberships), and whether its settings or password drifted.
struct Issues {
    bad: Vec<String>,
    extra: Vec<String>,
    settings: bool,
    password: bool,
}

fn issues(e: &Expected, f: &Found, known: &Known, tenant: Uuid) -> Issues {
    let mut bad: Vec<String> = f.attributes.iter().map(|a| a.to_string()).collect();
    if f.can_login && !e.login {
        bad.push("LOGIN".into());
    }
    let extra: Vec<String> = f
        .member_of
        .iter()
        .filter(|m| !e.member_of.contains(m))
        .cloned()
        .collect();
    bad.extend(extra.iter().map(|m| format!("membership in {m}")));
    let settings = e.settings.as_ref().is_some_and(|settings| {
        let mut actual: Vec<(String, String)> = f
            .settings
            .iter()
            .filter(|(db, _)| *db == 0)
            .flat_map(|(_, s)| s.iter().map(|x| normalize(x)))
            .collect();
        actual.sort();
        actual != *settings || f.settings.iter().any(|(db, _)| *db != 0)
    });
    let password = match (e.login, &f.verifier) {
        (true, Some(verifier)) => {
            let recorded = known.get(&(tenant, e.user)).cloned().flatten();
            recorded.as_deref() != Some(hex_sha(verifier).as_slice())
        }
        _ => false,
    };
    Issues {
        bad,
        extra,
        settings,
        password,
    }
}

fn count_violations(report: &mut Report, role: &str, bad: &[String]) {
    for b in bad {
        metrics::security_violation(if b.starts_with("membership") {
            "membership"
        } else {
            "attribute"
        });
        report.violations.push((role.to_string(), b.clone()));
    }
}

fn hex_sha(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// Removes the attributes and memberships a role should not have.
async fn take_away(
    p: &Platform,
    role: &str,
    f: &Found,
    extra_memberships: &[String],
    group_or_owner: bool,
) -> Result<()> {
    let r = Ident::new(role.to_string()).expect("catalog names are identifiers");
    let mut sql = String::new();
    for a in &f.attributes {
        sql.push_str(&format!("ALTER ROLE {r} NO{a};\n"));
    }
    if group_or_owner && f.can_login {
        sql.push_str(&format!("ALTER ROLE {r} NOLOGIN;\n"));
    }
    for m in extra_memberships {
        let m = Ident::new(m.to_string()).expect("catalog names are identifiers");
        sql.push_str(&format!("REVOKE {m} FROM {r};\n"));
    }
    p.pool.get().await?.batch_execute(&sql).await?;
    Ok(())
}

/// Suspends the tenant (if it is in use) and audits the violation, in one transaction.
/// Returns whether it was suspended now.
async fn suspend_for(p: &Platform, t: &Live, what: &[String]) -> Result<bool> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let slug = &t.name;
    super::service::lock_name(&tx, slug).await?;
    let Some(current) = tenants::find_for_update(&tx, &t.id.to_string()).await? else {
        return Ok(false);
    };
    let reason = format!("security violation: {}", what.join("; "));
    let reason: String = reason.chars().take(suspension::MAX_REASON).collect();
    let suspend = matches!(current.status, Status::Active | Status::Trial);
    let mut logins = Vec::new();
    if suspend {
        let cut = suspension::cut(&tx, &current, p.caps.superuser).await?;
        suspension::mark_suspended(&tx, current.id, Some(&reason), &cut).await?;
        suspension::announce_suspended(&tx, &current, "security_violation", Some(reason.clone()))
            .await?;
        logins = super::access::login_roles(&tx, &current).await?;
        audit::record(
            &tx,
            &audit::Entry {
                actor: "berqenas",
                action: "tenant_suspended",
                tenant_id: Some(current.id),
                tenant_name: Some(&current.name),
                operation_id: None,
                details: serde_json::json!({"reason": reason, "from": current.status.as_str(),
                    "disabled_roles": cut.roles, "revoked_memberships": cut.memberships}),
            },
        )
        .await?;
    }
    audit::record(
        &tx,
        &audit::Entry {
            actor: "berqenas",
            action: "tenant_security_violation",
            tenant_id: Some(current.id),
            tenant_name: Some(&current.name),
            operation_id: None,
            details: serde_json::json!({"found": what, "taken_away": true, "suspended": suspend}),
        },
    )
    .await?;
    tx.commit().await?;
    super::access::end_sessions(&client, &logins).await?;
    Ok(suspend)
}

/// `ALTER ROLE ... RESET ALL` (everywhere), then the settings berqenas gives. Decided
/// again under the tenant's name and row, from the registry as it is then: a quota
/// change committed since the round read it is not drift. Returns whether it changed
/// anything.
async fn put_settings_back(p: &Platform, t: &Live, e: &Expected) -> Result<bool> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    super::service::lock_name(&tx, &t.name).await?;
    let changed = settings_back_locked(p.caps.superuser, &tx, &tx, t, e).await?;
    tx.commit().await?;
    Ok(changed)
}

/// [`put_settings_back`] with the tenant's name locked in `tx` (the registry), the role
/// changed through `there` (its server: `tx` itself on `default`).
async fn settings_back_locked(
    superuser: bool,
    tx: &deadpool_postgres::Transaction<'_>,
    there: &impl GenericClient,
    t: &Live,
    e: &Expected,
) -> Result<bool> {
    let role = e.role.as_str();
    let r = Ident::new(role.to_string()).expect("catalog names are identifiers");
    let Some(tenant) = tenants::find_for_update(tx, &t.id.to_string()).await? else {
        return Ok(false);
    };
    let (Some(q), Some(schema)) = (quotas::effective(tx, t.id).await?, tenant.schema.as_ref())
    else {
        return Ok(false);
    };
    let settings = expected_settings(&q.role_limits(superuser), schema.as_str());
    let (found, per_database) = settings_now(there, role).await?;
    if found == settings && !per_database {
        return Ok(false);
    }
    let databases: Vec<String> = there
        .query(
            "SELECT d.datname::text FROM pg_catalog.pg_db_role_setting s
               JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
              WHERE s.setrole = $1::text::regrole",
            &[&role],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sql = format!("ALTER ROLE {r} RESET ALL;\n");
    for db in &databases {
        let db = Ident::new(db.clone()).expect("catalog names are identifiers");
        sql.push_str(&format!("ALTER ROLE {r} IN DATABASE {db} RESET ALL;\n"));
    }
    for (k, v) in &settings {
        let value = if k == "search_path" {
            // The schema as the registry holds it (`v` is its name).
            schema.to_string()
        } else {
            Literal(v).to_string()
        };
        let k = Ident::new(k.clone()).expect("static setting names");
        sql.push_str(&format!("ALTER ROLE {r} SET {k} = {value};\n"));
    }
    there.batch_execute(&sql).await?;
    audit::record(
        tx,
        &audit::Entry {
            actor: "berqenas",
            action: "tenant_role_drift_corrected",
            tenant_id: Some(t.id),
            tenant_name: Some(&t.name),
            operation_id: None,
            details: serde_json::json!({"role": role, "what": "settings",
                "found": found.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "in_databases": databases, "server": tenant.server}),
        },
    )
    .await?;
    metrics::role_drift_corrected("settings");
    tracing::warn!(tenant.name = %t.name, role, server = %tenant.server, "a tenant login role's settings were changed; put back");
    Ok(true)
}

/// The login role's verifier changed since last seen: if it still matches the
/// password berqenas keeps, it is recorded; else the tenant changed its password and
/// berqenas's is put back. Returns whether it was put back.
async fn check_password(p: &Platform, t: &Live, e: &Expected) -> Result<bool> {
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    // Under the name and the row: a rotation is not drift.
    super::service::lock_name(&tx, &t.name).await?;
    let put_back = password_back_locked(p, &tx, &tx, t, e).await?;
    tx.commit().await?;
    Ok(put_back)
}

/// [`check_password`] with the tenant's name locked in `tx` (the registry), the role
/// read and changed through `there` (its server: `tx` itself on `default`).
async fn password_back_locked(
    p: &Platform,
    tx: &deadpool_postgres::Transaction<'_>,
    there: &impl GenericClient,
    t: &Live,
    e: &Expected,
) -> Result<bool> {
    let sealed: Option<Vec<u8>> = match e.user {
        None => tenants::sealed_credentials_for_update(tx, t.id).await?,
        Some(u) => users::sealed_credentials_for_update(tx, u).await?,
    };
    let verifier: Option<String> = there
        .query_opt(
            "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1",
            &[&e.role],
        )
        .await?
        .and_then(|r| r.get(0));
    let (Some(sealed), Some(verifier)) = (sealed, verifier) else {
        return Ok(false);
    };
    let password = super::service::open_password(p, &sealed)?;
    let (v, pw) = (verifier.clone(), password.clone());
    let matches = tokio::task::spawn_blocking(move || {
        crate::secrets::scram_verifier_matches(&v, pw.expose_secret())
    })
    .await
    .expect("deriving a SCRAM key does not panic");
    let recorded = if matches {
        verifier
    } else {
        let fresh = crate::secrets::verifier_of(password).await;
        let r = Ident::new(e.role.clone()).expect("catalog names are identifiers");
        there
            .batch_execute(&format!("ALTER ROLE {r} PASSWORD {}", Literal(&fresh)))
            .await?;
        fresh
    };
    let sha = hex_sha(&recorded);
    match e.user {
        None => tenants::set_verifier_sha256(tx, t.id, &sha).await?,
        Some(u) => users::set_verifier_sha256(tx, u, &sha).await?,
    };
    if !matches {
        audit::record(
            tx,
            &audit::Entry {
                actor: "berqenas",
                action: "tenant_role_drift_corrected",
                tenant_id: Some(t.id),
                tenant_name: Some(&t.name),
                operation_id: None,
                details: serde_json::json!({"role": e.role, "what": "password"}),
            },
        )
        .await?;
        metrics::role_drift_corrected("password");
        tracing::warn!(tenant.name = %t.name, role = %e.role, "a tenant login role's password was changed; berqenas's was put back");
    }
    Ok(!matches)
}

/// Brings a few database-mode tenants' databases to the current hardening level.
async fn harden_databases(p: &Platform) -> Result<usize> {
    let client = p.pool.get().await?;
    let due =
        tenants::below_hardening_level(&client, hardening::DATABASE_LEVEL, DATABASES_PER_ROUND)
            .await?;
    let mut done = 0;
    for (id, database) in due {
        let mut config = p.config.clone();
        config.dbname(database.as_str());
        let hardened = async {
            let db = crate::pg::connect(&config).await?;
            db.batch_execute(&hardening::revoke_large_objects_sql())
                .await?;
            Ok::<_, Error>(())
        }
        .await;
        match hardened {
            Ok(()) => {
                tenants::set_hardening_level(&client, id, hardening::DATABASE_LEVEL).await?;
                done += 1;
            }
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "could not harden a tenant database; retrying next round")
            }
        }
    }
    Ok(done)
}
