//! JWT access tokens: issued with the ring's signer, verified against its public keys with the
//! algorithm pinned and `iss`/`aud`/`exp`/`nbf` checked. Verification makes no database call.

use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{ALGORITHM, KeyRing};
use crate::error::AppError;

/// Clock skew tolerated on `exp`/`nbf`.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    /// The user's ObjectId (hex) for user tokens, the client id for client tokens.
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// Space-separated scopes (RFC 8693 style).
    pub scope: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// For tokens addressed to an institution: the consent they act under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
}

impl Claims {
    /// Claims for a token valid from now for `ttl`, with a fresh `jti`.
    pub fn new(
        issuer: &str,
        subject: &str,
        audience: &str,
        ttl: Duration,
        scope: &str,
        client_id: &str,
    ) -> Self {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: issuer.into(),
            sub: subject.into(),
            aud: audience.into(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: scope.into(),
            client_id: client_id.into(),
            user_name: None,
            consent_id: None,
        }
    }
}

pub fn issue(keys: &KeyRing, claims: &Claims) -> Result<String, AppError> {
    let signer = keys
        .signer
        .as_ref()
        .ok_or_else(|| AppError::Config("the secret is missing key 'signing_key'".into()))?;
    let mut header = Header::new(ALGORITHM);
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, claims, &signer.key)
        .map_err(|e| AppError::Internal(format!("could not sign a token: {e}")))
}

/// Why a presented JWT was refused. Only the kind is reported to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was not issued for this audience")]
    Audience,
    #[error("the token was not issued by this service")]
    Issuer,
}

impl From<VerifyError> for AppError {
    fn from(e: VerifyError) -> Self {
        AppError::Unauthorized(e.to_string())
    }
}

pub fn verify(
    keys: &KeyRing,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<Claims, VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    // Pinned: `alg` comes from the token, so anything but ES256 (none, HS256 keyed with the
    // public key, …) is refused before a key is chosen.
    if header.alg != ALGORITHM {
        return Err(VerifyError::Algorithm);
    }
    let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
    let key = keys.verifier(&kid).ok_or(VerifyError::UnknownKey)?;
    let mut validation = Validation::new(ALGORITHM);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => VerifyError::Expired,
                K::ImmatureSignature => VerifyError::NotYetValid,
                K::InvalidAudience => VerifyError::Audience,
                K::InvalidIssuer => VerifyError::Issuer,
                K::InvalidSignature => VerifyError::Signature,
                K::InvalidAlgorithm => VerifyError::Algorithm,
                _ => VerifyError::Malformed,
            }
        })
}

/// Whether a bearer credential is shaped like a JWS (three dot-separated parts) rather than a
/// legacy opaque token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::generate_signing_key;
    use crate::secrets::{AppSecret, SigningKeyMaterial};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    const ISS: &str = "iss-test";
    const AUD: &str = "aud-test";

    fn ring() -> KeyRing {
        let (kid, pem) = generate_signing_key().unwrap();
        KeyRing::from_secret(&AppSecret {
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
        })
        .unwrap()
    }

    fn claims() -> Claims {
        Claims::new(
            ISS,
            "user-1",
            AUD,
            Duration::from_secs(600),
            "openfinance",
            "client-1",
        )
    }

    #[test]
    fn round_trip() {
        let keys = ring();
        let c = claims();
        let token = issue(&keys, &c).unwrap();
        assert_eq!(verify(&keys, &token, ISS, AUD).unwrap(), c);
    }

    #[test]
    fn refuses_wrong_issuer_audience_and_times() {
        let keys = ring();
        let token = issue(&keys, &claims()).unwrap();
        assert_eq!(
            verify(&keys, &token, "other", AUD),
            Err(VerifyError::Issuer)
        );
        assert_eq!(
            verify(&keys, &token, ISS, "other"),
            Err(VerifyError::Audience)
        );

        let mut expired = claims();
        expired.exp = chrono::Utc::now().timestamp() - 3600;
        expired.nbf = expired.exp - 600;
        let token = issue(&keys, &expired).unwrap();
        assert_eq!(verify(&keys, &token, ISS, AUD), Err(VerifyError::Expired));

        let mut future = claims();
        future.nbf = chrono::Utc::now().timestamp() + 3600;
        future.exp = future.nbf + 600;
        let token = issue(&keys, &future).unwrap();
        assert_eq!(
            verify(&keys, &token, ISS, AUD),
            Err(VerifyError::NotYetValid)
        );
    }

    #[test]
    fn refuses_alg_none_tampering_unknown_kid_and_garbage() {
        let keys = ring();
        let token = issue(&keys, &claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let none_token = format!("{none_header}.{}.", parts[1]);
        assert!(matches!(
            verify(&keys, &none_token, ISS, AUD),
            Err(VerifyError::Malformed | VerifyError::Algorithm)
        ));

        let mut payload: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = "someone-else".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(
            verify(&keys, &forged, ISS, AUD),
            Err(VerifyError::Signature)
        );

        let other = ring();
        let foreign = issue(&other, &claims()).unwrap();
        assert_eq!(
            verify(&keys, &foreign, ISS, AUD),
            Err(VerifyError::UnknownKey)
        );

        assert_eq!(
            verify(&keys, "garbage", ISS, AUD),
            Err(VerifyError::Malformed)
        );
        assert!(!looks_like_jwt("f4f4184e9669"));
        assert!(looks_like_jwt(&token));
    }
}
