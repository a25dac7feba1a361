//! What a sign-in is checked against besides the admin token: the operator's console
//! password (only a salted PBKDF2 hash of it is kept), and the limit on wrong sign-ins
//! per client address (guessing is slowed to a few tries a minute).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// PBKDF2-HMAC-SHA256 rounds: slow enough to make an offline guess costly, fast
/// enough for a sign-in (the hash never leaves the process, so this is defence in
/// depth against a memory dump).
const ROUNDS: u32 = 100_000;
/// A console password shorter than this is refused at start.
pub const MIN_PASSWORD: usize = 12;

/// The console password, as its hash.
pub struct Password {
    salt: [u8; 16],
    hash: [u8; 32],
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

fn derive(password: &str, salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, ROUNDS, &mut out);
    out
}

impl Password {
    /// Hashes `password`; refuses one shorter than [`MIN_PASSWORD`].
    pub fn new(password: &str) -> Result<Self, String> {
        if password.chars().count() < MIN_PASSWORD {
            return Err(format!(
                "--console-password must be at least {MIN_PASSWORD} characters"
            ));
        }
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Ok(Self {
            salt,
            hash: derive(password, &salt),
        })
    }

    /// Whether `presented` is the password (compared in constant time).
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(derive(presented, &self.salt).ct_eq(&self.hash))
    }
}

/// Wrong sign-ins allowed per address within [`WINDOW`].
pub const MAX_WRONG: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; past it the oldest entries go (memory stays bounded).
const MAX_ADDRESSES: usize = 10_000;

/// Wrong sign-ins per client address, in a sliding window.
#[derive(Default)]
pub struct Throttle {
    wrong: Mutex<HashMap<Option<IpAddr>, Vec<Instant>>>,
}

impl Throttle {
    /// `Some(wait)` when `addr` used up its tries: how long until the next one.
    pub fn refused(&self, addr: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.wrong.lock().unwrap();
        let tries = map.get_mut(&addr)?;
        tries.retain(|t| now.duration_since(*t) < WINDOW);
        if tries.len() < MAX_WRONG {
            return None;
        }
        let oldest = tries.iter().min().copied().unwrap_or(now);
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    /// A wrong sign-in from `addr`.
    pub fn wrong(&self, addr: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.wrong.lock().unwrap();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&addr) {
            map.retain(|_, tries| tries.iter().any(|t| now.duration_since(*t) < WINDOW));
            if map.len() >= MAX_ADDRESSES {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, tries)| tries.iter().max().copied())
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        map.entry(addr).or_default().push(now);
    }

    /// A right sign-in from `addr` forgets its wrong ones.
    pub fn right(&self, addr: Option<IpAddr>) {
        self.wrong.lock().unwrap().remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_matches_only_itself() {
        assert!(Password::new("short").is_err());
        let p = Password::new("correct horse battery").unwrap();
        assert!(p.matches("correct horse battery"));
        assert!(!p.matches("correct horse batterY"));
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn five_wrong_sign_ins_a_minute_then_refused() {
        let t = Throttle::default();
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for _ in 0..MAX_WRONG {
            assert!(t.refused(a).is_none());
            t.wrong(a);
        }
        let wait = t.refused(a).expect("refused");
        assert!(wait <= WINDOW && wait > Duration::from_secs(50), "{wait:?}");
        assert!(t.refused(b).is_none(), "another address is not held up");
        t.right(a);
        assert!(t.refused(a).is_none());
    }
}
