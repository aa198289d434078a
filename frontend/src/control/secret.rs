//! Virtual-key secrets: generated from the OS's CSPRNG, shown once, stored
//! only as a SHA-256 hash (LiteLLM stores the same hex digest as the key's
//! `token`), so a copy of the database cannot call the gateway.
//!
//! A presented credential is always hashed ([`token_of`]): the `token`
//! itself (shown by `/key/list`, written to spend logs and Redis limit
//! keys) is a lookup handle for the admin API ([`handle_of`]), never a
//! key. The master key is compared by its digest in constant time
//! ([`MasterKey`]).

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// A new secret: `sk-` and 32 random bytes in URL-safe base64 (43 chars).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "sk-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored id of `secret`: lowercase hex SHA-256, whatever `secret`
/// looks like (a token hashes to another token, which matches no key).
pub fn token_of(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The key an admin call names: a stored token as is (LiteLLM's admin API
/// takes either), else the token of the secret. Only for the admin API,
/// which the master key guards; authentication uses [`token_of`].
pub fn handle_of(secret_or_token: &str) -> String {
    if is_token(secret_or_token) {
        secret_or_token.to_owned()
    } else {
        token_of(secret_or_token)
    }
}

/// Whether `s` may be a virtual key at all: ours and LiteLLM's start with
/// `sk-`. Anything else is refused without a store lookup.
pub fn looks_like_secret(s: &str) -> bool {
    s.starts_with("sk-")
}

/// The master key, kept as its SHA-256 digest and compared in constant
/// time, so neither the comparison's timing nor a memory dump of the
/// cached digest helps an attacker (the digest is not a credential: a
/// presented value is always hashed first).
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// The master key `secret` (`general_settings.master_key`).
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `presented` is the master key.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&digest))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Whether `s` looks like a stored token (64 lowercase hex digits).
pub fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The display form of a secret, `sk-...abcd`: enough to recognise a key
/// in a list, useless to call with.
pub fn display_name(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn secrets_are_random_and_hash_stably() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with("sk-") && a.len() == 46, "{a}");
        assert_eq!(token_of(&a), token_of(&a));
        assert_ne!(token_of(&a), token_of(&b));
        assert!(is_token(&token_of(&a)));
        // A token is hashed again: it is not a key.
        assert_ne!(token_of(&token_of(&a)), token_of(&a));
        // Admin calls may name a key by its token.
        assert_eq!(handle_of(&token_of(&a)), token_of(&a));
        assert_eq!(handle_of(&a), token_of(&a));
    }

    #[test]
    fn the_master_key_matches_itself_only() {
        let m = MasterKey::new("sk-master");
        assert!(m.matches("sk-master"));
        assert!(!m.matches(&token_of("sk-master")));
        assert!(!m.matches("sk-maste"));
        assert!(!m.matches("sk-masterx"));
        assert!(!m.matches(""));
        assert_eq!(format!("{m:?}"), "MasterKey(..)");
        assert!(looks_like_secret("sk-x") && !looks_like_secret(&token_of("sk-x")));
    }

    #[test]
    fn known_digest_and_display_name() {
        // `echo -n sk-1234 | sha256sum`
        assert_eq!(
            token_of("sk-1234"),
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
        assert_eq!(display_name("sk-abcdefgh"), "sk-...efgh");
    }
}
