//! The server's secret key and what it protects: sealed credentials (AES-256-GCM),
//! keyed hashes of API keys (HMAC-SHA-256), and generated passwords and tokens.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub use secrecy::{ExposeSecret, SecretString};

/// The one place a secret is written out: the answers that show a secret once (a new
/// tenant's API key and credentials, a new user's) serialise it with this. Its
/// `Debug` stays `[REDACTED]`.
pub fn serialize_exposed<S: serde::Serializer>(
    secret: &SecretString,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("BERQENAS_SECRET_KEY must be 32 bytes as 64 hex digits or base64")]
    BadKey,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("sealed data does not open with this server's secret key")]
    Open,
}

/// 32 random bytes; never printed (Debug is redacted).
#[derive(Clone)]
pub struct SecretKey {
    cipher: Aes256Gcm,
    mac_key: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    pub fn from_bytes(key: [u8; 32]) -> Self {
        // Separate keys for separate uses, derived from the one secret.
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        Self {
            cipher: Aes256Gcm::new(&derive(b"berqenas seal v1").into()),
            mac_key: derive(b"berqenas api-key hash v1"),
        }
    }

    /// From `BERQENAS_SECRET_KEY` when given, else from `<data-dir>/secret-key`,
    /// generated (mode 0600) on first start.
    pub fn load(env_value: Option<&str>, data_dir: &Path) -> Result<Self, SecretError> {
        if let Some(text) = env_value {
            return Ok(Self::from_bytes(
                decode_key(text).ok_or(SecretError::BadKey)?,
            ));
        }
        let path = data_dir.join("secret-key");
        let text = read_or_create(&path, || hex::encode(random_bytes::<32>()))?;
        Ok(Self::from_bytes(
            decode_key(&text).ok_or(SecretError::BadKey)?,
        ))
    }

    /// nonce (12 bytes) || ciphertext+tag.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<12>();
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(Nonce::from_slice(&nonce), plaintext)
                .expect("AES-GCM encryption of an in-memory buffer cannot fail"),
        );
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 12 {
            return Err(SecretError::Open);
        }
        let (nonce, body) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| SecretError::Open)
    }

    /// Keyed hash: a stolen table of hashes is useless without the server's key.
    pub fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    /// Constant-time comparison of `data`'s hash with a stored one.
    pub fn verify_mac(&self, data: &[u8], expected: &[u8]) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key).expect("any key length");
        mac.update(data);
        mac.verify_slice(expected).is_ok()
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())?;
    bytes.try_into().ok()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// 256 random bits, URL-safe (no characters that need escaping in a DSN).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// Passwords made ahead of need, each with its SCRAM verifier: in this process's
/// memory only (never stored, logged or reused: each is handed out once), so that a
/// create takes one ready instead of waiting for its verifier (docs/warm_pool.md).
/// The verifier's cost is not lowered (PostgreSQL's 4096 rounds): it is paid earlier.
static READY: std::sync::Mutex<Vec<(SecretString, String)>> = std::sync::Mutex::new(Vec::new());
/// How many are kept ready: a burst of creates at once finds one each.
const READY_MAX: usize = 16;

fn password_and_verifier() -> (SecretString, String) {
    let password = SecretString::from(random_token());
    let verifier = postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
    (password, verifier)
}

/// A new login password and its SCRAM verifier: one made ahead if there is one (the
/// handle is then ready at once), else computed on a blocking thread, where SCRAM's
/// 4096 PBKDF2 rounds (about a millisecond of CPU) overlap the caller's first round
/// trips instead of stalling the runtime. Either way another is made for the next
/// caller, off this one's path.
/// The SCRAM-SHA-256 verifier of a password berqenas holds (computed off the async
/// threads: it costs 4096 rounds of PBKDF2).
pub async fn verifier_of(password: SecretString) -> String {
    tokio::task::spawn_blocking(move || {
        postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes())
    })
    .await
    .expect("computing a SCRAM verifier does not panic")
}

pub fn new_password() -> (SecretString, tokio::task::JoinHandle<String>) {
    let ready = READY.lock().unwrap_or_else(|e| e.into_inner()).pop();
    tokio::task::spawn_blocking(|| {
        let made = password_and_verifier();
        let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
        if ready.len() < READY_MAX {
            ready.push(made);
        }
    });
    match ready {
        Some((password, verifier)) => (password, tokio::spawn(async move { verifier })),
        None => {
            let password = SecretString::from(random_token());
            let for_verifier = password.clone();
            let verifier = tokio::task::spawn_blocking(move || {
                postgres_protocol::password::scram_sha_256(for_verifier.expose_secret().as_bytes())
            });
            (password, verifier)
        }
    }
}

/// Whether a SCRAM-SHA-256 verifier as PostgreSQL stores it (`rolpassword`,
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`) was made from
/// `password`: the same derivation the server runs at login. Our passwords are ASCII
/// without spaces, so SASLprep leaves them as they are. Costs the verifier's
/// iterations (4096: about a millisecond).
pub fn scram_verifier_matches(verifier: &str, password: &str) -> bool {
    use base64::engine::general_purpose::STANDARD;
    use sha2::Digest;
    let parsed = (|| {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, _) = keys.split_once(':')?;
        Some((
            iterations.parse::<u32>().ok()?,
            STANDARD.decode(salt).ok()?,
            STANDARD.decode(stored_key).ok()?,
        ))
    })();
    let Some((iterations, salt, stored_key)) = parsed else {
        return false;
    };
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&salted).expect("any key length");
    mac.update(b"Client Key");
    let client_key = mac.finalize().into_bytes();
    let computed = Sha256::digest(client_key);
    subtle::ConstantTimeEq::ct_eq(computed.as_slice(), stored_key.as_slice()).into()
}

/// Reads a secret file, or creates it with mode 0600 holding `make()`. Creation uses
/// O_EXCL so two servers starting at once agree on one value.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, SecretError> {
    let io = |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            let value = make();
            f.write_all(format!("{value}\n").as_bytes()).map_err(io)?;
            Ok(value)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(fs::read_to_string(path).map_err(io)?.trim().to_string())
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_tampering() {
        let key = SecretKey::from_bytes([7; 32]);
        let mut sealed = key.seal(b"hunter2");
        assert_eq!(key.open(&sealed).unwrap(), b"hunter2");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(key.open(&sealed).is_err());
        assert!(SecretKey::from_bytes([8; 32])
            .open(&key.seal(b"x"))
            .is_err());
    }

    #[test]
    fn scram_verifiers_are_checked_against_their_password() {
        let v = postgres_protocol::password::scram_sha_256(b"correct-horse");
        assert!(scram_verifier_matches(&v, "correct-horse"));
        assert!(!scram_verifier_matches(&v, "correct-horsf"));
        assert!(!scram_verifier_matches("md5abc", "correct-horse"));
        assert!(!scram_verifier_matches(
            "SCRAM-SHA-256$x:y$z:w",
            "correct-horse"
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passwords_made_ahead_match_their_verifiers_and_are_never_handed_out_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let (password, verifier) = new_password();
            let verifier = verifier.await.unwrap();
            assert!(scram_verifier_matches(&verifier, password.expose_secret()));
            assert!(seen.insert(password.expose_secret().to_string()));
            // Let the refill behind it finish, so later rounds take ready ones.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(!READY.lock().unwrap().is_empty());
    }

    #[test]
    fn mac_verifies_only_the_same_input() {
        let key = SecretKey::from_bytes([1; 32]);
        let tag = key.mac(b"secret");
        assert!(key.verify_mac(b"secret", &tag));
        assert!(!key.verify_mac(b"secreT", &tag));
    }
}
