//! Per-tenant rate limits (GCRA, the governor crate): API calls against
//! `api_calls_per_minute`. (Realtime events are counted in SQL: `store::realtime`.)
//!
//! A keyed limiter holds one quota for all its keys, so there is one limiter per
//! distinct per-minute rate, keyed by tenant id. Only tenants that authenticated reach
//! a limiter, so no request can make it grow with made-up keys; [`RateLimits::housekeeping`]
//! drops the state of tenants whose bucket is full again (indistinguishable from new).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use super::breaches::Crossing;

type Keyed =
    RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock, StateInformationMiddleware>;

/// What a limit said about a request; enough for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// The per-minute rate (also the largest burst).
        limit: u32,
        remaining: u32,
        /// Seconds until the bucket is full again.
        reset_secs: u64,
    },
    Limited {
        limit: u32,
        /// Seconds until the request would conform (at least 1).
        retry_after_secs: u64,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// Limiters for one kind of limit, one per distinct rate.
#[derive(Default)]
struct LimiterSet {
    by_rate: Mutex<HashMap<u32, Arc<Keyed>>>,
}

impl LimiterSet {
    fn limiter(&self, per_minute: u32) -> Arc<Keyed> {
        let mut map = self.by_rate.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(per_minute)
            .or_insert_with(|| {
                let rate = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
                Arc::new(RateLimiter::keyed(Quota::per_minute(rate)).with_middleware())
            })
            .clone()
    }

    fn check(&self, tenant: Uuid, per_minute: u32, n: u32) -> Decision {
        let per_minute = per_minute.max(1);
        let limiter = self.limiter(per_minute);
        let n = NonZeroU32::new(n.max(1)).expect("at least 1");
        let period = 60.0 / per_minute as f64;
        match limiter.check_key_n(&tenant, n) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision::Allowed {
                    limit: per_minute,
                    remaining,
                    reset_secs: ((per_minute - remaining) as f64 * period).ceil() as u64,
                }
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                Decision::Limited {
                    limit: per_minute,
                    retry_after_secs: secs_at_least_one(wait),
                }
            }
            // More at once than the rate allows in a minute: it never conforms.
            Err(_) => Decision::Limited {
                limit: per_minute,
                retry_after_secs: 60,
            },
        }
    }

    fn housekeeping(&self) -> usize {
        let mut map = self.by_rate.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, l| {
            l.retain_recent();
            l.shrink_to_fit();
            !l.is_empty()
        });
        map.values().map(|l| l.len()).sum()
    }
}

fn secs_at_least_one(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

/// A per-tenant count of the current minute, for the usage summary.
#[derive(Default)]
struct MinuteCounts {
    counts: Mutex<HashMap<Uuid, (u64, u64)>>,
}

fn this_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

impl MinuteCounts {
    fn add(&self, tenant: Uuid, n: u64) {
        let minute = this_minute();
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(tenant).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += n;
    }

    fn get(&self, tenant: Uuid) -> u64 {
        let map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&tenant) {
            Some((m, n)) if *m == this_minute() => *n,
            _ => 0,
        }
    }

    fn housekeeping(&self) {
        let minute = this_minute();
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (m, _)| *m == minute);
        map.shrink_to_fit();
    }
}

/// (tenant, quota) a limit is refusing; mapped to its last refusal and the limit then.
type Refusing = (Uuid, &'static str);

/// Which tenants a limit is refusing now (since when it last refused), and the
/// crossings not yet recorded (`quota::breaches::flush`).
#[derive(Default)]
struct Breaches {
    refusing: Mutex<HashMap<Refusing, (std::time::Instant, i64)>>,
    crossings: Mutex<Vec<Crossing>>,
}

/// A refusing limit has recovered once an allowed request leaves at least half its
/// budget, or once it has refused nothing for this long (the bucket is full again).
const QUIET: Duration = Duration::from_secs(60);

impl Breaches {
    /// Notes what a decision says about the tenant's limit: the first refusal is a
    /// crossing, and so is the recovery.
    fn observe(&self, tenant: Uuid, quota: &'static str, d: &Decision, n: u32) {
        let mut refusing = self.refusing.lock().unwrap_or_else(|e| e.into_inner());
        let crossing = match *d {
            Decision::Limited { limit, .. } => refusing
                .insert((tenant, quota), (std::time::Instant::now(), limit as i64))
                .is_none()
                .then_some(Crossing {
                    tenant,
                    quota,
                    exceeded: true,
                    limit: limit as i64,
                    used: n as i64,
                }),
            Decision::Allowed {
                limit, remaining, ..
            } if refusing.contains_key(&(tenant, quota))
                && (remaining as u64 + n as u64) * 2 >= limit as u64 =>
            {
                refusing.remove(&(tenant, quota));
                Some(Crossing {
                    tenant,
                    quota,
                    exceeded: false,
                    limit: limit as i64,
                    used: remaining as i64,
                })
            }
            _ => None,
        };
        drop(refusing);
        if let Some(c) = crossing {
            self.crossings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(c);
        }
    }

    /// Limits quiet for [`QUIET`] have recovered.
    fn quiet(&self) {
        let mut refusing = self.refusing.lock().unwrap_or_else(|e| e.into_inner());
        let quiet: Vec<((Uuid, &'static str), i64)> = refusing
            .iter()
            .filter(|(_, (at, _))| at.elapsed() >= QUIET)
            .map(|(k, (_, limit))| (*k, *limit))
            .collect();
        let mut crossings = self.crossings.lock().unwrap_or_else(|e| e.into_inner());
        for ((tenant, quota), limit) in quiet {
            refusing.remove(&(tenant, quota));
            crossings.push(Crossing {
                tenant,
                quota,
                exceeded: false,
                limit,
                used: limit,
            });
        }
    }
}

/// The process's rate limits.
#[derive(Default)]
pub struct RateLimits {
    api: LimiterSet,
    api_counts: MinuteCounts,
    breaches: Breaches,
}

impl RateLimits {
    /// Counts one API call of `tenant` against its per-minute rate.
    pub fn api_call(&self, tenant: Uuid, per_minute: u32) -> Decision {
        let d = self.api.check(tenant, per_minute, 1);
        self.breaches.observe(tenant, "rate", &d, 1);
        if d.allowed() {
            self.api_counts.add(tenant, 1);
        } else {
            crate::metrics::rate_limited("api_calls");
        }
        d
    }

    /// API calls of this minute, as this process counted them. (Realtime events are
    /// counted in SQL, `store::realtime`, once, whatever path published them.)
    pub fn this_minute(&self, tenant: Uuid) -> u64 {
        self.api_counts.get(tenant)
    }

    /// Tenants whose limiter state is held now.
    pub fn tracked(&self) -> usize {
        let count = |set: &LimiterSet| -> usize {
            let map = set.by_rate.lock().unwrap_or_else(|e| e.into_inner());
            map.values().map(|l| l.len()).sum()
        };
        count(&self.api)
    }

    /// The limits crossed (refusing, or recovered) since the last call.
    pub fn take_crossings(&self) -> Vec<Crossing> {
        std::mem::take(
            &mut *self
                .breaches
                .crossings
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Forgets tenants whose buckets are full again (and counts a limit that has
    /// refused nothing for a minute as recovered); returns the keys still held.
    pub fn housekeeping(&self) -> usize {
        self.breaches.quiet();
        self.api_counts.housekeeping();
        self.api.housekeeping()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_rate_then_refuses_with_a_wait() {
        let limits = RateLimits::default();
        let t = Uuid::now_v7();
        for i in 0..5 {
            match limits.api_call(t, 5) {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, 4 - i),
                other => panic!("call {i}: {other:?}"),
            }
        }
        match limits.api_call(t, 5) {
            Decision::Limited {
                limit,
                retry_after_secs,
            } => {
                assert_eq!(limit, 5);
                assert!((1..=12).contains(&retry_after_secs), "{retry_after_secs}");
            }
            other => panic!("{other:?}"),
        }
        // Another tenant has its own bucket.
        assert!(limits.api_call(Uuid::now_v7(), 5).allowed());
        assert_eq!(limits.this_minute(t), 5);
    }

    #[test]
    fn a_refusing_limit_is_one_crossing_until_half_its_budget_is_back() {
        let limits = RateLimits::default();
        let t = Uuid::now_v7();
        assert!(limits.api_call(t, 2).allowed());
        assert!(limits.api_call(t, 2).allowed());
        assert!(!limits.api_call(t, 2).allowed());
        let crossed = limits.take_crossings();
        assert_eq!(crossed.len(), 1, "{crossed:?}");
        assert!(crossed[0].exceeded && crossed[0].quota == "rate" && crossed[0].limit == 2);
        // Refusing on: no news.
        assert!(!limits.api_call(t, 2).allowed());
        assert!(limits.take_crossings().is_empty());
    }

    #[test]
    fn memory_stays_bounded() {
        let limits = RateLimits::default();
        for _ in 0..10_000 {
            limits.api_call(Uuid::now_v7(), 600_000);
        }
        // At 10,000 per second every bucket is full again within a millisecond.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(limits.housekeeping(), 0);
    }
}
