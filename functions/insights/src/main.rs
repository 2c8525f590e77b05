//! The insights function: the customer's financial summary, recommendations and the legacy
//! totals.

use shared::AppState;
use shared::secrets::SecretNeeds;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    let state = AppState::from_env(SecretNeeds::Verify)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    shared::http::serve(shared::http::finish(insights::router(state))).await
}
