//! The VPN pool: the range tenants' subnets are cut from (`--vpn-pool`, by default
//! `10.50.0.0/16` in /24s, which is `10.50.{n}.0/24` as seed 000 writes it), and the
//! allocation of one subnet to one tenant, decided by PostgreSQL's exclusion constraint.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use deadpool_postgres::GenericClient;
use ipnet::IpNet;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::problem::{Kind, Problem};
use crate::store::network as store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpnPool {
    pub net: IpNet,
    /// The prefix length of each tenant's subnet.
    pub prefix: u8,
}

impl Default for VpnPool {
    fn default() -> Self {
        Self {
            net: "10.50.0.0/16".parse().expect("a range"),
            prefix: 24,
        }
    }
}

/// Slots past this many are never handed out (a /64 pool of /128s is not a pool).
const MAX_SLOTS: i64 = 1 << 24;

impl VpnPool {
    /// `prefix`: by default /24 in an IPv4 pool and /64 in an IPv6 one. Each subnet
    /// keeps room for the server's address and peers.
    pub fn new(net: IpNet, prefix: Option<u8>) -> Result<Self, String> {
        if net.trunc() != net {
            return Err(format!(
                "--vpn-pool {net} has host bits set; the range is {}",
                net.trunc()
            ));
        }
        let max = net.max_prefix_len();
        let prefix = prefix.unwrap_or(if net.addr().is_ipv4() { 24 } else { 64 });
        if prefix < net.prefix_len() || prefix > max - 2 {
            return Err(format!(
                "a tenant subnet of /{prefix} does not fit the pool {net} (from /{} to /{})",
                net.prefix_len(),
                max - 2
            ));
        }
        Ok(Self { net, prefix })
    }

    /// How many subnets the pool holds.
    pub fn slots(&self) -> i64 {
        let bits = u32::from(self.prefix - self.net.prefix_len());
        if bits >= 24 {
            MAX_SLOTS
        } else {
            1 << bits
        }
    }

    /// The `slot`th subnet.
    pub fn subnet(&self, slot: i32) -> IpNet {
        let shift = u32::from(self.net.max_prefix_len() - self.prefix);
        let addr = match self.net.network() {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + ((slot as u32) << shift))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) + ((slot as u128) << shift))),
        };
        IpNet::new(addr, self.prefix).expect("prefix checked")
    }
}

/// Gives `tenant` the lowest free subnet of the pool, in the caller's transaction.
/// Concurrent allocations claim different slots (an advisory lock per slot), and two
/// transactions whose subnets overlap cannot both commit whatever happens: the
/// exclusion constraint refuses the second, which tries the next free slot.
pub async fn allocate(
    c: &impl GenericClient,
    pool: &VpnPool,
    tenant: Uuid,
) -> Result<IpNet, super::Refusal> {
    let db = crate::store::Error::from;
    for _ in 0..16 {
        let free = store::free_slots(c, &pool.net.to_string(), pool.slots(), 64).await?;
        if free.is_empty() {
            break;
        }
        for slot in free {
            if !store::try_claim_slot(c, slot).await? {
                continue;
            }
            let subnet = pool.subnet(slot);
            c.batch_execute("SAVEPOINT vpn_subnet").await.map_err(db)?;
            match store::set_subnet(c, tenant, Some((&subnet.to_string(), slot))).await {
                Ok(()) => {
                    c.batch_execute("RELEASE SAVEPOINT vpn_subnet")
                        .await
                        .map_err(db)?;
                    return Ok(subnet);
                }
                // Taken since the read (committed), or a conflict PostgreSQL broke as a
                // deadlock: the next free slot.
                Err(crate::store::Error::Db(e))
                    if e.code() == Some(&SqlState::EXCLUSION_VIOLATION)
                        || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) =>
                {
                    c.batch_execute("ROLLBACK TO SAVEPOINT vpn_subnet")
                        .await
                        .map_err(db)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(exhausted(pool).into())
}

/// Takes the tenant's subnet back (VPN turned off, or a purge).
pub async fn free(c: &impl GenericClient, tenant: Uuid) -> Result<(), crate::store::Error> {
    store::set_subnet(c, tenant, None).await
}

/// A tenant's subnet after a change of its VPN flag, in the caller's transaction:
/// allocated when the VPN is on and it has none, freed with its peers when the VPN is
/// off and it has one; otherwise `subnet` as it is.
pub async fn follow_flag(
    c: &impl GenericClient,
    pool: &VpnPool,
    tenant: Uuid,
    vpn_enabled: bool,
    subnet: Option<String>,
) -> Result<Option<String>, super::Refusal> {
    match (vpn_enabled, subnet) {
        (true, None) => Ok(Some(allocate(c, pool, tenant).await?.to_string())),
        (false, Some(_)) => {
            free(c, tenant).await?;
            crate::store::network::clear_peers(c, tenant).await?;
            Ok(None)
        }
        (_, subnet) => Ok(subnet),
    }
}

fn exhausted(pool: &VpnPool) -> Problem {
    Problem::new(
        Kind::Conflict,
        "vpn_pool_exhausted",
        format!(
            "the VPN pool {} has no free /{} subnet left ({} are in use): give the server a larger --vpn-pool",
            pool.net,
            pool.prefix,
            pool.slots()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_as_the_seed_writes_them() {
        let pool = VpnPool::default();
        assert_eq!(pool.slots(), 256);
        assert_eq!(pool.subnet(7).to_string(), "10.50.7.0/24");
        let big = VpnPool::new("10.64.0.0/10".parse().unwrap(), None).unwrap();
        assert_eq!(big.slots(), 16_384);
        assert_eq!(big.subnet(16_383).to_string(), "10.127.255.0/24");
        let v6 = VpnPool::new("fd42:1::/48".parse().unwrap(), None).unwrap();
        assert_eq!(v6.subnet(1).to_string(), "fd42:1:0:1::/64");
        assert!(VpnPool::new("10.50.0.0/16".parse().unwrap(), Some(31)).is_err());
        assert!(VpnPool::new("10.50.0.0/16".parse().unwrap(), Some(8)).is_err());
    }
}
