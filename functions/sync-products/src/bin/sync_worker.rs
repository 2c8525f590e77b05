//! The sync worker: SQS-triggered (the sync queue's event source mapping, with
//! `ReportBatchItemFailures`), one consent per message, synced as the scheduled run would.
//! Answers with the messages to redeliver; SQS moves a message to the dead-letter queue after
//! `SYNC_MAX_RECEIVE_COUNT` deliveries (the redrive policy's `maxReceiveCount`).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use sync_products::{deadline_of, max_receive_count_from_env};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init();
    let max_receive_count = max_receive_count_from_env()
        .inspect_err(|e| tracing::error!(error = %e, "start-up failed"))?;
    let (state, gateway, options) = sync_products::start_up().await?;
    let (state, gateway, options) = (&state, &gateway, &options);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_of(event.context.deadline);
        let messages = event.payload.records.len();
        let response = sync_products::handle_sync_messages(
            state,
            gateway,
            options,
            event.payload,
            max_receive_count,
            Some(deadline),
        )
        .await;
        tracing::info!(
            messages,
            failures = response.batch_item_failures.len(),
            "sync messages handled"
        );
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}
