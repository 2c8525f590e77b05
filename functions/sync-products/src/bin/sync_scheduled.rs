//! The sync function's scheduled side. `lambda_http` refuses EventBridge payloads, so this entry
//! point takes the raw event through `lambda_runtime` and gets its deadline from the context.
//! With `SYNC_QUEUE_URL` set it is the dispatcher of the fan-out (the workers sync); without,
//! it syncs every consent itself.

use std::time::Instant;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use shared::queue::SyncQueue;
use sync_products::deadline_of;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init();
    let (state, gateway, options) = sync_products::start_up().await?;
    // With a sync queue this invocation only dispatches; the workers sync.
    let queue = SyncQueue::from_env().await;
    let (state, gateway, options, queue) = (&state, &gateway, &options, &queue);
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
        match queue {
            Some(queue) => {
                sync_products::handle_scheduled_dispatch(state, queue, options, &event.payload)
                    .await
            }
            None => {
                sync_products::handle_scheduled(
                    state,
                    gateway,
                    options,
                    &event.payload,
                    Some(deadline),
                )
                .await
            }
        }
        .map_err(|e| lambda_runtime::Error::from(e.to_string()))
    }))
    .await
}
