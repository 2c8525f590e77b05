//! The sync function's scheduled side. `lambda_http` refuses EventBridge payloads, so this entry
//! point takes the raw event through `lambda_runtime` and gets its deadline from the context.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use shared::AppState;
use shared::banks::{BankGateway, GatewayConfig};
use shared::secrets::SecretNeeds;
use shared::sync::SyncOptions;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
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
    let (state, gateway, options) = (&state, &gateway, &options);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_of(event.context.deadline);
        // An error makes Lambda retry the invocation (and then dead-letter it).
        sync_products::handle_scheduled(state, gateway, options, &event.payload, Some(deadline))
            .await
            .map_err(|e| lambda_runtime::Error::from(e.to_string()))
    }))
    .await
}

/// The invocation's deadline (epoch milliseconds) as an `Instant`.
fn deadline_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
