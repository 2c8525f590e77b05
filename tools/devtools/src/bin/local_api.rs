//! The local API server: every function's router on one port, at the paths of `template.yaml`,
//! configured exactly as on Lambda (env `SECRET_ID`, secret from Secrets Manager).

use shared::AppState;
use shared::secrets::SecretNeeds;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    shared::logging::init();
    let state = AppState::from_env(SecretNeeds::Issue)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    let app = axum::Router::new().merge(token::router(state));
    shared::http::serve(shared::http::finish(app)).await
}
