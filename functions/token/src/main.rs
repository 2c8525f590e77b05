//! The token function: OAuth 2.0 token endpoint, revocation, JWKS and the legacy demo login.

use shared::AppState;
use shared::secrets::SecretNeeds;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    let state = AppState::from_env(SecretNeeds::Issue)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    shared::http::serve(shared::http::finish(token::router(state))).await
}
