//! Digests of stored secrets (tokens, client secrets) and constant-time comparison.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Lower-case hex SHA-256 of `value`: how tokens and client secrets are kept at rest. These are
/// high-entropy random strings, so a fast digest is the right tool (no password hashing).
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether `presented` hashes to `expected_hex`, compared in constant time.
pub fn matches_digest(presented: &str, expected_hex: &str) -> bool {
    let actual = Sha256::digest(presented.as_bytes());
    match hex::decode(expected_hex) {
        Ok(expected) => bool::from(actual[..].ct_eq(&expected[..])),
        Err(_) => false,
    }
}

/// A random URL-safe secret of `bytes` bytes of entropy.
pub fn random_secret(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_hex() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn matches_only_the_right_secret() {
        let d = sha256_hex("s3cret");
        assert!(matches_digest("s3cret", &d));
        assert!(!matches_digest("s3cret ", &d));
        assert!(!matches_digest("s3cret", "not-hex"));
        assert!(!matches_digest("s3cret", &d[..10]));
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(random_secret(32), random_secret(32));
        assert_eq!(random_secret(32).len(), 43);
    }
}
