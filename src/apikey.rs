//! Tenant API keys: `bqk_<public id>_<secret>`. Only a keyed hash of the secret is stored.

use crate::secrets::{random_bytes, random_token, SecretKey, SecretString};

pub const PREFIX: &str = "bqk_";

/// A freshly generated key: `plaintext` is shown once, the rest is stored.
pub struct NewApiKey {
    pub plaintext: SecretString,
    pub public_id: String,
    pub hash: Vec<u8>,
}

/// 64 random bits of public id (to find the row) plus 256 bits of secret.
pub fn generate(key: &SecretKey) -> NewApiKey {
    let public_id = hex::encode(random_bytes::<8>());
    let secret = random_token();
    NewApiKey {
        plaintext: format!("{PREFIX}{public_id}_{secret}").into(),
        hash: key.mac(secret.as_bytes()),
        public_id,
    }
}

/// Splits a presented key into its public id and secret, if it has the right shape.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::ExposeSecret;

    #[test]
    fn generated_key_parses_and_verifies() {
        let key = SecretKey::from_bytes([3; 32]);
        let k = generate(&key);
        assert!(k.plaintext.expose_secret().starts_with("bqk_"));
        let (id, secret) = parse(k.plaintext.expose_secret()).unwrap();
        assert_eq!(id, k.public_id);
        assert!(secret.len() >= 43, "at least 256 bits of secret");
        assert!(key.verify_mac(secret.as_bytes(), &k.hash));
        assert!(parse("bqk_short_x").is_none());
    }
}
