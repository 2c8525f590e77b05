//! The emulated institutions as one Lambda function.

use shared::AppState;
use shared::secrets::SecretNeeds;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    let state = AppState::from_env(SecretNeeds::Verify)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    let faults = external_banks::faults_enabled_from_env()?;
    shared::http::serve(shared::http::finish(external_banks::router(state, faults))).await
}
