//! The network tables: a tenant's VPN subnet (columns of `tenants`), its firewall
//! rules, its WireGuard peers, and `network_state`, the generation counter a
//! renderer of pg_hba.conf and the VPN files compares with what it last rendered.

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Result;

/// Up to `limit` of the lowest slots of the pool (`pool`: its range; subnets of an
/// earlier pool do not count) that no committed row holds, among `0..slots`.
pub async fn free_slots(
    c: &impl GenericClient,
    pool: &str,
    slots: i64,
    limit: i64,
) -> Result<Vec<i32>> {
    Ok(c.query(
        "SELECT s::integer FROM generate_series(0, $2::bigint - 1) AS s
              WHERE NOT EXISTS (SELECT 1 FROM berqenas.tenants t
                                 WHERE t.vpn_subnet <<= $1::text::cidr AND t.vpn_slot = s)
              ORDER BY s LIMIT $3::bigint",
        &[&pool, &slots, &limit],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Claims `slot` for this transaction among berqenas's own allocations, if no other
/// transaction has: concurrent creates then try different slots instead of colliding
/// on the exclusion constraint (which stays the arbiter).
pub async fn try_claim_slot(c: &impl GenericClient, slot: i32) -> Result<bool> {
    const NAMESPACE: i32 = 0x7670_6e73; // "vpns"
    Ok(c.query_one(
        "SELECT pg_catalog.pg_try_advisory_xact_lock($1, $2)",
        &[&NAMESPACE, &slot],
    )
    .await?
    .get(0))
}

/// Gives the tenant a subnet (or takes it away with `None`).
pub async fn set_subnet(
    c: &impl GenericClient,
    tenant: Uuid,
    subnet: Option<(&str, i32)>,
) -> Result<()> {
    c.execute(
        "UPDATE berqenas.tenants SET vpn_subnet = $2::text::cidr, vpn_slot = $3 WHERE id = $1",
        &[&tenant, &subnet.map(|s| s.0), &subnet.map(|s| s.1)],
    )
    .await?;
    Ok(())
}

/// Marks a change of what is rendered; the caller's transaction commits it with the
/// change.
pub async fn bump(c: &impl GenericClient) -> Result<i64> {
    Ok(c.query_one(
        "UPDATE berqenas.network_state SET generation = generation + 1 RETURNING generation",
        &[],
    )
    .await?
    .get(0))
}

/// The generation of the network registry: moved by every committed change that
/// alters what is rendered.
pub async fn generation(c: &impl GenericClient) -> Result<i64> {
    Ok(
        c.query_one("SELECT generation FROM berqenas.network_state", &[])
            .await?
            .get(0),
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleRow {
    pub id: Uuid,
    pub cidr: String,
    pub service: String,
    pub description: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn rule(r: &tokio_postgres::Row) -> Result<RuleRow> {
    Ok(RuleRow {
        id: r.try_get("id")?,
        cidr: r.try_get("cidr")?,
        service: r.try_get("service")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
    })
}

const RULE_COLUMNS: &str = "id, cidr::text AS cidr, service, description, created_at";

pub async fn rules(c: &impl GenericClient, tenant: Uuid) -> Result<Vec<RuleRow>> {
    c.query(
        &format!("SELECT {RULE_COLUMNS} FROM berqenas.firewall_rules WHERE tenant_id = $1 ORDER BY cidr, service"),
        &[&tenant],
    )
    .await?
    .iter()
    .map(rule)
    .collect()
}

/// Adds a rule; an identical one (same range and service) is answered instead, with
/// `false`.
pub async fn add_rule(
    c: &impl GenericClient,
    tenant: Uuid,
    cidr: &str,
    service: &str,
    description: &str,
) -> Result<(RuleRow, bool)> {
    let inserted = c
        .query_opt(
            &format!(
                "INSERT INTO berqenas.firewall_rules (id, tenant_id, cidr, service, description)
                 VALUES ($1, $2, $3::text::cidr, $4, $5)
                 ON CONFLICT (tenant_id, cidr, service) DO NOTHING RETURNING {RULE_COLUMNS}"
            ),
            &[&Uuid::now_v7(), &tenant, &cidr, &service, &description],
        )
        .await?;
    if let Some(r) = inserted {
        return Ok((rule(&r)?, true));
    }
    let r = c
        .query_one(
            &format!(
                "SELECT {RULE_COLUMNS} FROM berqenas.firewall_rules
                  WHERE tenant_id = $1 AND cidr = $2::text::cidr AND service = $3"
            ),
            &[&tenant, &cidr, &service],
        )
        .await?;
    Ok((rule(&r)?, false))
}

pub async fn remove_rule(
    c: &impl GenericClient,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<RuleRow>> {
    c.query_opt(
        &format!("DELETE FROM berqenas.firewall_rules WHERE tenant_id = $1 AND id = $2 RETURNING {RULE_COLUMNS}"),
        &[&tenant, &id],
    )
    .await?
    .as_ref()
    .map(rule)
    .transpose()
}

pub async fn clear_rules(c: &impl GenericClient, tenant: Uuid) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM berqenas.firewall_rules WHERE tenant_id = $1",
        &[&tenant],
    )
    .await?)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerRow {
    pub id: Uuid,
    pub name: String,
    pub public_key: String,
    pub address: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const PEER_COLUMNS: &str = "id, name, public_key, host(address) AS address, created_at";

fn peer(r: &tokio_postgres::Row) -> Result<PeerRow> {
    Ok(PeerRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        public_key: r.try_get("public_key")?,
        address: r.try_get("address")?,
        created_at: r.try_get("created_at")?,
    })
}

pub async fn peers(c: &impl GenericClient, tenant: Uuid) -> Result<Vec<PeerRow>> {
    c.query(
        &format!(
            "SELECT {PEER_COLUMNS} FROM berqenas.vpn_peers WHERE tenant_id = $1 ORDER BY address"
        ),
        &[&tenant],
    )
    .await?
    .iter()
    .map(peer)
    .collect()
}

/// The peers' addresses in use in a tenant's subnet.
pub async fn peer_addresses(c: &impl GenericClient, tenant: Uuid) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT host(address) FROM berqenas.vpn_peers WHERE tenant_id = $1",
        &[&tenant],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

pub async fn add_peer(
    c: &impl GenericClient,
    tenant: Uuid,
    name: &str,
    public_key: &str,
    address: &str,
) -> Result<PeerRow> {
    let r = c
        .query_one(
            &format!(
                "INSERT INTO berqenas.vpn_peers (id, tenant_id, name, public_key, address)
                 VALUES ($1, $2, $3, $4, $5::text::inet) RETURNING {PEER_COLUMNS}"
            ),
            &[&Uuid::now_v7(), &tenant, &name, &public_key, &address],
        )
        .await?;
    peer(&r)
}

/// Removes a peer by its id or its name.
pub async fn remove_peer(
    c: &impl GenericClient,
    tenant: Uuid,
    key: &str,
) -> Result<Option<PeerRow>> {
    c.query_opt(
        &format!(
            "DELETE FROM berqenas.vpn_peers WHERE tenant_id = $1 AND (id::text = $2 OR name = $2)
             RETURNING {PEER_COLUMNS}"
        ),
        &[&tenant, &key],
    )
    .await?
    .as_ref()
    .map(peer)
    .transpose()
}

pub async fn clear_peers(c: &impl GenericClient, tenant: Uuid) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM berqenas.vpn_peers WHERE tenant_id = $1",
        &[&tenant],
    )
    .await?)
}

/// What the renderer needs of one tenant that has network restrictions or peers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restricted {
    pub id: Uuid,
    pub name: String,
    /// The server its roles live on (whose pg_hba.conf carries its lines).
    pub server: String,
    pub status: String,
    pub vpn_enabled: bool,
    pub public_api: bool,
    pub vpn_subnet: Option<String>,
    /// Its login role and its users' login roles.
    pub logins: Vec<String>,
    pub rules: Vec<SnapshotRule>,
    pub peers: Vec<SnapshotPeer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRule {
    pub cidr: String,
    pub service: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotPeer {
    pub name: String,
    pub public_key: String,
    pub address: String,
}

/// Every tenant that still has roles and is restricted (VPN on, or rules) or has
/// peers, in name order: one statement, so the render sees one snapshot.
pub async fn snapshot(c: &impl GenericClient) -> Result<Vec<Restricted>> {
    let rows = c
        .query(
            "SELECT t.id, t.name, t.server, t.status, t.vpn_enabled, t.public_api, t.vpn_subnet::text AS vpn_subnet,
                    array_prepend(t.login_role::text,
                        coalesce((SELECT array_agg(u.db_user::text ORDER BY u.db_user)
                                    FROM berqenas.tenant_users u WHERE u.tenant_id = t.id), '{}')) AS logins,
                    coalesce((SELECT jsonb_agg(jsonb_build_object('cidr', r.cidr::text, 'service', r.service)
                                               ORDER BY r.cidr, r.service)
                                FROM berqenas.firewall_rules r WHERE r.tenant_id = t.id), '[]') AS rules,
                    coalesce((SELECT jsonb_agg(jsonb_build_object('name', p.name, 'public_key', p.public_key,
                                                                  'address', host(p.address)) ORDER BY p.address)
                                FROM berqenas.vpn_peers p WHERE p.tenant_id = t.id), '[]') AS peers
               FROM berqenas.tenants t
              WHERE t.status NOT IN ('purged', 'failed')
                AND (t.vpn_enabled
                     OR EXISTS (SELECT 1 FROM berqenas.firewall_rules r WHERE r.tenant_id = t.id)
                     OR EXISTS (SELECT 1 FROM berqenas.vpn_peers p WHERE p.tenant_id = t.id))
              ORDER BY t.name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Restricted {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                server: r.try_get("server")?,
                status: r.try_get("status")?,
                vpn_enabled: r.try_get("vpn_enabled")?,
                public_api: r.try_get("public_api")?,
                vpn_subnet: r.try_get("vpn_subnet")?,
                logins: r.try_get("logins")?,
                rules: decode("firewall rules", r.try_get("rules")?)?,
                peers: decode("vpn peers", r.try_get("peers")?)?,
            })
        })
        .collect()
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|source| super::Error::Decode { what, source })
}

/// Marks a change of `tenant` as one the renderer must see, if the tenant is
/// restricted (VPN on, or rules) or has peers: the new generation, or `None` (one
/// statement, so an unrestricted tenant's change costs one cheap round trip).
pub async fn bump_if_restricted(
    c: &impl GenericClient,
    tenant: Uuid,
    vpn_enabled: bool,
) -> Result<Option<i64>> {
    let stmt = c
        .prepare_cached(
            "UPDATE berqenas.network_state SET generation = generation + 1
              WHERE $2 OR EXISTS (SELECT 1 FROM berqenas.firewall_rules WHERE tenant_id = $1)
                       OR EXISTS (SELECT 1 FROM berqenas.vpn_peers WHERE tenant_id = $1)
             RETURNING generation",
        )
        .await?;
    Ok(c.query_opt(&stmt, &[&tenant, &vpn_enabled])
        .await?
        .map(|r| r.get(0)))
}
