//! Network changes (docs/network.md).
//!
//! - `network.firewall`, `network.peer_add`, `network.peer_remove`: two steps, the
//!   registry change (rows, the generation, the audit row, in one transaction), then
//!   `enforce`. Past the first step there is no way back: a crash leaves `enforce` to
//!   the reconciler, so the file always ends up matching the registry.
//! - `network.enforce`: the render alone, begun in the transaction of any other change
//!   that alters what is rendered (a restricted tenant created, suspended, resumed,
//!   deleted, restored, purged, its users changed) and driven once it commits; also at
//!   every start, forced, so a file edited or left behind is put right.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{failed, lock_tenant_anywhere, open_value, seal_value, step_error, Error, Runtime};
use crate::network::enforce::{self, Report};
use crate::network::rules::Rule;
use crate::network::{self, vpn};
use crate::ops::{self, Begun, Kind, NewOp, Run, Step, StepError, StepFuture};
use crate::problem::{Kind as ProblemKind, Problem};
use crate::store::network::{self as store, PeerRow, RuleRow};
use crate::store::outbox::data::{NetworkChanged, PeerRef, RuleRef};
use crate::tenant::{service, Status, Tenant};

pub const ENFORCE: &str = "network.enforce";
pub const FIREWALL: &str = "network.firewall";
pub const PEER_ADD: &str = "network.peer_add";
pub const PEER_REMOVE: &str = "network.peer_remove";

/// The step every kind here ends with, and that suspension and the end of a trial
/// end with too.
pub fn enforce_step() -> Step<Runtime> {
    Step {
        name: "enforce",
        reaches_out: true,
        apply: enforce_apply,
        compensate: None,
        skip: None,
    }
}

fn two_steps(name: &'static str, record: crate::ops::StepFn<Runtime>) -> Kind<Runtime> {
    Kind {
        name,
        steps: vec![
            Step {
                name: "record",
                reaches_out: false,
                apply: record,
                compensate: None,
                skip: None,
            },
            enforce_step(),
        ],
        point_of_no_return: 1,
    }
}

pub fn kinds() -> Vec<Kind<Runtime>> {
    vec![
        Kind {
            name: ENFORCE,
            steps: vec![enforce_step()],
            point_of_no_return: 0,
        },
        two_steps(FIREWALL, firewall_record),
        two_steps(PEER_ADD, peer_add_record),
        two_steps(PEER_REMOVE, peer_remove_record),
    ]
}

/// Renders now: at start, whatever the generations say.
pub async fn enforce_at_start(rt: &Runtime) -> Result<Report, Error> {
    let v = super::run_kind(rt, ENFORCE, None, "", &json!({"force": true})).await?;
    let report: Report =
        serde_json::from_value(v["report"].clone()).map_err(service::Error::from)?;
    tracing::info!(
        tenants = report.tenants,
        hba_lines = report.hba_lines,
        postgres = %report.postgres,
        vpn = %report.vpn,
        "network rules rendered"
    );
    Ok(report)
}

/// Renders this instance's files again when another instance changed the registry
/// since this one last rendered them (each instance renders the files of its own
/// host; the change's own render ran on the instance that made it). A
/// `network.enforce` operation when behind, nothing otherwise.
pub async fn catch_up(rt: &Runtime) -> Result<Option<Report>, Error> {
    let now = store::generation(&rt.pool.get().await?)
        .await
        .map_err(service::Error::from)?;
    if enforce::last_rendered(&rt.network)
        .await
        .is_some_and(|g| g >= now)
    {
        return Ok(None);
    }
    let v = super::run_kind(rt, ENFORCE, None, "", &json!({"force": false})).await?;
    Ok(Some(
        serde_json::from_value(v["report"].clone()).map_err(service::Error::from)?,
    ))
}

fn enforce_apply<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let force = run.params::<Value>()?["force"].as_bool() == Some(true);
        let mut report = enforce::enforce(&rt.pool, &rt.network, force, || {
            ops::failpoint("network.enforce.written")
        })
        .await
        .map_err(failed)?;
        report.servers = enforce_elsewhere(rt).await?;
        let first = run.steps()[0];
        let change = (first != "enforce")
            .then(|| run.outcome::<Value>(first))
            .flatten()
            .unwrap_or(Value::Null);
        Ok(json!({"change": change, "report": report}))
    })
}

/// How long one other server's render may take.
const REMOTE_RENDER_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Renders every other server's pg_hba.conf (the lines of the tenants that live
/// there). A server that is down or refuses is reported, logged, and rendered again by
/// the next change's render or the forced one at start.
async fn enforce_elsewhere(rt: &Runtime) -> Result<Vec<network::remote::ServerReport>, StepError> {
    let servers = crate::store::servers::list(&rt.pool.get().await.map_err(failed)?)
        .await
        .map_err(failed)?;
    let mut out = Vec::new();
    for s in servers {
        if s.name == crate::store::servers::DEFAULT {
            continue;
        }
        let not = |why: String| network::remote::ServerReport {
            server: s.name.clone(),
            postgres: format!("not enforced: {why}"),
            ..Default::default()
        };
        let report = match (
            &s.down_reason,
            super::servers::opened(&rt.platform, &s.name).await,
        ) {
            (Some(why), _) => not(format!("the server is down ({why})")),
            (None, Err(e)) => not(e.to_string()),
            (None, Ok(there)) => {
                // A server that stopped answering (not yet marked down by the health
                // round) must not hold up the change this render follows.
                let render = network::remote::enforce_on(&rt.pool, &there.pool, &s.name);
                match tokio::time::timeout(REMOTE_RENDER_LIMIT, render).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => not(e.to_string()),
                    Err(_) => not(format!(
                        "no answer within {} s",
                        REMOTE_RENDER_LIMIT.as_secs()
                    )),
                }
            }
        };
        if report.postgres != "enforced" {
            tracing::warn!(server = %s.name, postgres = %report.postgres, "network rules of a server not enforced");
        }
        out.push(report);
    }
    Ok(out)
}

/// In a change's transaction, after its audit row (one lock order: the audit chain's
/// head, then the network generation): if `t` is restricted (or had VPN on before the change,
/// `was_vpn`), marks the change and begins the
/// render that follows it; [`follow`] drives it once the transaction commits.
pub async fn touch(
    rt: &Runtime,
    tx: &impl deadpool_postgres::GenericClient,
    t: &Tenant,
    was_vpn: bool,
) -> Result<Option<Begun>, Error> {
    let bumped = store::bump_if_restricted(tx, t.id, t.vpn_enabled || was_vpn)
        .await
        .map_err(service::Error::from)?;
    if bumped.is_none() {
        return Ok(None);
    }
    Ok(Some(
        rt.engine
            .begin_in(
                tx,
                NewOp {
                    kind: ENFORCE,
                    tenant_id: Some(t.id),
                    tenant_name: t.name.as_str(),
                    params: json!({}),
                    idempotency: None,
                },
            )
            .await?,
    ))
}

/// Drives the render [`touch`] began, to its end. The change it follows is committed
/// whatever happens here: a failure is logged and the reconciler finishes the render.
pub async fn follow(rt: &Runtime, begun: Option<Begun>) {
    let Some(begun) = begun else { return };
    match rt.engine.launch(rt, begun).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "rendering network rules failed; the reconciler retries")
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering network rules stopped; the reconciler retries")
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum FirewallChange {
    Add { rule: Rule },
    Remove { id: Uuid },
    Replace { rules: Vec<Rule> },
}

#[derive(Debug, Serialize, Deserialize)]
struct FirewallParams {
    tenant: Uuid,
    change: FirewallChange,
    actor: String,
}

/// The rules after a change, and the rule the change added or removed.
#[derive(Debug, Serialize, Deserialize)]
pub struct FirewallChanged {
    pub rules: Vec<RuleRow>,
    pub rule: Option<RuleRow>,
}

/// The tenant whose network a change may touch: not purged.
fn changeable(t: &Tenant) -> Result<(), StepError> {
    if t.status == Status::Purged || t.status == Status::Failed {
        return Err(StepError::Rejected(Problem::new(
            ProblemKind::Conflict,
            "invalid_state",
            format!(
                "tenant {} is {}: its network cannot change",
                t.name,
                t.status.as_str()
            ),
        )));
    }
    Ok(())
}

fn firewall_record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: FirewallParams = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        // Rules are per server: each server's pg_hba.conf carries the lines of the
        // tenants that live there (`network::remote`).
        let t = super::lock_tenant_anywhere(&tx, &params.tenant.to_string())
            .await
            .map_err(step_error)?;
        changeable(&t)?;
        let store_err = |e: crate::store::Error| failed(e);
        let (rule, details) = match &params.change {
            FirewallChange::Add { rule } => {
                let (row, _) = store::add_rule(
                    &tx,
                    t.id,
                    &rule.cidr.to_string(),
                    rule.service.as_str(),
                    &rule.description,
                )
                .await
                .map_err(store_err)?;
                (
                    Some(row),
                    json!({"action": "add", "cidr": rule.cidr.to_string(), "service": rule.service}),
                )
            }
            FirewallChange::Remove { id } => {
                let row = store::remove_rule(&tx, t.id, *id)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| {
                        StepError::Rejected(Problem::new(
                            ProblemKind::NotFound,
                            "not_found",
                            format!("tenant {} has no firewall rule {id}", t.name),
                        ))
                    })?;
                let details = json!({"action": "remove", "cidr": row.cidr, "service": row.service});
                (Some(row), details)
            }
            FirewallChange::Replace { rules } => {
                store::clear_rules(&tx, t.id).await.map_err(store_err)?;
                for r in rules {
                    store::add_rule(
                        &tx,
                        t.id,
                        &r.cidr.to_string(),
                        r.service.as_str(),
                        &r.description,
                    )
                    .await
                    .map_err(store_err)?;
                }
                (None, json!({"action": "replace", "rules": rules.len()}))
            }
        };
        let rules_now = store::rules(&tx, t.id).await.map_err(store_err)?;
        let (change, changed_rule) = match &params.change {
            FirewallChange::Add { .. } => ("firewall_rule_added", rule.as_ref()),
            FirewallChange::Remove { .. } => ("firewall_rule_removed", rule.as_ref()),
            FirewallChange::Replace { .. } => ("firewall_rules_replaced", None),
        };
        let rule_ref = |r: &RuleRow| RuleRef {
            cidr: r.cidr.clone(),
            service: r.service.clone(),
        };
        announce(
            &tx,
            &t,
            change,
            changed_rule.map(rule_ref),
            Some(rules_now.iter().map(rule_ref).collect()),
            None,
        )
        .await?;
        crate::audit::record(
            &tx,
            &crate::audit::Entry {
                actor: &params.actor,
                action: "network.firewall_changed",
                tenant_id: Some(t.id),
                tenant_name: Some(t.name.as_str()),
                operation_id: Some(run.id),
                details,
            },
        )
        .await
        .map_err(store_err)?;
        store::bump(&tx).await.map_err(store_err)?;
        let outcome = serde_json::to_value(FirewallChanged {
            rules: rules_now,
            rule,
        })
        .map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

fn peer_ref(p: &PeerRow) -> PeerRef {
    PeerRef {
        name: p.name.clone(),
        address: p.address.clone(),
        public_key: p.public_key.clone(),
    }
}

/// The `network.changed` event of a change in its record step, before its audit row.
async fn announce(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Tenant,
    change: &str,
    rule: Option<RuleRef>,
    rules: Option<Vec<RuleRef>>,
    peer: Option<PeerRef>,
) -> Result<(), StepError> {
    crate::store::outbox::emit(
        tx,
        t.id,
        t.name.as_str(),
        &NetworkChanged {
            change: change.into(),
            access_mode: t.access_mode,
            vpn_enabled: t.vpn_enabled,
            vpn_subnet: t.vpn_subnet.clone(),
            rule,
            rules,
            peer,
        },
    )
    .await
    .map_err(failed)
}

async fn run_change(
    rt: &Runtime,
    kind: &'static str,
    t: &Tenant,
    params: Value,
) -> Result<Value, Error> {
    let v = super::run_kind(rt, kind, Some(t.id), t.name.as_str(), &params).await?;
    Ok(v["change"].clone())
}

/// `POST /api/v1/tenants/{name}/firewall`.
pub async fn allow(
    rt: &Runtime,
    key: &str,
    rule: Rule,
    actor: &str,
) -> Result<FirewallChanged, Error> {
    firewall(rt, key, FirewallChange::Add { rule }, actor).await
}

/// `DELETE /api/v1/tenants/{name}/firewall/{id}`.
pub async fn remove_rule(
    rt: &Runtime,
    key: &str,
    id: Uuid,
    actor: &str,
) -> Result<FirewallChanged, Error> {
    firewall(rt, key, FirewallChange::Remove { id }, actor).await
}

/// `PUT /api/v1/tenants/{name}/firewall`.
pub async fn replace_rules(
    rt: &Runtime,
    key: &str,
    rules: Vec<Rule>,
    actor: &str,
) -> Result<FirewallChanged, Error> {
    firewall(rt, key, FirewallChange::Replace { rules }, actor).await
}

async fn firewall(
    rt: &Runtime,
    key: &str,
    change: FirewallChange,
    actor: &str,
) -> Result<FirewallChanged, Error> {
    let t = service::get(rt, key).await?;
    let params = json!(FirewallParams {
        tenant: t.id,
        change,
        actor: actor.to_string(),
    });
    let v = run_change(rt, FIREWALL, &t, params).await?;
    Ok(serde_json::from_value(v).map_err(service::Error::from)?)
}

#[derive(Debug, Serialize, Deserialize)]
struct PeerParams {
    tenant: Uuid,
    name: String,
    #[serde(default)]
    public_key: Option<String>,
    actor: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PeerAdded {
    peer: PeerRow,
    subnet: String,
    /// The generated private key, sealed (the journal holds no plaintext secret).
    sealed_private: Option<String>,
}

/// A new peer and its `wg-quick` file (with its private key when berqenas made the
/// pair): shown once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewPeer {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub peer: PeerRow,
    pub config: String,
}

fn peer_add_record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: PeerParams = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = lock_tenant_anywhere(&tx, &params.tenant.to_string())
            .await
            .map_err(step_error)?;
        changeable(&t)?;
        let subnet: ipnet::IpNet = match (t.vpn_enabled, t.vpn_subnet.as_deref().and_then(|s| s.parse().ok())) {
            (true, Some(s)) => s,
            _ => {
                return Err(StepError::Rejected(Problem::new(
                    ProblemKind::Conflict,
                    "vpn_disabled",
                    format!("tenant {} has no VPN: turn it on first (PATCH {{\"vpn_enabled\": true}}, or tenant update --vpn enabled)", t.name),
                )))
            }
        };
        let used = store::peer_addresses(&tx, t.id).await.map_err(failed)?;
        let address = vpn::next_peer_address(&subnet, &used).ok_or_else(|| {
            StepError::Rejected(Problem::new(
                ProblemKind::Conflict,
                "vpn_subnet_full",
                format!(
                    "tenant {}'s subnet {subnet} has no free address for another peer",
                    t.name
                ),
            ))
        })?;
        let (public_key, sealed_private) = match params.public_key {
            Some(k) => (k, None),
            None => {
                let (private, public) = vpn::keypair();
                use secrecy::ExposeSecret;
                (public, Some(seal_value(rt, &private.expose_secret())?))
            }
        };
        let peer = match store::add_peer(&tx, t.id, &params.name, &public_key, &address.to_string())
            .await
        {
            Ok(p) => p,
            Err(crate::store::Error::Conflict { .. }) => {
                return Err(StepError::Rejected(Problem::new(
                    ProblemKind::Conflict,
                    "peer_exists",
                    format!(
                        "tenant {} already has a peer named {:?}",
                        t.name, params.name
                    ),
                )))
            }
            Err(e) => return Err(failed(e)),
        };
        announce(&tx, &t, "vpn_peer_added", None, None, Some(peer_ref(&peer))).await?;
        crate::audit::record(
            &tx,
            &crate::audit::Entry {
                actor: &params.actor,
                action: "network.peer_added",
                tenant_id: Some(t.id),
                tenant_name: Some(t.name.as_str()),
                operation_id: Some(run.id),
                details: json!({"peer": peer.name, "address": peer.address, "public_key": peer.public_key}),
            },
        )
        .await
        .map_err(failed)?;
        store::bump(&tx).await.map_err(failed)?;
        let outcome = serde_json::to_value(PeerAdded {
            peer,
            subnet: subnet.to_string(),
            sealed_private,
        })
        .map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// `POST /api/v1/tenants/{name}/vpn/peers`. Input is checked by the caller.
pub async fn add_peer(
    rt: &Runtime,
    key: &str,
    name: &str,
    public_key: Option<&str>,
    actor: &str,
) -> Result<NewPeer, Error> {
    let t = service::get(rt, key).await?;
    let params = json!(PeerParams {
        tenant: t.id,
        name: name.to_string(),
        public_key: public_key.map(String::from),
        actor: actor.to_string(),
    });
    let v = run_change(rt, PEER_ADD, &t, params).await?;
    let added: PeerAdded = serde_json::from_value(v).map_err(service::Error::from)?;
    let private = match &added.sealed_private {
        Some(s) => Some(secrecy::SecretString::from(open_value::<String>(rt, s)?)),
        None => None,
    };
    let server = enforce::server_key(&rt.network.files_dir)
        .ok()
        .and_then(|k| vpn::public_of(&k))
        .unwrap_or_default();
    let subnet: ipnet::IpNet = added.subnet.parse().map_err(|_| {
        service::Error::Rejected(Problem::new(
            ProblemKind::Internal,
            "internal",
            "bad subnet",
        ))
    })?;
    let address = added.peer.address.parse().map_err(|_| {
        service::Error::Rejected(Problem::new(
            ProblemKind::Internal,
            "internal",
            "bad address",
        ))
    })?;
    let tenant_server = crate::network::reach::of_server(&rt.pool.get().await?, &t.server)
        .await
        .map_err(service::Error::from)?;
    let config = vpn::client_config(
        private.as_ref(),
        address,
        &subnet,
        &server,
        &rt.network.vpn_endpoint,
        tenant_server.as_ref(),
    );
    Ok(NewPeer {
        peer: added.peer,
        config,
    })
}

fn peer_remove_record<'a>(rt: &'a Runtime, run: &'a mut Run) -> StepFuture<'a> {
    Box::pin(async move {
        let params: PeerParams = run.params()?;
        let mut client = rt.pool.get().await.map_err(failed)?;
        let tx = client.transaction().await.map_err(failed)?;
        let t = lock_tenant_anywhere(&tx, &params.tenant.to_string())
            .await
            .map_err(step_error)?;
        let peer = store::remove_peer(&tx, t.id, &params.name)
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                StepError::Rejected(Problem::new(
                    ProblemKind::NotFound,
                    "not_found",
                    format!("tenant {} has no VPN peer {:?}", t.name, params.name),
                ))
            })?;
        announce(
            &tx,
            &t,
            "vpn_peer_removed",
            None,
            None,
            Some(peer_ref(&peer)),
        )
        .await?;
        crate::audit::record(
            &tx,
            &crate::audit::Entry {
                actor: &params.actor,
                action: "network.peer_revoked",
                tenant_id: Some(t.id),
                tenant_name: Some(t.name.as_str()),
                operation_id: Some(run.id),
                details: json!({"peer": peer.name, "address": peer.address}),
            },
        )
        .await
        .map_err(failed)?;
        store::bump(&tx).await.map_err(failed)?;
        let outcome = serde_json::to_value(&peer).map_err(failed)?;
        run.applied_in(&tx, &outcome).await?;
        tx.commit().await.map_err(failed)?;
        Ok(outcome)
    })
}

/// `DELETE /api/v1/tenants/{name}/vpn/peers/{peer}` (its id or name).
pub async fn remove_peer(
    rt: &Runtime,
    key: &str,
    peer: &str,
    actor: &str,
) -> Result<PeerRow, Error> {
    let t = service::get(rt, key).await?;
    let params = json!(PeerParams {
        tenant: t.id,
        name: peer.to_string(),
        public_key: None,
        actor: actor.to_string(),
    });
    let v = run_change(rt, PEER_REMOVE, &t, params).await?;
    Ok(serde_json::from_value(v).map_err(service::Error::from)?)
}

/// A tenant's network, as `GET /api/v1/tenants/{name}/network` shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkView {
    pub tenant: String,
    pub access_mode: crate::tenant::AccessMode,
    pub vpn_enabled: bool,
    pub vpn_subnet: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<RuleRow>,
    #[schema(value_type = Vec<Object>)]
    pub peers: Vec<PeerRow>,
    /// Where the database may be reached from (`null`: anywhere).
    pub database_from: Option<Vec<String>>,
    /// Where the data API may be reached from (`null`: anywhere).
    pub api_from: Option<Vec<String>>,
    /// `enforced`, or why not.
    pub postgres_enforcement: String,
    /// Whether the VPN files are applied or only rendered.
    pub vpn_enforcement: String,
}

pub async fn view(rt: &Runtime, key: &str) -> Result<NetworkView, Error> {
    let t = service::get(rt, key).await?;
    let c = rt.pool.get().await?;
    let rules = store::rules(&c, t.id).await.map_err(service::Error::from)?;
    let peers = store::peers(&c, t.id).await.map_err(service::Error::from)?;
    let pairs: Vec<(&str, network::Service)> = rules
        .iter()
        .filter_map(|r| Some((r.cidr.as_str(), network::Service::parse(&r.service)?)))
        .collect();
    let from = |service| {
        network::policy::allowed(
            t.vpn_enabled,
            t.public_api,
            t.vpn_subnet.as_deref(),
            pairs.iter().copied(),
            service,
        )
        .map(|v| v.iter().map(ToString::to_string).collect())
    };
    let live = network::hba::live(t.status.as_str());
    Ok(NetworkView {
        tenant: t.name.to_string(),
        access_mode: t.access_mode,
        vpn_enabled: t.vpn_enabled,
        vpn_subnet: t.vpn_subnet.clone(),
        database_from: if live {
            from(network::Service::Postgres)
        } else {
            Some(vec![])
        },
        api_from: if live {
            from(network::Service::Api)
        } else {
            Some(vec![])
        },
        rules,
        peers,
        postgres_enforcement: enforcement(rt),
        vpn_enforcement: vpn_enforcement(rt),
    })
}

/// Whether this server applies the VPN files or only renders them.
pub fn vpn_enforcement(rt: &Runtime) -> String {
    match &rt.network.vpn_interface {
        Some(i) => format!("applied to {i} at each change"),
        None => format!(
            "rendered, not applied (no --vpn-interface): {}",
            rt.network.files_dir.display()
        ),
    }
}

/// A tenant's rules (`GET .../firewall`).
pub async fn rules(rt: &Runtime, key: &str) -> Result<Vec<RuleRow>, Error> {
    let t = service::get(rt, key).await?;
    let c = rt.pool.get().await?;
    Ok(store::rules(&c, t.id).await.map_err(service::Error::from)?)
}

/// A tenant's peers (`GET .../vpn/peers`).
pub async fn peers(rt: &Runtime, key: &str) -> Result<Vec<PeerRow>, Error> {
    let t = service::get(rt, key).await?;
    let c = rt.pool.get().await?;
    Ok(store::peers(&c, t.id).await.map_err(service::Error::from)?)
}

/// Whether this server enforces database rules, for `status` and the network view.
pub fn enforcement(rt: &Runtime) -> String {
    match &rt.network.hba_file {
        Some(p) => format!("enforced by pg_hba.conf ({})", p.display()),
        None => enforce::NOT_ENFORCED.to_string(),
    }
}
