//! Standard Webhooks signatures (standardwebhooks.com): a delivery carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
//! space-separated list of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one
//! per secret in force (two while a secret is being rotated). A secret is `whsec_`
//! followed by the base64 of its key bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub const PREFIX: &str = "whsec_";

/// A secret that is not `whsec_<base64>`.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret is \"whsec_\" followed by base64")]
pub struct BadSecret;

/// A new secret: 24 random bytes, as Svix makes them.
pub fn generate() -> SecretString {
    let key: [u8; 24] = rand::random();
    format!("{PREFIX}{}", STANDARD.encode(key)).into()
}

fn key(secret: &SecretString) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret
        .expose_secret()
        .strip_prefix(PREFIX)
        .ok_or(BadSecret)?;
    STANDARD.decode(b64).map_err(|_| BadSecret)
}

/// One `v1,<signature>` of `body` sent as message `id` at `timestamp`.
pub fn sign(
    secret: &SecretString,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, BadSecret> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret)?).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn header(
    secrets: &[&SecretString],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, BadSecret> {
    let sigs: Result<Vec<String>, BadSecret> = secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect();
    Ok(sigs?.join(" "))
}

/// Whether `header` (a `webhook-signature` value) holds a `v1` signature of `body` sent
/// as message `id` at `timestamp` with `secret`; compared in constant time. The
/// caller checks the timestamp's age.
pub fn verify(secret: &SecretString, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = key(secret) else {
        return false;
    };
    header.split_whitespace().any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published example (standard-webhooks, spec/standard-webhooks.md).
    #[test]
    fn signs_the_specifications_example() {
        let secret: SecretString = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string().into();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(verify(
            &secret,
            id,
            1614265330,
            body,
            &format!("v1,bm90IGl0 {sig}")
        ));
        assert!(!verify(&secret, id, 1614265331, body, &sig));
        assert!(!verify(&secret, id, 1614265330, b"{}", &sig));
        assert!(!verify(&secret, id, 1614265330, body, "v1,not-base64!"));
    }

    #[test]
    fn generated_secrets_sign_and_differ() {
        let (a, b) = (generate(), generate());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().starts_with(PREFIX));
        let one = sign(&a, "m", 1, b"{}").unwrap();
        assert_ne!(one, sign(&b, "m", 1, b"{}").unwrap());
        assert_eq!(
            header(&[&a, &b], "m", 1, b"{}").unwrap().split(' ').count(),
            2
        );
    }

    #[test]
    fn a_secret_without_the_prefix_is_refused() {
        let s: SecretString = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string().into();
        assert!(sign(&s, "m", 1, b"").is_err());
    }
}
