//! Virtual-key secrets: generated from the OS's CSPRNG, shown once, stored
//! only as a SHA-256 hash (LiteLLM stores the same hex digest as the key's
//! `token`), so a copy of the database cannot call the gateway.

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

/// A new secret: `sk-` and 32 random bytes in URL-safe base64 (43 chars).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "sk-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored id of `secret`: lowercase hex SHA-256. A value that is
/// already such a digest (admin calls may pass the `token` instead of the
/// secret) is returned as is.
pub fn token_of(secret: &str) -> String {
    if is_token(secret) {
        return secret.to_owned();
    }
    hex::encode(Sha256::digest(secret.as_bytes()))
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
        // A token passes through: admin calls may name a key by it.
        assert_eq!(token_of(&token_of(&a)), token_of(&a));
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
