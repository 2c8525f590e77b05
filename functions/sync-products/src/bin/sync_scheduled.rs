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
        tracing::info!(
            remaining_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64,
            deadline_ms = event.context.deadline,
            "scheduled sync invoked"
        );
        // An error makes Lambda retry the invocation (and then dead-letter it).
        sync_products::handle_scheduled(state, gateway, options, &event.payload, Some(deadline))
            .await
            .map_err(|e| lambda_runtime::Error::from(e.to_string()))
    }))
    .await
}

/// The invocation's deadline as an `Instant`. Lambda sends epoch milliseconds; the
/// `cargo lambda` emulator sends the function's timeout in milliseconds instead, and no real
/// deadline is that small (it would be in 2001), so such a value is read as time left.
fn deadline_of(deadline_ms: u64) -> Instant {
    const EPOCH_2001_MS: u64 = 1_000_000_000_000;
    if deadline_ms < EPOCH_2001_MS {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_in_both_forms() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).as_secs();
        assert!((58..=60).contains(&left(deadline_of(now_ms + 60_000))));
        assert!((58..=60).contains(&left(deadline_of(60_000))));
        assert_eq!(left(deadline_of(now_ms - 5_000)), 0);
    }
}
