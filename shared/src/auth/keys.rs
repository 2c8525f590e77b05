//! Signing and verification keys. Tokens are ES256; verifiers hold public keys only, indexed by
//! `kid`, so a rotation publishes the new key while the old one still verifies.

use std::collections::HashMap;

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};

use crate::error::AppError;
use crate::secrets::AppSecret;

/// The one algorithm this service signs and accepts.
pub const ALGORITHM: Algorithm = Algorithm::ES256;

pub struct Signer {
    pub kid: String,
    pub key: EncodingKey,
}

pub struct KeyRing {
    pub signer: Option<Signer>,
    verifiers: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl KeyRing {
    pub fn from_secret(secret: &AppSecret) -> Result<Self, AppError> {
        let mut verifiers = HashMap::new();
        let mut keys = Vec::new();
        let mut signer = None;
        if let Some(material) = &secret.signing_key {
            let key = EncodingKey::from_ec_pem(material.private_key_pem.as_bytes()).map_err(|_| {
                AppError::Config(
                    "secret key 'signing_key.private_key_pem' is not a PKCS#8 PEM EC P-256 private key"
                        .into(),
                )
            })?;
            let jwk = public_jwk(&key, &material.kid)?;
            verifiers.insert(material.kid.clone(), decoding_key(&jwk)?);
            keys.push(jwk);
            signer = Some(Signer {
                kid: material.kid.clone(),
                key,
            });
        }
        for (i, value) in secret.verification_keys.iter().enumerate() {
            let bad = || {
                AppError::Config(format!(
                    "secret key 'verification_keys[{i}]' is not a public EC P-256 JWK with a kid"
                ))
            };
            if value.get("d").is_some() {
                return Err(AppError::Config(format!(
                    "secret key 'verification_keys[{i}]' holds a private key; it must be public"
                )));
            }
            let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| bad())?;
            let kid = jwk.common.key_id.clone().ok_or_else(bad)?;
            if verifiers.contains_key(&kid) {
                continue;
            }
            verifiers.insert(kid, decoding_key(&jwk).map_err(|_| bad())?);
            keys.push(jwk);
        }
        if verifiers.is_empty() {
            return Err(AppError::Config(
                "secret keys 'signing_key' and 'verification_keys' are both missing: no token could be verified"
                    .into(),
            ));
        }
        Ok(KeyRing {
            signer,
            verifiers,
            jwks: JwkSet { keys },
        })
    }

    pub fn verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifiers.get(kid)
    }

    /// The public keys, as published at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

fn public_jwk(key: &EncodingKey, kid: &str) -> Result<Jwk, AppError> {
    let mut jwk = Jwk::from_encoding_key(key, ALGORITHM)
        .map_err(|_| AppError::Config("secret key 'signing_key' is not an EC P-256 key".into()))?;
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
    Ok(jwk)
}

fn decoding_key(jwk: &Jwk) -> Result<DecodingKey, AppError> {
    DecodingKey::from_jwk(jwk)
        .map_err(|_| AppError::Config("a verification key is not usable".into()))
}

/// A fresh P-256 key pair for the secret: `(kid, PKCS#8 PEM)`. The kid is the RFC 7638
/// thumbprint, so it names the key itself.
pub fn generate_signing_key() -> Result<(String, String), AppError> {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| AppError::Internal(format!("could not encode a new key: {e}")))?
        .to_string();
    let key = EncodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|e| AppError::Internal(format!("could not read a new key: {e}")))?;
    let jwk = Jwk::from_encoding_key(&key, ALGORITHM)
        .map_err(|e| AppError::Internal(format!("could not derive a public key: {e}")))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| AppError::Internal(format!("could not compute a key id: {e}")))?;
    Ok((kid, pem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SigningKeyMaterial;

    pub(crate) fn secret_with_key() -> AppSecret {
        let (kid, pem) = generate_signing_key().unwrap();
        AppSecret {
            mongodb_uri: "mongodb://h/".into(),
            open_finance_db: "of".into(),
            leafy_bank_db: "lb".into(),
            signing_key: Some(SigningKeyMaterial {
                kid,
                private_key_pem: pem,
            }),
            verification_keys: vec![],
            clients: vec![],
            data_encryption_key: None,
            institution_client: None,
        }
    }

    #[test]
    fn jwks_publishes_only_public_components() {
        let secret = secret_with_key();
        let ring = KeyRing::from_secret(&secret).unwrap();
        let json = serde_json::to_value(ring.jwks()).unwrap();
        let key = &json["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(
            key["kid"],
            secret.signing_key.as_ref().unwrap().kid.as_str()
        );
        assert!(key.get("d").is_none(), "private component published: {key}");
    }

    #[test]
    fn previous_keys_still_verify_after_rotation() {
        let old = secret_with_key();
        let old_ring = KeyRing::from_secret(&old).unwrap();
        let old_public = serde_json::to_value(&old_ring.jwks().keys[0]).unwrap();
        let mut new = secret_with_key();
        new.verification_keys = vec![old_public];
        let ring = KeyRing::from_secret(&new).unwrap();
        assert_eq!(ring.jwks().keys.len(), 2);
        assert!(ring.verifier(&old.signing_key.unwrap().kid).is_some());
    }

    #[test]
    fn a_bad_pem_names_the_key() {
        let mut secret = secret_with_key();
        secret.signing_key.as_mut().unwrap().private_key_pem = "garbage".into();
        let err = KeyRing::from_secret(&secret).err().unwrap().to_string();
        assert!(err.contains("signing_key.private_key_pem"), "{err}");
    }

    #[test]
    fn no_key_at_all_or_a_private_verification_key_is_a_start_up_error() {
        let mut secret = secret_with_key();
        secret.signing_key = None;
        let err = KeyRing::from_secret(&secret).err().unwrap().to_string();
        assert!(
            err.contains("'signing_key' and 'verification_keys'"),
            "{err}"
        );

        let mut public = serde_json::to_value(
            &KeyRing::from_secret(&secret_with_key())
                .unwrap()
                .jwks()
                .keys[0],
        )
        .unwrap();
        public["d"] = "c2VjcmV0".into();
        secret.verification_keys = vec![public];
        let err = KeyRing::from_secret(&secret).err().unwrap().to_string();
        assert!(
            err.contains("verification_keys[0]") && err.contains("private"),
            "{err}"
        );
    }
}
