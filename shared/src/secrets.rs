//! The service's one Secrets Manager secret: fetched with the standard AWS SDK once per cold
//! start, cached with a TTL so rotations are picked up, validated key by key so a bad secret
//! fails at start-up with a message naming the key (and never a value).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::auth::keys::KeyRing;
use crate::error::AppError;

pub const DEFAULT_OPEN_FINANCE_DB: &str = "open_finance";
pub const DEFAULT_LEAFY_BANK_DB: &str = "leafy_bank";

/// The secret's JSON. Its `Debug` shows only what is safe to log (names, never values).
#[derive(Deserialize, Clone)]
pub struct AppSecret {
    pub mongodb_uri: String,
    #[serde(default = "default_open_finance_db")]
    pub open_finance_db: String,
    #[serde(default = "default_leafy_bank_db")]
    pub leafy_bank_db: String,
    /// The private key that signs tokens. Only the token function needs it.
    #[serde(default)]
    pub signing_key: Option<SigningKeyMaterial>,
    /// Public JWKs of keys still accepted for verification (previous keys during a rotation).
    #[serde(default)]
    pub verification_keys: Vec<Value>,
    /// Registered OAuth clients.
    #[serde(default)]
    pub clients: Vec<ClientRecord>,
    /// AES-256 key (base64) that encrypts the consent tokens Leafy Bank stores.
    #[serde(default)]
    pub data_encryption_key: Option<String>,
    /// Leafy Bank's own client at the institutions' authorisation server.
    #[serde(default)]
    pub institution_client: Option<ClientCredentials>,
}

/// Credentials Leafy Bank presents as a client (unlike [`ClientRecord`], which a server checks).
#[derive(Deserialize, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSecret")
            .field("mongodb_uri", &"<redacted>")
            .field("open_finance_db", &self.open_finance_db)
            .field("leafy_bank_db", &self.leafy_bank_db)
            .field(
                "signing_key_kid",
                &self.signing_key.as_ref().map(|k| k.kid.as_str()),
            )
            .field("verification_keys", &self.verification_keys.len())
            .field(
                "clients",
                &self
                    .clients
                    .iter()
                    .map(|c| c.client_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn default_open_finance_db() -> String {
    DEFAULT_OPEN_FINANCE_DB.into()
}
fn default_leafy_bank_db() -> String {
    DEFAULT_LEAFY_BANK_DB.into()
}

#[derive(Deserialize, Clone)]
pub struct SigningKeyMaterial {
    pub kid: String,
    /// PKCS#8 PEM of an EC P-256 private key (ES256).
    pub private_key_pem: String,
}

/// A registered OAuth client. Its secret is stored only as a SHA-256 digest (hex).
#[derive(Deserialize, Clone)]
pub struct ClientRecord {
    pub client_id: String,
    pub client_secret_sha256: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
}

fn default_grant_types() -> Vec<String> {
    vec!["client_credentials".into()]
}

/// Which keys a function insists on, beyond `mongodb_uri`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretNeeds {
    /// Verifies tokens only.
    Verify,
    /// Issues tokens: needs `signing_key` and `clients`.
    Issue,
    /// Acts for consents at the institutions: needs `data_encryption_key` and
    /// `institution_client`.
    Connect,
    /// Everything (the local API server runs every function).
    All,
}

impl SecretNeeds {
    fn issue(self) -> bool {
        matches!(self, SecretNeeds::Issue | SecretNeeds::All)
    }
    fn connect(self) -> bool {
        matches!(self, SecretNeeds::Connect | SecretNeeds::All)
    }
}

impl AppSecret {
    /// Parses and validates the secret string. Errors name the offending key, never its value.
    pub fn parse(raw: &str, needs: SecretNeeds) -> Result<Self, AppError> {
        let value: Value = serde_json::from_str(raw)
            .map_err(|_| AppError::Config("the secret is not a JSON object".into()))?;
        let Value::Object(map) = &value else {
            return Err(AppError::Config("the secret is not a JSON object".into()));
        };
        let require = |key: &str| -> Result<&Value, AppError> {
            map.get(key)
                .filter(|v| !v.is_null())
                .ok_or_else(|| AppError::Config(format!("the secret is missing key '{key}'")))
        };
        expect_string(require("mongodb_uri")?, "mongodb_uri")?;
        for key in ["open_finance_db", "leafy_bank_db"] {
            if let Some(v) = map.get(key) {
                expect_string(v, key)?;
            }
        }
        if needs.connect() {
            expect_string(require("data_encryption_key")?, "data_encryption_key")?;
            let client = require("institution_client")?;
            for field in ["client_id", "client_secret"] {
                let key = format!("institution_client.{field}");
                expect_string(
                    client.get(field).ok_or_else(|| {
                        AppError::Config(format!("the secret is missing key '{key}'"))
                    })?,
                    &key,
                )?;
            }
        }
        if needs.issue() {
            let signing = require("signing_key")?;
            for field in ["kid", "private_key_pem"] {
                let key = format!("signing_key.{field}");
                expect_string(
                    signing.get(field).ok_or_else(|| {
                        AppError::Config(format!("the secret is missing key '{key}'"))
                    })?,
                    &key,
                )?;
            }
            let clients = require("clients")?
                .as_array()
                .ok_or_else(|| AppError::Config("secret key 'clients' must be an array".into()))?;
            for (i, client) in clients.iter().enumerate() {
                for field in ["client_id", "client_secret_sha256"] {
                    let key = format!("clients[{i}].{field}");
                    expect_string(
                        client.get(field).ok_or_else(|| {
                            AppError::Config(format!("the secret is missing key '{key}'"))
                        })?,
                        &key,
                    )?;
                }
                let digest = client["client_secret_sha256"].as_str().unwrap_or_default();
                if digest.len() != 64 || hex::decode(digest).is_err() {
                    return Err(AppError::Config(format!(
                        "secret key 'clients[{i}].client_secret_sha256' must be 64 hex digits"
                    )));
                }
            }
        }
        // Shapes were checked above; any remaining failure is a type deep inside (scopes,
        // verification keys). serde's message may quote values, so it is not passed on.
        serde_json::from_value(value).map_err(|_| {
            AppError::Config(
                "the secret has a value of the wrong type (see the README's secret format)".into(),
            )
        })
    }
}

fn expect_string(v: &Value, key: &str) -> Result<(), AppError> {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(()),
        _ => Err(AppError::Config(format!(
            "secret key '{key}' must be a non-empty string"
        ))),
    }
}

/// The secret with everything derived from it (parsed keys), swapped as one on refresh.
pub struct LoadedSecret {
    pub secret: AppSecret,
    pub keys: KeyRing,
    pub data_key: Option<crate::crypto::DataKey>,
}

impl LoadedSecret {
    pub fn data_key(&self) -> Result<&crate::crypto::DataKey, AppError> {
        self.data_key.as_ref().ok_or_else(|| {
            AppError::Config("the secret is missing key 'data_encryption_key'".into())
        })
    }

    pub fn institution_client(&self) -> Result<&ClientCredentials, AppError> {
        self.secret.institution_client.as_ref().ok_or_else(|| {
            AppError::Config("the secret is missing key 'institution_client'".into())
        })
    }
}

struct Cached {
    fetched_at: Instant,
    value: Arc<LoadedSecret>,
}

pub struct SecretStore {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    needs: SecretNeeds,
    cached: RwLock<Option<Cached>>,
    refresh: Mutex<()>,
    fetches: AtomicU64,
}

impl SecretStore {
    /// Builds the SDK client from the standard environment (region, credentials, and
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER` for an emulator).
    pub async fn from_env(secret_id: String, ttl: Duration, needs: SecretNeeds) -> Self {
        let config = aws_config::load_from_env().await;
        Self::new(
            aws_sdk_secretsmanager::Client::new(&config),
            secret_id,
            ttl,
            needs,
        )
    }

    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
        needs: SecretNeeds,
    ) -> Self {
        SecretStore {
            client,
            secret_id,
            ttl,
            needs,
            cached: RwLock::new(None),
            refresh: Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the secret was fetched from Secrets Manager by this process.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current secret: cached, refreshed after the TTL. If a refresh fails the previous
    /// value keeps serving (availability over freshness) and the failure is logged.
    pub async fn current(&self) -> Result<Arc<LoadedSecret>, AppError> {
        if let Some(c) = self.cached.read().await.as_ref()
            && c.fetched_at.elapsed() < self.ttl
        {
            return Ok(c.value.clone());
        }
        let _one_refresh_at_a_time = self.refresh.lock().await;
        if let Some(c) = self.cached.read().await.as_ref()
            && c.fetched_at.elapsed() < self.ttl
        {
            return Ok(c.value.clone());
        }
        match self.fetch().await {
            Ok(value) => {
                let value = Arc::new(value);
                *self.cached.write().await = Some(Cached {
                    fetched_at: Instant::now(),
                    value: value.clone(),
                });
                Ok(value)
            }
            Err(e) => match self.cached.read().await.as_ref() {
                Some(stale) => {
                    tracing::warn!(error = %e, "secret refresh failed; serving the cached secret");
                    Ok(stale.value.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<LoadedSecret, AppError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                AppError::Secrets(format!(
                    "could not read secret '{}': {}",
                    self.secret_id,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        let raw = output.secret_string().ok_or_else(|| {
            AppError::Config(format!("secret '{}' has no SecretString", self.secret_id))
        })?;
        let secret = AppSecret::parse(raw, self.needs)?;
        let keys = KeyRing::from_secret(&secret)?;
        let data_key = secret
            .data_encryption_key
            .as_deref()
            .map(crate::crypto::DataKey::from_base64)
            .transpose()?;
        Ok(LoadedSecret {
            secret,
            keys,
            data_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issue_secret() -> Value {
        json!({
            "mongodb_uri": "mongodb://127.0.0.1:1/",
            "signing_key": {"kid": "k1", "private_key_pem": "PEM"},
            "clients": [{"client_id": "c", "client_secret_sha256": "a".repeat(64)}]
        })
    }

    #[test]
    fn a_complete_secret_parses_with_defaults() {
        let s = AppSecret::parse(&issue_secret().to_string(), SecretNeeds::Issue).unwrap();
        assert_eq!(s.open_finance_db, "open_finance");
        assert_eq!(s.clients[0].grant_types, vec!["client_credentials"]);
    }

    #[test]
    fn missing_keys_are_named_without_values() {
        for (path, expected) in [
            ("/mongodb_uri", "mongodb_uri"),
            ("/signing_key", "signing_key"),
            ("/clients", "clients"),
        ] {
            let mut v = issue_secret();
            let (parent, key) = path.rsplit_once('/').unwrap();
            v.pointer_mut(if parent.is_empty() { "" } else { parent })
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
            let err = AppSecret::parse(&v.to_string(), SecretNeeds::Issue)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("PEM") && !err.contains("aaaa"), "{err}");
        }
        let mut v = issue_secret();
        v["signing_key"]
            .as_object_mut()
            .unwrap()
            .remove("private_key_pem");
        let err = AppSecret::parse(&v.to_string(), SecretNeeds::Issue)
            .unwrap_err()
            .to_string();
        assert!(err.contains("signing_key.private_key_pem"), "{err}");
    }

    #[test]
    fn debug_output_redacts_values() {
        let s = AppSecret::parse(&issue_secret().to_string(), SecretNeeds::Issue).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("k1") && shown.contains("\"c\""), "{shown}");
        assert!(
            !shown.contains("127.0.0.1") && !shown.contains("PEM") && !shown.contains("aaaa"),
            "{shown}"
        );
    }

    #[test]
    fn a_verifier_needs_no_private_key() {
        let v = json!({"mongodb_uri": "mongodb://h/"});
        assert!(AppSecret::parse(&v.to_string(), SecretNeeds::Verify).is_ok());
        assert!(AppSecret::parse(&v.to_string(), SecretNeeds::Issue).is_err());
    }

    #[test]
    fn malformed_digest_and_non_object_are_refused() {
        let mut v = issue_secret();
        v["clients"][0]["client_secret_sha256"] = json!("plain-secret");
        let err = AppSecret::parse(&v.to_string(), SecretNeeds::Issue)
            .unwrap_err()
            .to_string();
        assert!(err.contains("clients[0].client_secret_sha256") && !err.contains("plain-secret"));
        assert!(AppSecret::parse("[1]", SecretNeeds::Verify).is_err());
        assert!(AppSecret::parse("not json", SecretNeeds::Verify).is_err());
    }
}
