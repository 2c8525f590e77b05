//! Test support for integration tests against the real local stack that `scripts/test.sh`
//! starts (FerretDB or `MONGODB_URI`, and the moto Secrets Manager emulator). Each call to
//! [`TestContext::new`] gets its own secret and its own databases, seeded with the sample data,
//! so tests run in parallel without seeing each other.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Settings;
use crate::provision::{new_secret, put_secret};
use crate::secrets::{SecretNeeds, SecretStore};
use crate::state::AppState;

pub const TEST_CLIENT_ID: &str = "test-client";
pub const TEST_CLIENT_SCOPES: &[&str] = &["openfinance", "sync"];

pub struct TestContext {
    pub state: AppState,
    pub secret_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub sm: aws_sdk_secretsmanager::Client,
}

/// The database server under test: `TEST_MONGODB_URI`, set by `scripts/test.sh`.
pub fn mongodb_uri() -> String {
    std::env::var("TEST_MONGODB_URI").expect(
        "TEST_MONGODB_URI is not set: run the integration tests through scripts/test.sh, \
         which starts FerretDB and the Secrets Manager emulator",
    )
}

/// A Secrets Manager client built the standard way (`AWS_ENDPOINT_URL_SECRETS_MANAGER` points
/// it at the emulator).
pub async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_some(),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER is not set: run the tests through scripts/test.sh"
    );
    aws_sdk_secretsmanager::Client::new(&aws_config::load_from_env().await)
}

pub fn sample_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample_data")
}

/// A unique, short name for this test's resources.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn settings(secret_id: &str, demo_login: bool) -> Settings {
    Settings::from_lookup(|k| match k {
        "SECRET_ID" => Some(secret_id.to_string()),
        "DEMO_LOGIN_ENABLED" => Some(demo_login.to_string()),
        _ => None,
    })
    .expect("test settings")
}

impl TestContext {
    /// A fresh secret and fresh, seeded databases.
    pub async fn new() -> Self {
        Self::with_demo_login(true).await
    }

    pub async fn with_demo_login(demo_login: bool) -> Self {
        let sm = secrets_client().await;
        let run = unique("t");
        let new = new_secret(
            &mongodb_uri(),
            &format!("of_{run}"),
            &format!("lb_{run}"),
            TEST_CLIENT_ID,
            TEST_CLIENT_SCOPES,
        )
        .expect("new secret");
        let secret_id = format!("leafy-test/{run}");
        put_secret(&sm, &secret_id, &new.document)
            .await
            .expect("create test secret");
        let store = SecretStore::new(
            sm.clone(),
            secret_id.clone(),
            Duration::from_secs(300),
            SecretNeeds::Issue,
        );
        let state = AppState::build(settings(&secret_id, demo_login), store)
            .await
            .expect("app state");
        crate::seed::seed_dir(&state.db, &sample_data_dir())
            .await
            .expect("seed sample data");
        TestContext {
            state,
            secret_id,
            client_id: new.client_id,
            client_secret: new.client_secret,
            sm,
        }
    }
}
