//! The local API server: every function's router on one port, at the paths of `template.yaml`,
//! configured exactly as on Lambda (env `SECRET_ID`, secret from Secrets Manager). Unless
//! `TOKEN_ENDPOINT_URL` and the bank base URLs are set, Leafy Bank talks to the emulated
//! institutions on this same server, over HTTP.

use std::sync::Arc;
use std::time::Duration;

use shared::AppState;
use shared::banks::{BankGateway, GatewayConfig};
use shared::secrets::SecretNeeds;
use shared::sync::SyncOptions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    shared::logging::init();
    let state = AppState::from_env(SecretNeeds::All)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let gateway = match std::env::var_os("TOKEN_ENDPOINT_URL") {
        Some(_) => GatewayConfig::from_env()?,
        None => {
            GatewayConfig::single_host(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5))
        }
    };
    let faults = external_banks::faults_enabled_from_env()?;
    let gateway = Arc::new(BankGateway::new(gateway)?);
    let app = axum::Router::new()
        .merge(token::router(state.clone()))
        .merge(external_banks::router(state.clone(), faults))
        .merge(connect_accounts::router(state.clone(), gateway.clone()))
        .merge(insights::router(state.clone()))
        .merge(sync_products::router(
            state,
            gateway,
            SyncOptions::from_env()?,
        ));
    shared::http::serve(shared::http::finish(app)).await
}
