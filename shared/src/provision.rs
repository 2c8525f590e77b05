//! Operator tasks around the secret: creating it with a fresh signing key and client, and
//! rotating the signing key. Used by `leafy-admin`, the local stack and the tests alike.

use serde_json::{Value, json};

use crate::auth::hash::{random_secret, sha256_hex};
use crate::auth::keys::{KeyRing, generate_signing_key};
use crate::crypto::DataKey;
use crate::error::AppError;

/// The client Leafy Bank is registered as at the institutions' authorisation server.
pub const INSTITUTION_CLIENT_ID: &str = "leafy-bank-open-finance";
use crate::secrets::{AppSecret, SecretNeeds};

/// A new secret document, with the one clear-text client secret it implies (shown once to the
/// operator, never stored: the document keeps only its digest).
pub struct NewSecret {
    pub document: Value,
    pub client_id: String,
    pub client_secret: String,
}

pub fn new_secret(
    mongodb_uri: &str,
    open_finance_db: &str,
    leafy_bank_db: &str,
    client_id: &str,
    scopes: &[&str],
) -> Result<NewSecret, AppError> {
    let (kid, pem) = generate_signing_key()?;
    let client_secret = random_secret(32);
    let institution_secret = random_secret(32);
    let document = json!({
        "mongodb_uri": mongodb_uri,
        "open_finance_db": open_finance_db,
        "leafy_bank_db": leafy_bank_db,
        "signing_key": {"kid": kid, "private_key_pem": pem},
        "verification_keys": [],
        "clients": [{
            "client_id": client_id,
            "client_secret_sha256": sha256_hex(&client_secret),
            "scopes": scopes,
            "grant_types": ["client_credentials"],
        }, {
            "client_id": INSTITUTION_CLIENT_ID,
            "client_secret_sha256": sha256_hex(&institution_secret),
            "scopes": [],
            "grant_types": ["authorization_code", "refresh_token"],
        }],
        "data_encryption_key": DataKey::generate_base64(),
        "institution_client": {"client_id": INSTITUTION_CLIENT_ID, "client_secret": institution_secret},
    });
    Ok(NewSecret {
        document,
        client_id: client_id.into(),
        client_secret,
    })
}

/// The same secret with a new signing key; the old public key stays in `verification_keys`
/// so tokens it signed keep verifying until they expire.
pub fn rotate_signing_key(document: &Value) -> Result<Value, AppError> {
    let current = AppSecret::parse(&document.to_string(), SecretNeeds::Issue)?;
    let ring = KeyRing::from_secret(&current)?;
    let mut rotated = document.clone();
    let (kid, pem) = generate_signing_key()?;
    rotated["signing_key"] = json!({"kid": kid, "private_key_pem": pem});
    rotated["verification_keys"] = serde_json::to_value(&ring.jwks().keys)
        .map_err(|e| AppError::Internal(format!("could not encode public keys: {e}")))?;
    Ok(rotated)
}

/// Creates the secret, or replaces its value if it exists.
pub async fn put_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    document: &Value,
) -> Result<(), AppError> {
    let text = document.to_string();
    let created = client
        .create_secret()
        .name(secret_id)
        .secret_string(&text)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception()) =>
        {
            client
                .put_secret_value()
                .secret_id(secret_id)
                .secret_string(text)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| secrets_error(secret_id, e))
        }
        Err(e) => Err(secrets_error(secret_id, e)),
    }
}

/// The secret's current document, if it exists.
pub async fn get_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<Option<Value>, AppError> {
    match client.get_secret_value().secret_id(secret_id).send().await {
        Ok(out) => {
            let text = out.secret_string().unwrap_or("{}");
            serde_json::from_str(text)
                .map(Some)
                .map_err(|_| AppError::Config(format!("secret '{secret_id}' is not JSON")))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(secrets_error(secret_id, e)),
    }
}

fn secrets_error<E: std::error::Error + 'static>(secret_id: &str, e: E) -> AppError {
    AppError::Secrets(format!(
        "secret '{secret_id}': {}",
        aws_sdk_secretsmanager::error::DisplayErrorContext(e)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_is_valid_and_holds_no_clear_client_secret() {
        let new = new_secret("mongodb://h/", "of", "lb", "c1", &["openfinance"]).unwrap();
        let text = new.document.to_string();
        assert!(!text.contains(&new.client_secret));
        let parsed = AppSecret::parse(&text, SecretNeeds::All).unwrap();
        assert_eq!(parsed.clients[0].client_id, "c1");
        KeyRing::from_secret(&parsed).unwrap();
    }

    #[test]
    fn rotation_keeps_the_old_public_key_only() {
        let new = new_secret("mongodb://h/", "of", "lb", "c1", &[]).unwrap();
        let old_kid = new.document["signing_key"]["kid"]
            .as_str()
            .unwrap()
            .to_string();
        let rotated = rotate_signing_key(&new.document).unwrap();
        assert_ne!(rotated["signing_key"]["kid"], old_kid.as_str());
        assert_eq!(rotated["verification_keys"][0]["kid"], old_kid.as_str());
        assert!(rotated["verification_keys"][0].get("d").is_none());
        let ring = KeyRing::from_secret(
            &AppSecret::parse(&rotated.to_string(), SecretNeeds::Issue).unwrap(),
        )
        .unwrap();
        assert!(ring.verifier(&old_kid).is_some());
    }
}
