//! The connect-accounts function: consents and connecting external accounts.

use std::sync::Arc;

use shared::AppState;
use shared::banks::{BankGateway, GatewayConfig};
use shared::secrets::SecretNeeds;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::logging::init();
    let start = async {
        let gateway = BankGateway::new(GatewayConfig::from_env()?)?;
        let state = AppState::from_env(SecretNeeds::Connect).await?;
        Ok::<_, shared::AppError>((state, gateway))
    };
    let (state, gateway) = start
        .await
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    shared::http::serve(shared::http::finish(connect_accounts::router(
        state,
        Arc::new(gateway),
    )))
    .await
}
