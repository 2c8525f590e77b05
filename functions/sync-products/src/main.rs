//! The sync function's HTTP side: on-demand sync and the products routes.

use std::sync::Arc;

use shared::AppState;
use shared::banks::{BankGateway, GatewayConfig};
use shared::secrets::SecretNeeds;
use shared::sync::SyncOptions;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    let start = async {
        let gateway = BankGateway::new(GatewayConfig::from_env()?)?;
        let options = SyncOptions::from_env()?;
        let state = AppState::from_env(SecretNeeds::Connect).await?;
        Ok::<_, shared::AppError>((state, gateway, options))
    };
    let (state, gateway, options) = start
        .await
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    let router = sync_products::router(state, Arc::new(gateway), options);
    shared::http::serve(shared::http::finish(router)).await
}
