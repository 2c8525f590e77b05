//! Encryption at rest for the one secret Leafy Bank must use again: the tokens that let it act
//! for a consent. AES-256-GCM with a random nonce per value; the consent id is the associated
//! data, so a ciphertext copied onto another consent does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::AppError;

pub struct DataKey(Aes256Gcm);

impl DataKey {
    /// From the secret's `data_encryption_key`: 32 bytes, base64.
    pub fn from_base64(value: &str) -> Result<Self, AppError> {
        let bytes = B64
            .decode(value.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                AppError::Config(
                    "secret key 'data_encryption_key' must be 32 bytes of base64".into(),
                )
            })?;
        Aes256Gcm::new_from_slice(&bytes).map(DataKey).map_err(|_| {
            AppError::Config("secret key 'data_encryption_key' must be 32 bytes of base64".into())
        })
    }

    /// A new random key, base64, for the secret.
    pub fn generate_base64() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// `v1.<nonce>.<ciphertext>`, base64 parts.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, AppError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| AppError::Internal("encryption failed".into()))?;
        Ok(format!(
            "v1.{}.{}",
            B64.encode(nonce),
            B64.encode(ciphertext)
        ))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<String, AppError> {
        let bad = || AppError::Internal("a stored credential could not be decrypted".into());
        let mut parts = sealed.split('.');
        let (Some("v1"), Some(nonce), Some(ciphertext), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let nonce: [u8; 12] = B64
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(bad)?;
        let ciphertext = B64.decode(ciphertext).map_err(|_| bad())?;
        let plaintext = self
            .0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(plaintext).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = DataKey::from_base64(&DataKey::generate_base64()).unwrap();
        let sealed = key.seal("refresh-token", "consent-1").unwrap();
        assert!(!sealed.contains("refresh-token"));
        assert_eq!(key.open(&sealed, "consent-1").unwrap(), "refresh-token");
        assert!(key.open(&sealed, "consent-2").is_err());
        assert_ne!(sealed, key.seal("refresh-token", "consent-1").unwrap());
        let other = DataKey::from_base64(&DataKey::generate_base64()).unwrap();
        assert!(other.open(&sealed, "consent-1").is_err());
        assert!(key.open("v1.x.y", "consent-1").is_err());
    }

    #[test]
    fn key_must_be_32_bytes() {
        assert!(DataKey::from_base64("c2hvcnQ=").is_err());
        assert!(DataKey::from_base64("not base64!").is_err());
    }
}
