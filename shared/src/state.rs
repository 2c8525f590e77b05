//! What a function builds once per cold start and shares across invocations.

use std::sync::Arc;

use crate::auth::revocation::RevocationList;
use crate::config::Settings;
use crate::db::Db;
use crate::error::AppError;
use crate::fx::RateCache;
use crate::secrets::{SecretNeeds, SecretStore};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub secrets: SecretStore,
    pub db: Db,
    pub revocations: RevocationList,
    pub rates: RateCache,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Cold start: settings from the environment, the secret from Secrets Manager (failing
    /// fast with a message naming what is missing), then the database client.
    pub async fn from_env(needs: SecretNeeds) -> Result<Self, AppError> {
        let settings = Settings::from_env()?;
        let secrets =
            SecretStore::from_env(settings.secret_id.clone(), settings.secret_ttl, needs).await;
        Self::build(settings, secrets).await
    }

    pub async fn build(settings: Settings, secrets: SecretStore) -> Result<Self, AppError> {
        let loaded = secrets.current().await?;
        let s = &loaded.secret;
        let db = Db::connect(&s.mongodb_uri, &s.open_finance_db, &s.leafy_bank_db).await?;
        Ok(Self::from_parts(settings, secrets, db))
    }

    pub fn from_parts(settings: Settings, secrets: SecretStore, db: Db) -> Self {
        AppState(Arc::new(Inner {
            revocations: RevocationList::new(settings.revocation_refresh),
            rates: RateCache::new(settings.exchange_rates_refresh),
            settings,
            secrets,
            db,
        }))
    }
}
